//! Personal data never reaches logs, spans or metrics. Leads carrying unique canary values in
//! every personal field (name, email, phone, the message they wrote, intent detail, an
//! objection's verbatim, outcome and engagement notes) go through all five services —
//! accepted, assigned, activated, enrolled, objected, replied, outcome recorded, timeline
//! read — plus a submission intake refuses. The suite logs at debug level as JSON with every
//! enclosing span's fields (the fields OpenTelemetry exports as span attributes), so one
//! search covers logs and spans; the metrics page is searched as well.

use std::io::{Read, Write};
use std::time::Duration;

use proto::feedback::v1 as fbpb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use proto::proof::v1 as ppb;
use proto::proof::v1::proof_service_client::ProofServiceClient;
use tonic::transport::Channel;

use crate::activation::PLAYBOOK as ACTIVATION_PLAYBOOK;
use crate::support::Suite;

const FOLLOWUP: &str = r#"
[followup]
timezone = "UTC"
default_cadence = "quick"

[[followup.cadences]]
id = "quick"
steps = [{ delay = "1s", channel = "email", strategy = "proof", template = "intro" }]
"#;

/// The canary values of one lead: each unique to this run, so a hit can only be a leak.
struct Canaries {
    name: String,
    email: String,
    phone_national: String,
    phone_e164: String,
    message: String,
    detail: String,
    verbatim: String,
    note: String,
}

impl Canaries {
    fn new(n: u32) -> Self {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let tag = &tag[tag.len() - 12..];
        // A Berlin number whose subscriber part is unique to this run and lead.
        let subscriber =
            10_000_000 + (u32::from_str_radix(&tag[4..], 16).unwrap_or(0) % 89_999_999);
        Self {
            name: format!("Canaryname{tag}{n}"),
            email: format!("canarymail{tag}{n}@example.com"),
            phone_national: format!("030 {subscriber}"),
            phone_e164: format!("+4930{subscriber}"),
            message: format!("canarymessage{tag}{n}"),
            detail: format!("canarydetail{tag}{n}"),
            verbatim: format!("canaryverbatim{tag}{n}"),
            note: format!("canarynote{tag}{n}"),
        }
    }

    fn all(&self) -> [&str; 8] {
        [
            &self.name,
            &self.email,
            &self.phone_national,
            &self.phone_e164,
            &self.message,
            &self.detail,
            &self.verbatim,
            &self.note,
        ]
    }

    fn submission(&self) -> ipb::SubmitLeadRequest {
        ipb::SubmitLeadRequest {
            lead: Some(ipb::LeadInput {
                contact: Some(ipb::Contact {
                    name: self.name.clone(),
                    email: self.email.clone(),
                    phone: self.phone_national.clone(),
                    company: "Engines".into(),
                    country: "DE".into(),
                    ..Default::default()
                }),
                source: Some(ipb::SourceContext {
                    source: "website-demo-form".into(),
                    campaign: "q4-demo".into(),
                    message: self.message.clone(),
                    ..Default::default()
                }),
                intent: Some(ipb::IntentSignal {
                    kind: ipb::IntentKind::DemoRequest as i32,
                    detail: self.detail.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            idempotency_key: String::new(),
        }
    }
}

/// Retries `call` until it stops answering NOT_FOUND (the lead has not reached that service
/// yet), for at most 10 s.
async fn eventually<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for _ in 0..100 {
        match call().await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{what}: {status:?}"),
        }
    }
    panic!("{what}: still NOT_FOUND after 10 s");
}

/// Drives one canary lead through every service.
async fn drive(channel: &Channel, canaries: &Canaries) -> String {
    let mut intake = IntakeServiceClient::new(channel.clone());
    let lead_id = intake
        .submit_lead(canaries.submission())
        .await
        .expect("submit")
        .into_inner()
        .lead
        .expect("accepted")
        .lead_id;
    let owner = crate::followup::activate_lead(channel, &lead_id).await;

    // The cadence's first step is a proof step: it fires after 1 s, asks proof for an asset
    // and becomes the owner's task, carrying the lead's context.
    let mut followup = FollowupServiceClient::new(channel.clone());
    eventually("plan", || {
        let (mut client, lead_id) = (followup.clone(), lead_id.clone());
        async move { client.get_plan(fpb::GetPlanRequest { lead_id }).await }
    })
    .await;
    let mut due = false;
    for _ in 0..100 {
        let tasks = followup
            .list_due_tasks(fpb::ListDueTasksRequest {
                owner_id: owner.clone(),
                ..Default::default()
            })
            .await
            .expect("due tasks")
            .into_inner()
            .tasks;
        if tasks.iter().any(|t| t.lead_id == lead_id) {
            due = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(due, "the proof step of lead {lead_id} came due");
    let mut proof = ProofServiceClient::new(channel.clone());
    proof
        .record_objection(ppb::RecordObjectionRequest {
            lead_id: lead_id.clone(),
            checkpoint: ppb::Checkpoint::Price as i32,
            verbatim: canaries.verbatim.clone(),
            ..Default::default()
        })
        .await
        .expect("objection");
    proof
        .next_proof(ppb::NextProofRequest {
            lead_id: lead_id.clone(),
        })
        .await
        .expect("next proof");
    followup
        .record_engagement(fpb::RecordEngagementRequest {
            lead_id: lead_id.clone(),
            kind: fpb::EngagementKind::Reply as i32,
            sentiment: fpb::ReplySentiment::Positive as i32,
            note: canaries.note.clone(),
            ..Default::default()
        })
        .await
        .expect("engagement");
    let feedback = FeedbackServiceClient::new(channel.clone());
    eventually("outcome", || {
        let mut client = feedback.clone();
        let request = fbpb::RecordOutcomeRequest {
            lead_id: lead_id.clone(),
            stage: fbpb::OutcomeStage::Lost as i32,
            reason: fbpb::OutcomeReason::NoBudget as i32,
            note: canaries.note.clone(),
            ..Default::default()
        };
        async move { client.record_outcome(request).await }
    })
    .await;
    eventually("timeline", || {
        let (mut client, lead_id) = (feedback.clone(), lead_id.clone());
        async move {
            client
                .get_lead_timeline(fbpb::GetLeadTimelineRequest { lead_id })
                .await
        }
    })
    .await;
    lead_id
}

/// GET `url`'s body with a bare HTTP/1.0 request (the metrics endpoint needs nothing more).
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to metrics");
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

#[tokio::test]
async fn no_canary_reaches_a_log_line_a_span_or_a_metric() {
    let playbook = format!("{ACTIVATION_PLAYBOOK}{FOLLOWUP}");
    let suite = Suite::start_with_env(
        Some(&playbook),
        &[
            ("FAIRCHANCE_LOG", "debug,h2=info,hyper=info,tower=info"),
            ("FAIRCHANCE_METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let channel = suite.channel().await;
    let leads = [Canaries::new(1), Canaries::new(2)];
    let mut ids = Vec::with_capacity(leads.len());
    for canaries in &leads {
        ids.push(drive(&channel, canaries).await);
    }

    // A submission intake refuses: its bad email must not be logged either.
    let refused = Canaries::new(3);
    let mut bad = refused.submission();
    if let Some(contact) = bad.lead.as_mut().and_then(|l| l.contact.as_mut()) {
        contact.email = format!("{}@", refused.email.trim_end_matches("@example.com"));
    }
    let status = IntakeServiceClient::new(channel.clone())
        .submit_lead(bad)
        .await
        .expect_err("an email without a domain is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // Feedback has consumed every stream up to the replies: the timeline shows them.
    let mut feedback = FeedbackServiceClient::new(channel.clone());
    for id in &ids {
        for _ in 0..100 {
            let timeline = feedback
                .get_lead_timeline(fbpb::GetLeadTimelineRequest {
                    lead_id: id.clone(),
                })
                .await
                .expect("timeline")
                .into_inner();
            if format!("{timeline:?}").contains("CadenceStopped") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let lines = suite.stdout.lock().expect("stdout").clone();
    let metrics_url = lines
        .iter()
        .find_map(|line| line.split("metrics:").nth(1))
        .map(|rest| rest.trim().to_owned())
        .expect("the banner names the metrics endpoint");
    let metrics = http_get(&metrics_url);
    assert!(
        metrics.contains("rpc_requests"),
        "the metrics page was read: {metrics:.300}"
    );
    // The debug logs did run: lines with span fields exist, so the search below is not vacuous.
    assert!(
        lines.iter().filter(|l| l.starts_with('{')).count() > 50,
        "expected debug JSON logs, got {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("\"spans\"")),
        "log lines carry their spans"
    );

    let mut leaks = Vec::new();
    for canaries in leads.iter().chain([&refused]) {
        for canary in canaries.all() {
            for line in &lines {
                if line.contains(canary) {
                    leaks.push(format!("log: {canary} in {line}"));
                }
            }
            if metrics.contains(canary) {
                leaks.push(format!("metrics: {canary}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "personal data leaked:\n{}",
        leaks.join("\n")
    );
}

/// Every value in any service's database that contains one of `needles`, as
/// `(service, table, needle)`.
async fn stored_anywhere(suite: &Suite, needles: &[&str]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for service in ["intake", "activation", "followup", "proof", "feedback"] {
        let path = suite.data_dir().join(format!("{service}.db"));
        let db = runtime::Db::connect(&format!("sqlite://{}", path.display()), 1)
            .await
            .expect("open the service's database");
        for (table, _column, needle) in testkit::scan::find_values(&db, needles).await {
            found.push((service.to_owned(), table, needle));
        }
        db.pool().close().await;
    }
    found
}

/// EraseContact reaches every service: the person's name, address, phone and words, spread by
/// their lead through all five (context packets, tasks, objections, outcome notes, events),
/// are gone from every database, while another person's lead keeps its own.
#[tokio::test]
async fn an_erased_contact_leaves_no_trace_in_any_service() {
    let playbook = format!("{ACTIVATION_PLAYBOOK}{FOLLOWUP}");
    let suite = Suite::start_with_playbook(Some(&playbook));
    let channel = suite.channel().await;
    let (erased, kept) = (Canaries::new(1), Canaries::new(2));
    let erased_lead = drive(&channel, &erased).await;
    drive(&channel, &kept).await;

    // Before: the person's values are stored in every service that had a reason to keep them,
    // so the search afterwards is not vacuous.
    let before = stored_anywhere(&suite, &erased.all()).await;
    for service in ["intake", "activation", "followup", "proof", "feedback"] {
        assert!(
            before.iter().any(|(s, _, _)| s == service),
            "{service} holds some of the person's data before the erasure: {before:?}"
        );
    }

    let answer = IntakeServiceClient::new(channel.clone())
        .erase_contact(ipb::EraseContactRequest {
            email: erased.email.to_uppercase(),
            reference: "DSR-4711".into(),
            ..Default::default()
        })
        .await
        .expect("erase")
        .into_inner();
    assert_eq!(answer.lead_ids, std::slice::from_ref(&erased_lead));

    // The other services erase as they consume the event: give them a moment.
    let mut left = Vec::new();
    for _ in 0..100 {
        left = stored_anywhere(&suite, &erased.all()).await;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "left after the erasure: {left:?}");

    // The other person is untouched, everywhere.
    let kept_found = stored_anywhere(&suite, &kept.all()).await;
    for service in ["intake", "activation", "followup", "proof", "feedback"] {
        assert!(
            kept_found.iter().any(|(s, _, _)| s == service),
            "{service} still holds the other lead: {kept_found:?}"
        );
    }
    // The erased lead is still counted and its story still readable, without the person.
    let timeline = FeedbackServiceClient::new(channel.clone())
        .get_lead_timeline(fbpb::GetLeadTimelineRequest {
            lead_id: erased_lead,
        })
        .await
        .expect("timeline")
        .into_inner();
    assert!(
        format!("{timeline:?}").contains("ContactErased"),
        "{timeline:?}"
    );
}
