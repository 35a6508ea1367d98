//! The feedback service below gRPC, fed the wire events the other services publish.

use std::sync::Arc;

use feedback::domain::{Attribution, GroupBy, OutcomeReason, OutcomeStage, Verdict};
use feedback::playbook::FeedbackPlaybook;
use feedback::service::{Feedback, ServiceError};
use feedback::store::{MIGRATIONS, Store};
use jiff::{SignedDuration, Timestamp};
use prost::{Message, Name};
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::followup::v1 as fpb;
use proto::intake::v1 as ipb;
use proto::proof::v1 as ppb;
use runtime::grpc::to_proto_timestamp;
use runtime::playbook::Playbook;
use runtime::{Db, ManualClock};
use testkit::TestDb;
use uuid::Uuid;

fn t0() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

fn at(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

pub struct Fixture {
    svc: Feedback,
    db: Db,
    clock: ManualClock,
    _test_db: TestDb,
}

pub async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect(&MIGRATIONS).await;
    let clock = ManualClock::new(at(60 * 24 * 30));
    let playbook: FeedbackPlaybook = runtime::playbook::parse("test.toml", "[feedback]\n").unwrap();
    let svc = Feedback::new(
        Store::new(db.clone()),
        Playbook::fixed(playbook),
        Arc::new(clock.clone()),
    );
    Fixture {
        svc,
        db,
        clock,
        _test_db: test_db,
    }
}

fn event<M: Name>(message: &M, occurred: Timestamp) -> Event {
    Event {
        occurred_at: Some(to_proto_timestamp(occurred)),
        payload: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{}", M::full_name()),
            value: Message::encode_to_vec(message),
        }),
        ..Default::default()
    }
}

fn accepted(lead: Uuid, source: &str, received: Timestamp) -> Event {
    let lead = ipb::Lead {
        lead_id: lead.to_string(),
        input: Some(ipb::LeadInput {
            source: Some(ipb::SourceContext {
                source: source.into(),
                campaign: "q4".into(),
                channel: "paid_search".into(),
                message: "Can we see routing?".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        received_at: Some(to_proto_timestamp(received)),
        icp_tier: ipb::IcpTier::A as i32,
        ..Default::default()
    };
    event(
        &ipb::LeadAccepted {
            lead: Some(lead),
            ..Default::default()
        },
        received,
    )
}

fn activation(lead: Uuid, owner: &str) -> apb::Activation {
    apb::Activation {
        lead_id: lead.to_string(),
        owner_id: owner.into(),
        team_id: "sales".into(),
        ..Default::default()
    }
}

/// Two leads from two sources, one worked and one ignored, both lost, and one rejected
/// submission; in stream order per service (intake, activation, followup, proof).
fn history() -> Vec<Vec<Event>> {
    let worked = Uuid::from_u128(1);
    let ignored = Uuid::from_u128(2);
    let intake = vec![
        accepted(worked, "website", at(0)),
        accepted(ignored, "webinar", at(1)),
        event(
            &ipb::LeadRejected {
                rejection: Some(ipb::Rejection {
                    rejection_id: Uuid::from_u128(3).to_string(),
                    input: Some(ipb::LeadInput {
                        source: Some(ipb::SourceContext {
                            source: "webinar".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    received_at: Some(to_proto_timestamp(at(2))),
                    problems: vec![ipb::Problem {
                        field: "contact.email".into(),
                        code: "missing_required_field".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            at(2),
        ),
    ];
    // The rejected webinar submission, accepted on review as lead 4: counted once.
    let mut reviewed = accepted(Uuid::from_u128(4), "webinar", at(2));
    let mut payload =
        ipb::LeadAccepted::decode(reviewed.payload.as_ref().unwrap().value.as_slice()).unwrap();
    payload.from_rejection_id = Uuid::from_u128(3).to_string();
    payload.rejection_codes = vec!["missing_required_field".into()];
    reviewed.payload.as_mut().unwrap().value = Message::encode_to_vec(&payload);
    let mut intake = intake;
    intake.push(reviewed);
    let mut assigned = activation(worked, "anna");
    assigned.assigned_at = Some(to_proto_timestamp(at(0)));
    let activation_events = vec![
        event(
            &apb::LeadAssigned {
                activation: Some(assigned),
            },
            at(0),
        ),
        event(
            &apb::LeadActivated {
                lead_id: worked.to_string(),
                owner_id: "anna".into(),
                activated_at: Some(to_proto_timestamp(at(3))),
                within_sla: true,
                time_to_activation: Some(prost_types::Duration {
                    seconds: 180,
                    nanos: 0,
                }),
                ..Default::default()
            },
            at(3),
        ),
        event(
            &apb::SlaBreached {
                lead_id: ignored.to_string(),
                deadline: Some(to_proto_timestamp(at(6))),
                cause: apb::FailureCause::OwnerLate as i32,
                ..Default::default()
            },
            at(6),
        ),
    ];
    let followup = vec![event(
        &fpb::EngagementRecorded {
            lead_id: worked.to_string(),
            kind: fpb::EngagementKind::Reply as i32,
            sentiment: fpb::ReplySentiment::Positive as i32,
            occurred_at: Some(to_proto_timestamp(at(60))),
            effect: "cadence stopped".into(),
        },
        at(60),
    )];
    let proof = vec![event(
        &ppb::ObjectionRaised {
            lead_id: worked.to_string(),
            objection: Some(ppb::Objection {
                checkpoint: ppb::Checkpoint::Price as i32,
                raised_at: Some(to_proto_timestamp(at(61))),
                ..Default::default()
            }),
        },
        at(61),
    )];
    vec![intake, activation_events, followup, proof]
}

async fn apply(f: &Fixture, events: &[Event]) {
    let mut tx = f.db.begin().await.unwrap();
    for e in events {
        f.svc.apply_upstream_event(&mut tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

pub async fn events_become_facts_reports_verdicts_and_timelines(f: Fixture) {
    for stream in history() {
        apply(&f, &stream).await;
    }
    let worked = Uuid::from_u128(1);
    let ignored = Uuid::from_u128(2);
    // An outcome for a lead feedback never saw is refused.
    let unknown = f
        .svc
        .record_outcome(
            Uuid::from_u128(9),
            OutcomeStage::Won,
            None,
            String::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(unknown, ServiceError::NotFound), "{unknown:?}");
    let worked_verdict = f
        .svc
        .record_outcome(
            worked,
            OutcomeStage::Disqualified,
            Some(OutcomeReason::NotIcp),
            "wrong size".into(),
            Some(at(120)),
        )
        .await
        .unwrap();
    let ignored_verdict = f
        .svc
        .record_outcome(
            ignored,
            OutcomeStage::Lost,
            Some(OutcomeReason::NoResponse),
            String::new(),
            Some(at(120)),
        )
        .await
        .unwrap();
    // Worked: within SLA, it answered before persistence mattered; but its price objection
    // got no proof, so the system did not give it a fair chance after all.
    assert!(
        matches!(worked_verdict.verdict, Verdict::NotFair { .. }),
        "{:?}",
        worked_verdict.verdict
    );
    assert!(
        matches!(
            ignored_verdict.attribution,
            Some(Attribution::SystemFailure { .. })
        ),
        "{:?}",
        ignored_verdict.attribution
    );

    let report = f.svc.report(at(-60), None, GroupBy::Source).await.unwrap();
    let website = report.group("website").unwrap();
    assert_eq!(
        (website.received, website.accepted, website.rejected),
        (1, 1, 0)
    );
    assert_eq!(website.activated_within_sla.count, 1);
    assert_eq!(
        website.median_time_to_activation,
        Some(SignedDuration::from_mins(3))
    );
    assert_eq!(website.top_objections.len(), 1);
    let webinar = report.group("webinar").unwrap();
    // Three submissions, one of them rejected and later accepted on review as lead 4: received
    // counts it once; it still shows as a rejection (the form's data-quality feedback).
    assert_eq!(
        (webinar.received, webinar.accepted, webinar.rejected),
        (2, 2, 1)
    );
    assert_eq!(webinar.accepted_after_review, 1);
    assert_eq!(
        webinar.rejections_by_reason,
        vec![("missing_required_field".to_owned(), 1)]
    );
    assert_eq!(
        (webinar.never_activated.count, webinar.never_activated.of),
        (2, 2)
    );
    assert_eq!(report.total.attribution.system_failure, 2);

    let funnel = f.svc.funnel(at(-60), None, None).await.unwrap();
    let counts: Vec<u64> = funnel.steps.iter().map(|s| s.count).collect();
    assert_eq!(counts, [3, 3, 1, 1, 0, 0, 0]);

    let (timeline, _) = f.svc.timeline(ignored).await.unwrap();
    let kinds: Vec<&str> = timeline
        .entries
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(kinds, ["LeadAccepted", "SlaBreached", "OutcomeRecorded"]);
    assert!(
        timeline
            .context
            .iter()
            .any(|(k, v)| k == "message" && v == "Can we see routing?")
    );

    // Rebuild: drop the projections and replay the streams (here in another order); every
    // figure comes out the same, outcomes included.
    let before = format!(
        "{:?}{:?}",
        report,
        f.svc.funnel(at(-60), None, None).await.unwrap()
    );
    f.svc.rebuild().await.unwrap();
    let empty = f.svc.report(at(-60), None, GroupBy::Source).await.unwrap();
    assert_eq!(empty.total.accepted, 0);
    for stream in history().into_iter().rev() {
        apply(&f, &stream).await;
    }
    let after = format!(
        "{:?}{:?}",
        f.svc.report(at(-60), None, GroupBy::Source).await.unwrap(),
        f.svc.funnel(at(-60), None, None).await.unwrap()
    );
    assert_eq!(before, after);
    let _ = &f.clock;
}

/// Intake's `ContactErased` removes the person's words from feedback (the message in the
/// preserved context, the CRM's outcome notes) and marks the timeline; the reports keep every
/// count; another lead with the same words keeps them.
pub async fn an_erased_contact_leaves_no_trace(f: Fixture) {
    let lead = Uuid::now_v7();
    let kept = Uuid::now_v7();
    let with_words = |id: Uuid, received| {
        let mut e = accepted(id, "website", received);
        let mut accepted =
            ipb::LeadAccepted::decode(e.payload.as_ref().unwrap().value.as_slice()).unwrap();
        let source = accepted
            .lead
            .as_mut()
            .and_then(|l| l.input.as_mut())
            .and_then(|i| i.source.as_mut())
            .unwrap();
        source.message = "canarymessage: call me after five".into();
        e.payload.as_mut().unwrap().value = accepted.encode_to_vec();
        e
    };
    apply(&f, &[with_words(lead, at(0)), with_words(kept, at(1))]).await;
    for id in [lead, kept] {
        f.svc
            .record_outcome(
                id,
                OutcomeStage::Lost,
                Some(OutcomeReason::NoBudget),
                format!("canarynote for {id}"),
                Some(at(60)),
            )
            .await
            .unwrap();
    }
    let needles = ["canarymessage", &format!("canarynote for {lead}")];
    assert!(!testkit::scan::find_values(&f.db, &needles).await.is_empty());
    let before = f.svc.report(at(-60), None, GroupBy::Source).await.unwrap();

    let erased = event(
        &ipb::ContactErased {
            erasure_id: "erasure-1".into(),
            lead_ids: vec![lead.to_string()],
        },
        at(90),
    );
    apply(&f, std::slice::from_ref(&erased)).await;
    apply(&f, &[erased]).await;

    let (timeline, _) = f.svc.timeline(lead).await.unwrap();
    assert!(timeline.context.iter().all(|(label, _)| label != "message"));
    assert!(
        timeline
            .context
            .iter()
            .any(|(label, v)| label == "source" && v == "website")
    );
    assert!(
        timeline
            .entries
            .iter()
            .any(|e| e.event_type == "ContactErased" && e.summary.contains("erasure-1"))
    );
    let found = testkit::scan::find_values(&f.db, &[&format!("canarynote for {lead}")]).await;
    assert_eq!(found, []);
    // The message left only the erased lead: the other one still has it.
    let (other, _) = f.svc.timeline(kept).await.unwrap();
    assert!(other.context.iter().any(|(label, _)| label == "message"));
    let after = f.svc.report(at(-60), None, GroupBy::Source).await.unwrap();
    assert_eq!(
        format!("{before:?}"),
        format!("{after:?}"),
        "every figure stays"
    );
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn make() -> Option<Fixture> {
                let test_db: Option<TestDb> = $make;
                Some(fixture(test_db?).await)
            }

            suite!(@tests events_become_facts_reports_verdicts_and_timelines,
                an_erased_contact_leaves_no_trace);
        }
    };
    (@tests $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(f) = make().await else { return };
                super::$name(f).await;
            }
        )*
    };
}

suite!(sqlite, Some(TestDb::sqlite()));
suite!(postgres, TestDb::postgres().await);
