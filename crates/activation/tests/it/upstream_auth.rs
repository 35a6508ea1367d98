//! Calls between services with auth required: activation consumes intake's events with a token
//! that holds `intake.subscribe`, and with one that lacks it is refused with PERMISSION_DENIED,
//! which it logs as an error naming the upstream, the scope and the setting to fix, and retries
//! with backoff, instead of consuming nothing in silence.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::auth::{AuthMode, Tokens, token_digest};
use runtime::config::{BearerToken, ServiceConfig};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const PLAYBOOK: &str = r#"
[intake]
[activation]
default_team = "sales"
[[activation.teams]]
id = "sales"
name = "Sales"
manager = "anna"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
[[activation.owners]]
id = "anna"
name = "Anna"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100
[[activation.sla]]
name = "all"
window = "1h"
[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
"#;

/// Log lines written while the test runs (its runtime is single-threaded, so every task of
/// the services logs on the test's thread, into the subscriber set for it).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn tokens() -> Tokens {
    let text = format!(
        r#"
[[caller]]
name = "web-forms"
token_sha256 = "{forms}"
scopes = ["intake.submit"]

[[caller]]
name = "activation"
token_sha256 = "{activation}"
scopes = ["intake.subscribe"]

[[caller]]
name = "misconfigured"
token_sha256 = "{weak}"
scopes = ["intake.read"]
"#,
        forms = token_digest("forms-token"),
        activation = token_digest("activation-token"),
        weak = token_digest("weak-token"),
    );
    Tokens::parse("tokens.toml", &text).unwrap()
}

/// Activation on its own database and port, calling intake at `intake` with `token`.
async fn activation(
    intake: std::net::SocketAddr,
    token: &str,
    playbook: &std::path::Path,
    stop: &CancellationToken,
) -> (ActivationServiceClient<Channel>, TestDb) {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&activation::store::MIGRATIONS).await;
    let mut config = testkit::config("activation");
    config.playbook = Some(playbook.to_owned());
    config
        .upstreams
        .insert("intake", format!("http://{intake}"));
    config.client.token = Some(BearerToken::new(token).unwrap());
    let (channel, _) =
        testkit::serve::<activation::ActivationService>(db, config, stop.clone()).await;
    (ActivationServiceClient::new(channel), test_db)
}

async fn activation_of(
    client: &mut ActivationServiceClient<Channel>,
    lead: &str,
    wait: Duration,
) -> Option<apb::Activation> {
    let until = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < until {
        match client
            .get_activation(apb::GetActivationRequest {
                lead_id: lead.into(),
            })
            .await
        {
            Ok(response) => return response.into_inner().activation,
            Err(status) if status.code() == Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    None
}

#[tokio::test]
async fn a_downstream_consumes_with_its_scope_and_says_so_loudly_without_it() {
    let logs = Logs::default();
    let _logging = testkit::set_thread_subscriber(
        tracing_subscriber::fmt()
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish(),
    );
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let stop = CancellationToken::new();

    let intake_db = TestDb::new().await;
    let db = intake_db.connect(&intake::store::MIGRATIONS).await;
    let mut config: ServiceConfig = testkit::config("intake");
    config.server.auth = AuthMode::Required(Arc::new(tokens()));
    let (channel, intake_addr) =
        testkit::serve::<intake::IntakeService>(db, config, stop.clone()).await;
    let mut intake = IntakeServiceClient::new(channel);

    let (mut allowed, _allowed_db) =
        activation(intake_addr, "activation-token", &playbook, &stop).await;
    let (mut refused, _refused_db) = activation(intake_addr, "weak-token", &playbook, &stop).await;

    let mut submit = tonic::Request::new(ipb::SubmitLeadRequest {
        lead: Some(ipb::LeadInput {
            contact: Some(ipb::Contact {
                email: "auth-test@example.com".into(),
                ..Default::default()
            }),
            source: Some(ipb::SourceContext {
                source: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        idempotency_key: String::new(),
    });
    // Intake itself enforces the tokens: without one, nothing is taken.
    let anonymous = intake.submit_lead(submit.get_ref().clone()).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    submit
        .metadata_mut()
        .insert("authorization", "Bearer forms-token".parse().unwrap());
    let lead = intake
        .submit_lead(submit)
        .await
        .unwrap()
        .into_inner()
        .lead
        .unwrap()
        .lead_id;

    let activated = activation_of(&mut allowed, &lead, Duration::from_secs(10)).await;
    assert_eq!(
        activated
            .expect("the activation with the right token never saw the lead")
            .owner_id,
        "anna"
    );
    // The one whose token lacks intake.subscribe has nothing, and has said why.
    assert!(
        activation_of(&mut refused, &lead, Duration::from_millis(500))
            .await
            .is_none()
    );
    let mut said = false;
    for _ in 0..100 {
        let text = logs.text();
        said = text.lines().any(|line| {
            line.contains("ERROR")
                && line.contains("refused this service's credentials")
                && line.contains("PermissionDenied")
                && line.contains("caller misconfigured lacks scope intake.subscribe")
                && line.contains("FAIRCHANCE_CLIENT_TOKEN_FILE")
                && line.contains(&format!("http://{intake_addr}"))
        });
        if said {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(said, "no error log naming the refusal:\n{}", logs.text());
    // Tokens never reach the logs.
    let text = logs.text();
    assert!(
        !text.contains("weak-token") && !text.contains("activation-token"),
        "{text}"
    );
    stop.cancel();
}
