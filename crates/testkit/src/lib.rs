//! Test support: a fresh database per test (a SQLite file in a temp dir, or a new PostgreSQL
//! database named by a uuid), chosen by `FAIRCHANCE_TEST_BACKEND`, and helpers to start
//! services in-process on port 0.
//!
//! PostgreSQL comes from `FAIRCHANCE_TEST_POSTGRES_URL` (default the local server). Where it
//! is unreachable, PostgreSQL-only tests skip with a message, except under `CI=true`, where
//! they fail: CI must never pass by skipping them.

use std::net::SocketAddr;

use runtime::db::{Backend, Db, Migrations};
use sqlx::Connection;
use uuid::Uuid;

pub mod scan;

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("FAIRCHANCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The backend the suite runs on: `FAIRCHANCE_TEST_BACKEND=postgres`, else SQLite.
pub fn selected_backend() -> Backend {
    match std::env::var("FAIRCHANCE_TEST_BACKEND").as_deref() {
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database that lives as long as the test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database on the selected backend.
    pub async fn new() -> Self {
        match selected_backend() {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => match Self::postgres().await {
                Some(db) => db,
                None => panic!(
                    "FAIRCHANCE_TEST_BACKEND=postgres but PostgreSQL is unreachable at {}",
                    postgres_admin_url()
                ),
            },
        }
    }

    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a note on stderr) when the server is
    /// unreachable outside CI. Under `CI=true` an unreachable server fails the test.
    pub async fn postgres() -> Option<Self> {
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(error) if !in_ci() => {
                eprintln!("skipping: PostgreSQL unreachable at {admin}: {error}");
                return None;
            }
            Err(error) => panic!("PostgreSQL unreachable at {admin} under CI=true: {error}"),
        };
        let name = format!("fc_test_{}", Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Some(Self {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            _dir: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connects and applies `migrations` (with the runtime's own).
    pub async fn connect(&self, migrations: &Migrations) -> Db {
        let db = Db::connect(&self.url, 16)
            .await
            .expect("connect test database");
        db.migrate(migrations).await.expect("migrate test database");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let Some((_, name)) = self.url.rsplit_once('/') else {
            return;
        };
        let (admin, name) = (postgres_admin_url(), name.to_owned());
        // Drop runs inside the test's runtime; a fresh thread and runtime can block on the
        // cleanup. FORCE ends connections pools of the test may still hold.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Binds 127.0.0.1 on a free port.
pub async fn bind_local() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Connects a gRPC channel to a local server, retrying while it starts.
pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not come up");
}

/// Starts service `S` in this process on a free local port, on `db` with `config`, as its
/// binary would (the same `start` and server bootstrap); it serves until `stop` is cancelled.
/// Returns a channel to it.
pub async fn serve<S: runtime::service::ServiceSpec>(
    db: Db,
    config: runtime::config::ServiceConfig,
    stop: tokio_util::sync::CancellationToken,
) -> (tonic::transport::Channel, SocketAddr) {
    let ctx = runtime::service::ServiceContext {
        db,
        config: config.clone(),
        clock: std::sync::Arc::new(runtime::SystemClock),
        shutdown: stop.clone(),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = S::start(ctx, &mut routes)
        .await
        .unwrap_or_else(|e| panic!("{} did not start: {e}", S::NAME));
    let (listener, addr) = bind_local().await;
    tokio::spawn(async move {
        runtime::server::serve(listener, routes, health, &config.server, stop).await
    });
    (channel(addr).await, addr)
}

/// A service's configuration with defaults and no environment, for in-process tests.
pub fn config(service: &'static str) -> runtime::config::ServiceConfig {
    runtime::config::ServiceConfig::load(
        &runtime::config::Sources::default(),
        &runtime::config::Defaults::service(service, 0),
    )
    .expect("default configuration is valid")
}

/// The fields a status's `google.rpc.BadRequest` detail names, in order; fails the test unless
/// the status is INVALID_ARGUMENT with such a detail.
#[track_caller]
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Parses playbook `marked` as section `T`, where `@@` marks where the one expected problem
/// is, and checks that exactly one problem is reported, at that place (`p.toml:line:col`),
/// mentioning `needle`.
#[track_caller]
pub fn assert_playbook_error<T: runtime::playbook::Section>(marked: &str, needle: &str) {
    let offset = marked.find("@@").expect("the case marks the error with @@");
    let text = marked.replacen("@@", "", 1);
    let (line, col) = runtime::playbook::line_col(&text, offset);
    let err = runtime::playbook::parse::<T>("p.toml", &text)
        .err()
        .unwrap_or_else(|| panic!("expected an error mentioning {needle:?}"))
        .to_string();
    assert_eq!(
        err.matches("\n  p.toml").count(),
        1,
        "expected one problem: {err}"
    );
    assert!(
        err.contains(&format!("p.toml:{line}:{col}: ")),
        "expected at {line}:{col}: {err}"
    );
    assert!(err.contains(needle), "expected {needle:?}: {err}");
}

/// A TLS test fixture from `crates/testkit/tls` (regenerated by its `generate.sh`): `ca.pem`,
/// `server.pem`/`server.key` (for localhost and 127.0.0.1), `client.pem`/`client.key` (signed
/// by `ca.pem`), `other-ca.pem`, `other-client.pem`/`other-client.key` (signed by another CA).
pub fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tls")
        .join(name)
}

/// The contents of [`tls_fixture`] `name`.
pub fn read_tls_fixture(name: &str) -> Vec<u8> {
    let path = tls_fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A free local port: bound and released, for settings that take an address rather than a
/// listener (the plaintext health port).
pub fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
}

/// Makes `subscriber` this thread's default while the guard lives (a test's own tracing
/// pipeline), and has tracing look again at which callsites are enabled. Tracing caches that
/// per callsite for every thread: a span first used by another test thread, which has no
/// subscriber, at the moment this one is set, can otherwise stay disabled here for good, and
/// a test of traces would flake.
pub fn set_thread_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// Asks `condition` up to `tries` times, 20 ms apart, until it holds; true if it did. For
/// what a test waits on in the background (a reloaded file, a server coming up), without a
/// fixed sleep.
pub async fn eventually<F, Fut>(tries: usize, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..tries {
        if condition().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// A small deterministic generator (SplitMix64), for generated test and benchmark data that
/// is the same on every run, so a failing history can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)].clone()
    }
}
