//! Mutual TLS on a real server: a caller with a certificate the configured CA signed gets
//! through, one without a certificate or with another CA's is refused in the handshake, and
//! the plaintext health port answers the kubelet's probes while the main port needs TLS. A
//! certificate rewritten on disk is served to new connections without a restart.

use std::time::Duration;

use runtime::client::{Client, Connector, Method};
use runtime::config::{ClientConfig, ServerConfig};
use runtime::tls::{ClientTls, TlsConfig};
use testkit::{TestDb, read_tls_fixture as pem};
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const CHECK: Method<HealthCheckRequest, HealthCheckResponse> =
    Method::idempotent("/grpc.health.v1.Health/Check");

fn client(tls: Option<ClientTls>, url: &str) -> Client {
    let settings = ClientConfig {
        tls,
        // One attempt: a refused handshake is UNAVAILABLE, which would otherwise be retried.
        max_attempts: 1,
        deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    Connector::new(settings).connect("test", url).unwrap()
}

async fn check(client: &Client) -> Result<HealthCheckResponse, tonic::Status> {
    client
        .unary(
            &CHECK,
            HealthCheckRequest {
                service: String::new(),
            },
        )
        .await
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_of_the_client_ca_and_health_stays_plaintext() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let health_addr = testkit::free_local_addr();
    let tls = TlsConfig::new(pem("server.pem"), pem("server.key"), Some(pem("ca.pem"))).unwrap();
    assert!(tls.is_mutual());
    let config = ServerConfig {
        tls: Some(tls),
        health_addr: Some(health_addr),
        health_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let server = crate::spawn_server(
        listener,
        RoutesBuilder::default(),
        crate::test_target(db),
        config,
        stop.clone(),
    );

    // (d) The plaintext health port answers grpc.health.v1 Check, and reports the same
    // status as the main port.
    let mut plain_health = HealthClient::new(testkit::channel(health_addr).await);
    assert!(
        crate::wait_for_status(&plain_health, crate::TEST_SERVICE, ServingStatus::Serving).await,
        "plaintext health never reported SERVING"
    );

    // (a) A client with a certificate the client CA signed gets through, over TLS to
    // 127.0.0.1 and to localhost (both in the server certificate).
    let trusted =
        ClientTls::new(pem("ca.pem"), Some((pem("client.pem"), pem("client.key")))).unwrap();
    for url in [
        format!("https://127.0.0.1:{}", addr.port()),
        format!("https://localhost:{}", addr.port()),
    ] {
        let answer = check(&client(Some(trusted.clone()), &url))
            .await
            .unwrap_or_else(|status| panic!("trusted client refused at {url}: {status:?}"));
        assert_eq!(answer.status, ServingStatus::Serving as i32);
    }

    // (b) Without a client certificate: refused, though it trusts the server.
    let anonymous = ClientTls::new(pem("ca.pem"), None).unwrap();
    let refused = check(&client(
        Some(anonymous),
        &format!("https://127.0.0.1:{}", addr.port()),
    ))
    .await
    .expect_err("a client without a certificate got through");
    // TLS 1.3: the client finishes its side of the handshake before the server's alert
    // arrives, so the refusal ends the call rather than the connection attempt; the message
    // says why.
    assert!(
        refused.message().contains("CertificateRequired"),
        "{refused:?}"
    );

    // (c) With a certificate another CA signed: refused.
    let stranger = ClientTls::new(
        pem("ca.pem"),
        Some((pem("other-client.pem"), pem("other-client.key"))),
    )
    .unwrap();
    let refused = check(&client(
        Some(stranger),
        &format!("https://127.0.0.1:{}", addr.port()),
    ))
    .await
    .expect_err("a client with another CA's certificate got through");
    assert!(refused.message().contains("UnknownCA"), "{refused:?}");

    // The main port needs TLS: plaintext gets nothing, not even health.
    let refused = check(&client(None, &format!("http://127.0.0.1:{}", addr.port())))
        .await
        .expect_err("plaintext got through on the TLS port");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Unknown | tonic::Code::Unavailable
        ),
        "{refused:?}"
    );

    // And the client checks the server: a client that trusts another CA refuses it.
    let misled = ClientTls::new(
        pem("other-ca.pem"),
        Some((pem("client.pem"), pem("client.key"))),
    )
    .unwrap();
    let refused = check(&client(
        Some(misled),
        &format!("https://127.0.0.1:{}", addr.port()),
    ))
    .await
    .expect_err("the client accepted a server certificate its CA did not sign");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("UnknownIssuer"), "{refused:?}");

    // The plaintext health port follows the drain and stops with the server.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let after = tokio::time::timeout(
        Duration::from_secs(5),
        plain_health.check(HealthCheckRequest::default()),
    )
    .await;
    assert!(
        !matches!(after, Ok(Ok(ref r)) if r.get_ref().status == ServingStatus::Serving as i32),
        "plaintext health still SERVING after shutdown: {after:?}"
    );
}

fn reload_failures() -> f64 {
    runtime::metrics::encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "fairchance_credential_reload_failures_total{credential=\"tls_certificate\"} ",
            )
        })
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_to_new_connections_without_a_restart() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::write(&cert, pem("server.pem")).unwrap();
    std::fs::write(&key, pem("server.key")).unwrap();
    let tls = TlsConfig::new(pem("server.pem"), pem("server.key"), None)
        .unwrap()
        .reload_from(cert.clone(), key.clone(), Duration::from_millis(20));
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let config = ServerConfig {
        tls: Some(tls),
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let server = crate::spawn_server(
        listener,
        RoutesBuilder::default(),
        crate::test_target(db),
        config,
        stop.clone(),
    );
    // A new client each time: a new connection, so a new handshake.
    let url = format!("https://127.0.0.1:{}", addr.port());
    let connect = || async {
        let trusting = ClientTls::new(pem("ca.pem"), None).unwrap();
        check(&client(Some(trusting), &url)).await
    };
    assert!(
        testkit::eventually(100, || async { connect().await.is_ok() }).await,
        "the server never answered over TLS"
    );

    // A key that is not the certificate's: reported, and the pair in force is still served.
    let failures = reload_failures();
    std::fs::write(&key, pem("other-client.key")).unwrap();
    assert!(
        testkit::eventually(250, || async { reload_failures() > failures }).await,
        "the mismatched key was never reported"
    );
    connect()
        .await
        .expect("the previous certificate is still served");

    // A certificate the client must refuse (issued for a client, to another name): once it is
    // served, new connections see it.
    std::fs::write(&cert, pem("client.pem")).unwrap();
    std::fs::write(&key, pem("client.key")).unwrap();
    let mut refused = None;
    for _ in 0..250 {
        if let Err(status) = connect().await {
            refused = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the new certificate was never served");
    assert!(
        refused.message().contains("invalid peer certificate"),
        "{refused:?}"
    );

    // And back: the next renewal is taken as well.
    std::fs::write(&cert, pem("server.pem")).unwrap();
    std::fs::write(&key, pem("server.key")).unwrap();
    assert!(
        testkit::eventually(250, || async { connect().await.is_ok() }).await,
        "the renewed certificate was never served"
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn unusable_tls_files_are_refused_naming_the_setting() {
    let server = |cert: &str, key: &str, ca: Option<&str>| {
        TlsConfig::new(pem(cert), pem(key), ca.map(pem)).unwrap_err()
    };
    let why = server("server.key", "server.key", None);
    assert!(
        why.starts_with("FAIRCHANCE_TLS_CERT: no PEM certificate"),
        "{why}"
    );
    let why = server("server.pem", "server.pem", None);
    assert!(
        why.starts_with("FAIRCHANCE_TLS_KEY: no PEM private key"),
        "{why}"
    );
    let why = server("server.pem", "server.pem", Some("server.key"));
    assert!(why.starts_with("FAIRCHANCE_TLS_KEY"), "{why}");
    let why = server("server.pem", "server.key", Some("client.key"));
    assert!(
        why.starts_with("FAIRCHANCE_TLS_CLIENT_CA: no PEM certificate"),
        "{why}"
    );
    // A key that is not the certificate's.
    let why = server("server.pem", "client.key", None);
    assert!(
        why.starts_with("FAIRCHANCE_TLS_CERT, FAIRCHANCE_TLS_KEY: not usable together"),
        "{why}"
    );

    let why = ClientTls::new(pem("client.key"), None).unwrap_err();
    assert!(
        why.starts_with("FAIRCHANCE_CLIENT_CA: no PEM certificate"),
        "{why}"
    );
    let why = ClientTls::new(pem("ca.pem"), Some((pem("client.pem"), pem("ca.pem")))).unwrap_err();
    assert!(
        why.starts_with("FAIRCHANCE_CLIENT_KEY: no PEM private key"),
        "{why}"
    );
    let why =
        ClientTls::new(pem("ca.pem"), Some((pem("client.key"), pem("client.key")))).unwrap_err();
    assert!(
        why.starts_with("FAIRCHANCE_CLIENT_CERT: no PEM certificate"),
        "{why}"
    );
}
