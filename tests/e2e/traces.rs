//! One trace follows a lead across services. Intake, activation and followup run in this
//! process (each on its own database and port, calling each other over gRPC as deployed) with
//! an OpenTelemetry pipeline whose exporter keeps the finished spans in memory. A client sends
//! W3C `traceparent` headers; the test then reads which spans joined which trace:
//!
//! - `SubmitLead` under trace A: intake's server span, and activation's span consuming the
//!   `LeadAccepted` that intake appended in it (the trace crossed in the event envelope).
//!   Trace A is the lead's trace from then on;
//! - the SLA deadline the consume scheduled fires (a one-second window) in trace A: timers
//!   keep the trace of the span that scheduled them;
//! - `RecordFirstAction` under trace B: activation's server span is in trace B, but the
//!   change it makes to the lead (appending `LeadActivated`) continues trace A, with a link to
//!   trace B; followup consumes `LeadActivated` in trace A (crossed again, to a third
//!   service), and its follow-up step timer fires in trace A, as does the `FollowUpDue` it
//!   appends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

const PLAYBOOK: &str = r#"
[intake]

[activation]
default_team = "sales"

[[activation.teams]]
id = "sales"
name = "Sales"
manager = "mia"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"

[[activation.owners]]
id = "anna"
name = "Anna"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100

[[activation.owners]]
id = "mia"
name = "Mia"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100

[[activation.sla]]
name = "demo"
window = "1s"

# The first breach hands the lead to the manager: no further windows race the test.
[activation.escalation]
max_reassignments = 0

[[activation.plans]]
name = "call"
channel = "call"
template = "opener"

[followup]
timezone = "UTC"
default_cadence = "slow"

[[followup.cadences]]
id = "slow"
steps = [{ delay = "1s", channel = "email", strategy = "value", template = "intro" }]
"#;

/// Keeps every finished span.
#[derive(Debug, Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("spans").extend(batch);
        Ok(())
    }
}

impl Collected {
    fn attribute(span: &SpanData, key: &str) -> String {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
            .unwrap_or_default()
    }

    /// The trace of the first finished span named `name` whose `key` attribute ends with
    /// `value`, and its parent, waiting up to 10 s for it to finish.
    async fn trace_of(&self, name: &str, key: &str, value: &str) -> (TraceId, SpanId) {
        let span = self.find(name, key, value).await;
        (span.span_context.trace_id(), span.parent_span_id)
    }

    /// The first finished span named `name` whose `key` attribute ends with `value`, waiting
    /// up to 10 s for it to finish.
    async fn find(&self, name: &str, key: &str, value: &str) -> SpanData {
        for _ in 0..200 {
            let found = self
                .0
                .lock()
                .expect("spans")
                .iter()
                .find(|s| s.name == name && Self::attribute(s, key).ends_with(value))
                .cloned();
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen: Vec<String> = self
            .0
            .lock()
            .expect("spans")
            .iter()
            .map(|s| format!("{} {:?}", s.name, s.attributes))
            .collect();
        panic!("no finished `{name}` span with {key} = …{value}; spans: {seen:#?}");
    }
}

fn traceparent(
    trace: TraceId,
    span: SpanId,
) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("00-{trace}-{span}-01")
        .parse()
        .expect("a valid header")
}

fn with_trace<T>(message: T, trace: TraceId, span: SpanId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent(trace, span));
    request
}

/// Everything runs on this one thread, so the subscriber installed for it sees every span.
#[tokio::test(flavor = "current_thread")]
async fn one_trace_follows_a_lead_through_intake_activation_and_followup() {
    let spans = Collected::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = testkit::set_thread_subscriber(subscriber);

    let dir = tempfile::tempdir().expect("temp dir");
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).expect("playbook");
    let stop = CancellationToken::new();
    let mut databases: Vec<TestDb> = Vec::new();

    let intake_db = TestDb::sqlite();
    let db = intake_db.connect(&intake::store::MIGRATIONS).await;
    databases.push(intake_db);
    let mut config = testkit::config("intake");
    config.playbook = Some(playbook.clone());
    let (intake_channel, intake_addr) =
        testkit::serve::<intake::IntakeService>(db, config, stop.clone()).await;

    let activation_db = TestDb::sqlite();
    let db = activation_db.connect(&activation::store::MIGRATIONS).await;
    databases.push(activation_db);
    let mut config = testkit::config("activation");
    config.playbook = Some(playbook.clone());
    config
        .upstreams
        .insert("intake", format!("http://{intake_addr}"));
    let (activation_channel, activation_addr) =
        testkit::serve::<activation::ActivationService>(db, config, stop.clone()).await;

    let followup_db = TestDb::sqlite();
    let db = followup_db.connect(&followup::store::MIGRATIONS).await;
    databases.push(followup_db);
    let mut config = testkit::config("followup");
    config.playbook = Some(playbook.clone());
    config
        .upstreams
        .insert("intake", format!("http://{intake_addr}"));
    config
        .upstreams
        .insert("activation", format!("http://{activation_addr}"));
    let (followup_channel, _) =
        testkit::serve::<followup::FollowupService>(db, config, stop.clone()).await;

    // Trace A: the lead arrives.
    let (trace_a, client_a) = (TraceId::from(0xa1_u128), SpanId::from(0xa2_u64));
    let submitted = IntakeServiceClient::new(intake_channel)
        .submit_lead(with_trace(
            ipb::SubmitLeadRequest {
                lead: Some(ipb::LeadInput {
                    contact: Some(ipb::Contact {
                        email: "ada@engines.de".into(),
                        ..Default::default()
                    }),
                    source: Some(ipb::SourceContext {
                        source: "website-demo-form".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                idempotency_key: String::new(),
            },
            trace_a,
            client_a,
        ))
        .await
        .expect("submit")
        .into_inner();
    let lead_id = submitted.lead.expect("accepted").lead_id;

    let (trace, parent) = spans.trace_of("grpc", "rpc", "/SubmitLead").await;
    assert_eq!(trace, trace_a, "intake joins the caller's trace");
    assert_eq!(parent, client_a, "as a child of the caller's span");
    let (trace, _) = spans
        .trace_of("consume", "event_type", "intake.v1.LeadAccepted")
        .await;
    assert_eq!(
        trace, trace_a,
        "activation continues it from the event envelope"
    );

    // The SLA deadline set while consuming it fires in the lead's trace.
    let (trace, _) = spans.trace_of("timer.fire", "kind", "sla_deadline").await;
    assert_eq!(trace, trace_a, "the breach joins the lead's trace");

    // Trace B: the owner's first action activates the lead; followup enrolls it.
    let mut activation = ActivationServiceClient::new(activation_channel);
    let mut owner = String::new();
    for _ in 0..200 {
        if let Ok(found) = activation
            .get_activation(apb::GetActivationRequest {
                lead_id: lead_id.clone(),
            })
            .await
        {
            let found = found.into_inner().activation.expect("activation");
            if found.state() == apb::ActivationState::Escalated {
                owner = found.owner_id;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !owner.is_empty(),
        "the breach handed the lead to the manager"
    );
    let (trace_b, client_b) = (TraceId::from(0xb1_u128), SpanId::from(0xb2_u64));
    activation
        .record_first_action(with_trace(
            apb::RecordFirstActionRequest {
                lead_id: lead_id.clone(),
                owner_id: owner,
                channel: apb::Channel::Call as i32,
                template_id: "opener".into(),
                ..Default::default()
            },
            trace_b,
            client_b,
        ))
        .await
        .expect("first action");
    let (trace, parent) = spans.trace_of("grpc", "rpc", "/RecordFirstAction").await;
    assert_eq!((trace, parent), (trace_b, client_b));
    let change = spans.find("lead.change", "change", "first_action").await;
    assert_eq!(
        change.span_context.trace_id(),
        trace_a,
        "the activation continues the lead's trace"
    );
    assert!(
        change
            .links
            .iter()
            .any(|link| link.span_context.trace_id() == trace_b),
        "linked to the caller's trace: {:?}",
        change.links
    );
    let (trace, _) = spans
        .trace_of("consume", "event_type", "activation.v1.LeadActivated")
        .await;
    assert_eq!(trace, trace_a, "followup continues the lead's trace");

    // The enrolment that span made is real: followup has the plan.
    let mut followup = FollowupServiceClient::new(followup_channel);
    let mut enrolled = false;
    for _ in 0..100 {
        if followup
            .get_plan(fpb::GetPlanRequest {
                lead_id: lead_id.clone(),
            })
            .await
            .is_ok()
        {
            enrolled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(enrolled, "followup enrolled the lead");

    // The enrolment's step timer inherited the trace, and so did what it appended.
    let (trace, _) = spans.trace_of("timer.fire", "kind", "followup_wake").await;
    assert_eq!(
        trace, trace_a,
        "the follow-up step fires in the lead's trace"
    );
    let mut due = None;
    for _ in 0..100 {
        let mut events = followup
            .subscribe(fpb::SubscribeRequest {
                from: Some(proto::events::v1::SubscribeFrom {
                    event_types: vec!["FollowUpDue".into()],
                    replay_only: true,
                    ..Default::default()
                }),
            })
            .await
            .expect("subscribe")
            .into_inner();
        if let Some(response) = events.message().await.expect("event stream") {
            due = response.event;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let due = due.expect("a FollowUpDue event");
    let parent = due
        .trace_context
        .get("traceparent")
        .cloned()
        .unwrap_or_default();
    assert!(
        parent.starts_with(&format!("00-{trace_a}-")),
        "FollowUpDue carries the lead's trace: {parent:?}"
    );
    stop.cancel();
    drop(databases);
}
