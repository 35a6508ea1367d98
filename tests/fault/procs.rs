//! The services as child processes (this executable re-run as each, see `main`), started on
//! fixed ports so a restart comes back where its callers expect it, logging to files in the
//! run's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Set to a service's name, this test executable runs as that service (see `main`).
pub const SERVE_VAR: &str = "FAIRCHANCE_FAULT_SERVE";

/// One service process; killed on drop.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    service: String,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Service {
    /// Starts `service` (e.g. `activation`) as `name` on a free port with `env`.
    pub fn start(service: &str, name: &str, log_dir: &Path, env: &[(&str, String)]) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        Self::start_at(service, name, log_dir, addr, env)
    }

    /// Starts `service` as `name` on `addr` with `env`.
    pub fn start_at(
        service: &str,
        name: &str,
        log_dir: &Path,
        addr: SocketAddr,
        env: &[(&str, String)],
    ) -> Self {
        let mut service = Self {
            name: name.to_owned(),
            addr,
            service: service.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            log_dir: log_dir.to_owned(),
            child: None,
            starts: 0,
        };
        service.spawn();
        service
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self
            .log_dir
            .join(format!("{}.{}.log", self.name, self.starts));
        let file = std::fs::File::create(&log).expect("log file");
        let exe = std::env::current_exe().expect("test executable");
        let mut command = Command::new(exe);
        command
            .env(SERVE_VAR, &self.service)
            .env_remove("FAIRCHANCE_CONFIG")
            .env("FAIRCHANCE_LISTEN_ADDR", self.addr.to_string())
            .env("FAIRCHANCE_METRICS_ADDR", "off")
            .env("FAIRCHANCE_LOG", "warn")
            .env("FAIRCHANCE_LOG_FORMAT", "json");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL: no drain, no goodbye, as a crashed pod.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same address and settings.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until the process reports SERVING; panics (with its log) if it exits or takes
    /// longer than `timeout`.
    pub async fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited with {status}:\n{}", self.name, self.log_tail());
            }
            if health(self.addr).await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not serving within {timeout:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// True while the process runs (it has not exited on its own).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The end of the current process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self
            .log_dir
            .join(format!("{}.{}.log", self.name, self.starts));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A lazily connecting channel to the service, for unary calls (each has a 3 s
    /// deadline).
    pub fn channel(&self) -> Channel {
        endpoint(self.addr).connect_lazy()
    }

    /// A lazily connecting channel without a deadline, for streams that last the whole run
    /// (a deadline is sent as `grpc-timeout` and would end them).
    pub fn stream_channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(500))
            .connect_lazy()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn endpoint(addr: SocketAddr) -> tonic::transport::Endpoint {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
}

/// The overall gRPC health status of the process at `addr`; `None` when it does not answer.
pub async fn health(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = endpoint(addr).connect().await.ok()?;
    check(&mut HealthClient::new(channel)).await
}

/// One overall health check on an open client.
pub async fn check(client: &mut HealthClient<Channel>) -> Option<ServingStatus> {
    let answer = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}
