//! A TCP proxy between the services and PostgreSQL with a switch: cut drops every open
//! connection and refuses new ones until restored. That is how the suite takes "the database"
//! away without touching the machine's PostgreSQL, which other tests share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

struct State {
    up: bool,
    /// Cancelled by a cut: every connection opened before it ends.
    generation: CancellationToken,
}

impl Proxy {
    /// Listens on a free local port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            up: true,
            generation: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream,
            Arc::clone(&state),
            stop.clone(),
        ));
        Self { addr, state, stop }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.up = false;
        state.generation.cancel();
        state.generation = CancellationToken::new();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().expect("proxy state").up = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.lock().expect("proxy state").generation.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let generation = {
            let state = state.lock().expect("proxy state");
            // Closing at once is what a client sees of a server that is down: the
            // connection ends before the startup handshake.
            if !state.up {
                continue;
            }
            state.generation.clone()
        };
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                _ = generation.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        });
    }
}
