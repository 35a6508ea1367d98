//! The client every service calls the others with (`runtime::client`), against a real intake:
//! deadlines end calls, the message limit holds in both directions, an idempotent call that
//! is retried takes effect once (intake honours its idempotency key), and a call that is not
//! idempotent is not retried, and a token file that changes is re-read, so the next calls
//! carry the new token. Faults are injected by a layer in front of intake's routes: a delay,
//! or an answer lost after intake did the work.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use proto::intake::v1 as pb;
use runtime::client::{CallOptions, Client, Connector, IDEMPOTENCY_KEY, Method};
use runtime::config::ClientConfig;
use runtime::service::{ServiceContext, ServiceSpec};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::http;

const SUBMIT: Method<pb::SubmitLeadRequest, pb::SubmitLeadResponse> =
    Method::idempotent("/fairchance.intake.v1.IntakeService/SubmitLead");
const SUBMIT_ONCE: Method<pb::SubmitLeadRequest, pb::SubmitLeadResponse> =
    Method::not_idempotent("/fairchance.intake.v1.IntakeService/SubmitLead");
const GET: Method<pb::GetLeadRequest, pb::GetLeadResponse> =
    Method::idempotent("/fairchance.intake.v1.IntakeService/GetLead");

/// What the fault layer does to calls of one RPC, and what it saw.
#[derive(Debug, Default)]
struct Plan {
    path: &'static str,
    /// Before the call reaches intake.
    delay: Duration,
    /// For the first call: let intake do the work, then answer with this code instead.
    lose_first_answer: Option<Code>,
    /// The `idempotency-key` of each call that reached the layer.
    seen: Mutex<Vec<String>>,
    /// The `authorization` header of each call that reached the layer.
    authorizations: Mutex<Vec<String>>,
}

impl Plan {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn last_authorization(&self) -> Option<String> {
        self.authorizations.lock().unwrap().last().cloned()
    }
}

#[derive(Clone)]
struct FaultLayer(Arc<Plan>);

impl<S> tower::Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Fault<S> {
        Fault {
            inner,
            plan: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Fault<S> {
    inner: S,
    plan: Arc<Plan>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for Fault<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is not ready; the one poll_ready readied serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.uri().path() != self.plan.path {
            return Box::pin(inner.call(request));
        }
        let attempt = {
            let mut seen = self.plan.seen.lock().unwrap();
            seen.push(
                request
                    .headers()
                    .get(IDEMPOTENCY_KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            );
            self.plan.authorizations.lock().unwrap().push(
                request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            );
            seen.len()
        };
        let plan = self.plan.clone();
        Box::pin(async move {
            tokio::time::sleep(plan.delay).await;
            // A unary handler has run, and committed, by the time its response is ready.
            let response = inner.call(request).await?;
            match plan.lose_first_answer {
                Some(code) if attempt == 1 => {
                    Ok(tonic::Status::new(code, "injected: the answer was lost").into_http())
                }
                _ => Ok(response),
            }
        })
    }
}

struct Intake {
    url: String,
    db: runtime::Db,
    stop: CancellationToken,
    _db: TestDb,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Intake on a free port, its calls of `plan.path` through the fault layer.
async fn intake(plan: Arc<Plan>) -> Intake {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&intake::store::MIGRATIONS).await;
    let stop = CancellationToken::new();
    let ctx = ServiceContext {
        db: db.clone(),
        config: testkit::config("intake"),
        clock: Arc::new(runtime::SystemClock),
        shutdown: stop.clone(),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    intake::IntakeService::start(ctx, &mut routes)
        .await
        .unwrap();
    let (listener, addr) = testkit::bind_local().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(FaultLayer(plan))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
    );
    testkit::channel(addr).await;
    Intake {
        url: format!("http://{addr}"),
        db,
        stop,
        _db: test_db,
    }
}

fn client(url: &str, settings: ClientConfig) -> Client {
    Connector::new(settings).connect("test", url).unwrap()
}

fn lead(email: &str, message: &str, key: &str) -> pb::SubmitLeadRequest {
    pb::SubmitLeadRequest {
        lead: Some(pb::LeadInput {
            contact: Some(pb::Contact {
                email: email.into(),
                ..Default::default()
            }),
            source: Some(pb::SourceContext {
                source: "web".into(),
                message: message.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        idempotency_key: key.into(),
    }
}

async fn leads_in(db: &runtime::Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_past_its_deadline_ends_with_deadline_exceeded() {
    let plan = Arc::new(Plan {
        path: "/fairchance.intake.v1.IntakeService/GetLead",
        delay: Duration::from_secs(5),
        ..Plan::default()
    });
    let intake = intake(plan.clone()).await;
    let client = client(&intake.url, ClientConfig::default());
    let started = Instant::now();
    let status = client
        .unary_with(
            &GET,
            pb::GetLeadRequest {
                lead_id: uuid::Uuid::now_v7().to_string(),
            },
            CallOptions::deadline(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    // One attempt: a deadline covers the whole call and is never retried.
    assert_eq!(plan.seen().len(), 1);
}

#[tokio::test]
async fn messages_over_the_limit_are_refused_in_both_directions() {
    let plan = Arc::new(Plan {
        path: "/fairchance.intake.v1.IntakeService/SubmitLead",
        ..Plan::default()
    });
    let intake = intake(plan.clone()).await;
    let small = client(
        &intake.url,
        ClientConfig {
            max_message_bytes: 1024,
            ..ClientConfig::default()
        },
    );
    let long = "x".repeat(3000);

    // Out: refused before it is sent.
    let status = small
        .unary(&SUBMIT, lead("big@example.com", &long, "big"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains("over the 1024 byte message limit"),
        "{status:?}"
    );
    assert!(plan.seen().is_empty(), "an oversized request was sent");
    assert_eq!(leads_in(&intake.db).await, 0);

    // In: a lead stored through a client with the default 1 MiB limit is too big to read
    // back through the small one.
    let big = client(&intake.url, ClientConfig::default())
        .unary(&SUBMIT, lead("big@example.com", &long, "big"))
        .await
        .unwrap()
        .lead
        .unwrap();
    let request = pb::GetLeadRequest {
        lead_id: big.lead_id.clone(),
    };
    let status = small.unary(&GET, request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains("decoded message length too large"),
        "{status:?}"
    );
    // The same call within the limit succeeds: the size, not the call, was refused.
    let read = client(&intake.url, ClientConfig::default())
        .unary(&GET, request)
        .await
        .unwrap();
    assert_eq!(read.lead.unwrap().lead_id, big.lead_id);
}

#[tokio::test]
async fn a_retried_idempotent_call_takes_effect_once() {
    let plan = Arc::new(Plan {
        path: "/fairchance.intake.v1.IntakeService/SubmitLead",
        lose_first_answer: Some(Code::Aborted),
        ..Plan::default()
    });
    let intake = intake(plan.clone()).await;
    let client = client(&intake.url, ClientConfig::default());
    let answer = client
        .unary_with(
            &SUBMIT,
            lead("once@example.com", "", "form-42"),
            CallOptions::default().with_key("form-42"),
        )
        .await
        .expect("the retry gets intake's stored answer");
    // Two attempts with the same key; intake did the work once and replayed its answer.
    assert_eq!(plan.seen(), ["form-42", "form-42"]);
    assert_eq!(leads_in(&intake.db).await, 1);
    let stored = client
        .unary(
            &GET,
            pb::GetLeadRequest {
                lead_id: answer.lead.unwrap().lead_id,
            },
        )
        .await;
    // A second execution would not add a lead (intake merges a known contact) but a touch.
    let stored = stored.unwrap().lead.unwrap();
    assert!(stored.touches.is_empty(), "executed twice: {stored:?}");
}

#[tokio::test]
async fn a_call_that_is_not_idempotent_is_not_retried() {
    let plan = Arc::new(Plan {
        path: "/fairchance.intake.v1.IntakeService/SubmitLead",
        lose_first_answer: Some(Code::Aborted),
        ..Plan::default()
    });
    let intake = intake(plan.clone()).await;
    let client = client(&intake.url, ClientConfig::default());
    let status = client
        .unary(&SUBMIT_ONCE, lead("twice@example.com", "", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(
        plan.seen().len(),
        1,
        "a call that is not idempotent was repeated"
    );
    // Every call carries a key even so, for a server that keeps records.
    assert!(!plan.seen()[0].is_empty());
    assert_eq!(leads_in(&intake.db).await, 1);
}

fn client_reload_failures() -> f64 {
    runtime::metrics::encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "fairchance_credential_reload_failures_total{credential=\"client_token\"} ",
            )
        })
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_client_whose_token_file_changes_sends_the_new_token() {
    let plan = Arc::new(Plan {
        path: "/fairchance.intake.v1.IntakeService/GetLead",
        ..Plan::default()
    });
    let intake = intake(plan.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let path = token_file.display().to_string();
    let env = [
        ("FAIRCHANCE_CLIENT_TOKEN_FILE", path.as_str()),
        ("FAIRCHANCE_TOKENS_RELOAD", "20ms"),
        ("FAIRCHANCE_INTAKE_URL", intake.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = runtime::config::ServiceConfig::load(
        &runtime::config::Sources::from_map(env).unwrap(),
        &runtime::config::Defaults::service("activation", 0),
    )
    .unwrap();
    let client = Connector::from_config(&config).upstream("intake").unwrap();
    let get = || async {
        let status = client
            .unary(
                &GET,
                pb::GetLeadRequest {
                    lead_id: uuid::Uuid::now_v7().to_string(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        plan.last_authorization()
    };
    assert_eq!(get().await.as_deref(), Some("Bearer first-token"));

    // Written in place rather than swapped: a plain file works as well as a Secret's symlink.
    std::fs::write(&token_file, "second-token\n").unwrap();
    let mut sent = None;
    for _ in 0..250 {
        sent = get().await;
        if sent.as_deref() == Some("Bearer second-token") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent.as_deref(), Some("Bearer second-token"));

    // A token that cannot be sent is reported, and the one in force is kept.
    let failures = client_reload_failures();
    std::fs::write(&token_file, "two words\n").unwrap();
    assert!(
        testkit::eventually(250, || async { client_reload_failures() > failures }).await,
        "the unusable token was never reported"
    );
    assert_eq!(get().await.as_deref(), Some("Bearer second-token"));
}
