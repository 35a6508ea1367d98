//! Token rotation without a restart: a server whose tokens file changes (as Kubernetes changes
//! a mounted Secret, by swapping the `..data` symlink) checks the next calls against the new
//! tokens, and a rewrite that does not validate leaves the tokens in force, with an error
//! counted in `fairchance_credential_reload_failures_total`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use runtime::auth::token_digest;
use runtime::client::{Connector, Method};
use runtime::config::{ClientConfig, Defaults, ServiceConfig, Sources};
use runtime::server::HealthTarget;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::RoutesBuilder;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const SERVICE: &str = "fairchance.test.v1.TestService";
/// An RPC with a scope and no handler: a call the auth layer lets through is UNIMPLEMENTED,
/// one it refuses UNAUTHENTICATED.
const PING: Method<HealthCheckRequest, HealthCheckResponse> =
    Method::not_idempotent("/fairchance.test.v1.TestService/Ping");

fn tokens_file(tokens: &[&str]) -> String {
    tokens
        .iter()
        .map(|token| {
            format!(
                "[[caller]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nscopes = [\"test.ping\"]\n\n",
                token_digest(token)
            )
        })
        .collect()
}

/// What Kubernetes does to a mounted Secret: the file is a symlink through `..data`, and an
/// update writes a new directory and swaps `..data` to it in one rename.
fn publish(dir: &Path, version: u32, content: &str) {
    let target = format!("..{version}");
    std::fs::create_dir(dir.join(&target)).unwrap();
    std::fs::write(dir.join(&target).join("tokens.toml"), content).unwrap();
    let staged = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&target, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    if !dir.join("tokens.toml").exists() {
        std::os::unix::fs::symlink("..data/tokens.toml", dir.join("tokens.toml")).unwrap();
    }
}

fn reload_failures() -> f64 {
    runtime::metrics::encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix("fairchance_credential_reload_failures_total{credential=\"tokens\"} ")
        })
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_rewritten_tokens_file_takes_effect_without_a_restart_and_a_broken_one_is_ignored() {
    let secret = tempfile::tempdir().unwrap();
    publish(secret.path(), 1, &tokens_file(&["old-token"]));
    let path = secret.path().join("tokens.toml").display().to_string();
    let env: BTreeMap<String, String> = [
        ("FAIRCHANCE_AUTH", "required"),
        ("FAIRCHANCE_TOKENS_FILE", path.as_str()),
        ("FAIRCHANCE_TOKENS_RELOAD", "20ms"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = ServiceConfig::load(
        &Sources::from_map(env).unwrap(),
        &Defaults::service("test", 0),
    )
    .unwrap();
    assert_eq!(
        config.server.tokens_file.as_ref().unwrap().every,
        Duration::from_millis(20)
    );

    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let stop = CancellationToken::new();
    let target = HealthTarget {
        service: SERVICE,
        db,
        scopes: &[("Ping", "test.ping")],
    };
    let server = crate::spawn_server(
        listener,
        RoutesBuilder::default(),
        target,
        config.server.clone(),
        stop.clone(),
    );
    testkit::channel(addr).await;
    let url = format!("http://{addr}");
    let ping = |token: &'static str| {
        let url = url.clone();
        async move {
            let settings = ClientConfig {
                token: Some(runtime::config::BearerToken::new(token).unwrap()),
                max_attempts: 1,
                ..ClientConfig::default()
            };
            Connector::new(settings)
                .connect("test", &url)
                .unwrap()
                .unary(&PING, HealthCheckRequest::default())
                .await
                .unwrap_err()
                .code()
        }
    };
    assert_eq!(ping("old-token").await, Code::Unimplemented);
    assert_eq!(ping("new-token").await, Code::Unauthenticated);

    // Rotation: the new token replaces the old one.
    publish(secret.path(), 2, &tokens_file(&["new-token"]));
    assert!(
        testkit::eventually(250, || async {
            ping("new-token").await == Code::Unimplemented
        })
        .await,
        "the new token was never accepted"
    );
    assert_eq!(ping("old-token").await, Code::Unauthenticated);

    // A broken version: counted, logged, and the tokens in force stay.
    let failures = reload_failures();
    publish(
        secret.path(),
        3,
        "[[caller]]\nname = \"ops\"\ntoken_sha256 = \"abc\"\n",
    );
    assert!(
        testkit::eventually(250, || async { reload_failures() > failures }).await,
        "the broken tokens file was never reported"
    );
    assert_eq!(ping("new-token").await, Code::Unimplemented);
    assert_eq!(ping("old-token").await, Code::Unauthenticated);

    // And a later valid version is taken again: a rejection does not stop the watch.
    publish(
        secret.path(),
        4,
        &tokens_file(&["new-token", "newer-token"]),
    );
    assert!(
        testkit::eventually(250, || async {
            ping("newer-token").await == Code::Unimplemented
        })
        .await,
        "the version after the broken one was never taken"
    );
    assert_eq!(ping("new-token").await, Code::Unimplemented);

    stop.cancel();
    server.await.unwrap().unwrap();
}
