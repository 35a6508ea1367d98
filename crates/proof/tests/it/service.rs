//! The proof service below gRPC: belief states from activation's and followup's events,
//! recommendations gated by stage and led by objections, deliveries from follow-up proof
//! steps, outcomes counted once toward effectiveness, and belief debt at hand-off.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use proof::domain::{Checkpoint, Recommendation, Sentiment, Signal, Stage};
use proof::playbook::ProofPlaybook;
use proof::service::{Proof, ServiceError};
use proof::store::{MIGRATIONS, Store};
use prost::Name;
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::followup::v1 as fpb;
use rand::SeedableRng;
use runtime::playbook::Playbook;
use runtime::timers::Timers;
use runtime::{Clock, Db, EventLog, ManualClock};
use testkit::TestDb;
use uuid::Uuid;

/// One asset per stage, a security pack for security objections, and one for logistics only.
pub const PLAYBOOK: &str = r#"
[proof]
spacing = "1d"
outcome_window = "3d"

[[proof.assets]]
id = "cost-benchmark"
title = "What slow follow-up costs"
kind = "benchmark"
stage = "problem_awareness"

[[proof.assets]]
id = "logistics-story"
title = "A logistics VP on lost demo requests"
kind = "testimonial"
stage = "problem_awareness"
industries = ["logistics"]

[[proof.assets]]
id = "demo-video"
title = "From form to call in five minutes"
kind = "demo_video"
stage = "mechanism_understanding"

[[proof.assets]]
id = "security-pack"
title = "Security and compliance pack"
kind = "security_pack"
stage = "mechanism_understanding"
checkpoints = ["security_compliance"]

[[proof.assets]]
id = "reference-call"
title = "Talk to a customer like you"
kind = "reference_call"
stage = "capability_trust"
"#;

fn monday() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

pub struct Fixture {
    svc: Proof,
    clock: ManualClock,
    db: Db,
    _test_db: TestDb,
}

pub async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect(&MIGRATIONS).await;
    let clock = ManualClock::new(monday());
    let playbook: ProofPlaybook = runtime::playbook::parse("test.toml", PLAYBOOK).unwrap();
    let svc = Proof::with_rng(
        Store::new(db.clone()),
        EventLog::new(db.clone(), "proof"),
        Timers::new(db.clone()),
        Playbook::fixed(playbook),
        Arc::new(clock.clone()),
        rand::rngs::StdRng::seed_from_u64(7),
    );
    Fixture {
        svc,
        clock,
        db,
        _test_db: test_db,
    }
}

fn event<M: Name>(message: &M) -> Event {
    Event {
        payload: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{}", M::full_name()),
            value: prost::Message::encode_to_vec(message),
        }),
        ..Default::default()
    }
}

async fn apply(f: &Fixture, event: &Event) {
    let mut tx = f.db.begin().await.unwrap();
    f.svc.apply_upstream_event(&mut tx, event).await.unwrap();
    tx.commit().await.unwrap();
}

/// Activation's LeadActivated for a lead in `industry`.
fn activated(lead: Uuid, industry: &str) -> Event {
    let mut context = apb::ContextPacket {
        title: "Head of Sales".into(),
        ..Default::default()
    };
    context
        .attributes
        .insert("industry".into(), industry.into());
    context
        .attributes
        .insert("segment".into(), "mid_market".into());
    event(&apb::LeadActivated {
        lead_id: lead.to_string(),
        activation: Some(apb::Activation {
            lead_id: lead.to_string(),
            context: Some(context),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn lead(f: &Fixture, industry: &str) -> Uuid {
    let lead = Uuid::now_v7();
    apply(f, &activated(lead, industry)).await;
    lead
}

fn asset_of(r: &Recommendation) -> &str {
    match r {
        Recommendation::Asset { asset, .. } => &asset.id,
        other => panic!("expected an asset, got {other:?}"),
    }
}

async fn event_types(f: &Fixture, n: usize) -> Vec<String> {
    let mut types = Vec::new();
    for _ in 0..300 {
        types = f
            .svc
            .log()
            .read_after(Default::default(), 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.short_type().to_owned())
            .collect();
        if types.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    types
}

pub async fn a_new_lead_gets_problem_stage_proof_matched_to_its_industry(f: Fixture) {
    let lead = lead(&f, "logistics").await;
    let state = f.svc.get(lead).await.unwrap();
    assert_eq!(state.profile.industry, "logistics");
    assert_eq!(state.profile.persona, "Head of Sales");
    let first = f.svc.next_proof(lead, None).await.unwrap();
    // Problem awareness first; the logistics story fits this lead better than the generic one.
    assert_eq!(asset_of(&first), "logistics-story");
    let Recommendation::Asset { passed_over, .. } = &first else {
        unreachable!()
    };
    let gated = passed_over
        .iter()
        .find(|p| p.asset == "reference-call")
        .expect("reference call passed over");
    assert_eq!(gated.why.code(), "stage_gated", "{}", gated.why);

    // A lead in another industry never gets the logistics story.
    let other = self::lead(&f, "healthcare").await;
    assert_eq!(
        asset_of(&f.svc.next_proof(other, None).await.unwrap()),
        "cost-benchmark"
    );
}

pub async fn an_objection_leads_and_spacing_holds_otherwise(f: Fixture) {
    let lead = lead(&f, "retail").await;
    f.svc
        .record_delivered(lead, "cost-benchmark", None)
        .await
        .unwrap();
    // The call shows the problem landed: the mechanism is next, but not the same hour.
    f.svc
        .record_signal(
            lead,
            Signal::Note {
                shows: Some(Stage::ProblemAwareness),
            },
            None,
        )
        .await
        .unwrap();
    let waited = f.svc.next_proof(lead, None).await.unwrap();
    assert!(matches!(waited, Recommendation::Wait { .. }), "{waited:?}");
    f.clock.advance(SignedDuration::from_hours(25));
    let next = f.svc.next_proof(lead, None).await.unwrap();
    assert!(
        ["demo-video", "security-pack"].contains(&asset_of(&next)),
        "a mechanism-stage asset: {next:?}"
    );
    f.svc
        .record_delivered(lead, "demo-video", None)
        .await
        .unwrap();
    // An objection raised since the delivery is answered at once, with proof for it.
    f.clock.advance(SignedDuration::from_mins(10));
    f.svc
        .record_objection(
            lead,
            Checkpoint::SecurityCompliance,
            "Our CISO will never sign off on this".into(),
            None,
        )
        .await
        .unwrap();
    let next = f.svc.next_proof(lead, None).await.unwrap();
    assert_eq!(asset_of(&next), "security-pack");
    f.svc
        .record_delivered(lead, "security-pack", None)
        .await
        .unwrap();
    let state = f.svc.get(lead).await.unwrap();
    assert_eq!(
        state.objections[0].answered_by.as_deref(),
        Some("security-pack")
    );
    // An unknown asset is refused with its id.
    let unknown = f
        .svc
        .record_delivered(lead, "nope", None)
        .await
        .unwrap_err();
    assert!(matches!(unknown, ServiceError::Refused(_)), "{unknown:?}");
}

pub async fn outcomes_count_once_toward_effectiveness(f: Fixture) {
    let replied = lead(&f, "retail").await;
    let silent = lead(&f, "retail").await;
    for lead in [replied, silent] {
        f.svc
            .record_delivered(lead, "cost-benchmark", None)
            .await
            .unwrap();
    }
    f.clock.advance(SignedDuration::from_hours(2));
    // A positive reply within the window: a success at once.
    f.svc
        .record_signal(
            replied,
            Signal::Reply {
                sentiment: Sentiment::Positive,
            },
            None,
        )
        .await
        .unwrap();
    // The silent lead's window ends: its timer settles it as a failure.
    f.clock.advance(SignedDuration::from_hours(72));
    let fired = f
        .svc
        .timers()
        .fire_due(f.clock.now(), &f.svc)
        .await
        .unwrap();
    assert!(fired >= 1);
    // Firing again changes nothing: each delivery counts once.
    f.svc
        .timers()
        .fire_due(f.clock.now(), &f.svc)
        .await
        .unwrap();
    let (_, effectiveness) = f.svc.assets().await.unwrap();
    let (_, _, counts) = effectiveness
        .iter()
        .find(|(asset, _, _)| asset == "cost-benchmark")
        .expect("counted");
    assert_eq!((counts.successes, counts.failures), (1, 1));
}

pub async fn a_follow_up_proof_step_done_is_a_delivery_and_a_hand_off_records_debt(f: Fixture) {
    let lead = lead(&f, "retail").await;
    f.svc
        .record_objection(lead, Checkpoint::Price, "Too expensive for us".into(), None)
        .await
        .unwrap();
    let task = |outcome: fpb::TaskOutcome| fpb::TaskCompleted {
        task: Some(fpb::Task {
            task_id: format!("{lead}/2"),
            lead_id: lead.to_string(),
            step: Some(fpb::Step {
                proof_asset_id: "demo-video".into(),
                outcome: outcome as i32,
                completed_at: Some(runtime::grpc::to_proto_timestamp(monday())),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    // A call nobody answered delivered nothing.
    apply(&f, &event(&task(fpb::TaskOutcome::NoAnswer))).await;
    assert!(f.svc.get(lead).await.unwrap().deliveries.is_empty());
    apply(&f, &event(&task(fpb::TaskOutcome::Done))).await;
    let state = f.svc.get(lead).await.unwrap();
    assert_eq!(state.deliveries.len(), 1);
    assert_eq!(state.deliveries[0].asset, "demo-video");

    // Followup hands the lead on: the debt is what sales inherits.
    apply(
        &f,
        &event(&fpb::CadenceStopped {
            lead_id: lead.to_string(),
            reason: "meeting_booked".into(),
            plan: None,
        }),
    )
    .await;
    let state = f.svc.get(lead).await.unwrap();
    let hand_off = state.handed_off.as_ref().expect("handed off");
    assert!(
        hand_off
            .debt
            .missing_stages
            .contains(&Stage::CapabilityTrust)
    );
    assert_eq!(hand_off.debt.unanswered.len(), 1);
    assert_eq!(hand_off.debt.unanswered[0].checkpoint, Checkpoint::Price);
    let types = event_types(&f, 5).await;
    assert!(
        types.contains(&"BeliefDebtRecorded".to_owned()),
        "{types:?}"
    );
    assert!(types.contains(&"ProofDelivered".to_owned()), "{types:?}");
    assert!(types.contains(&"ObjectionRaised".to_owned()), "{types:?}");
}

/// Activation's `LeadErased` erases what the buyer said from proof: objections' verbatims in
/// the belief state, in the events that carried them and in the recommendation reasons that
/// quoted them; checkpoints and counts stay. Another lead's words are untouched.
pub async fn an_erased_lead_leaves_no_trace(f: Fixture) {
    const SAID: &str = "canaryverbatim: we tried three tools like this and every one of them \
                        fell over the first time our sales team went on holiday";
    let lead = lead(&f, "retail").await;
    let kept = lead_with_objection(&f, "canarykept: too expensive").await;
    f.svc
        .record_objection(lead, Checkpoint::SecurityCompliance, SAID.into(), None)
        .await
        .unwrap();
    // The recommendation quotes the objection (shortened) in its reason and its event.
    let next = f.svc.next_proof(lead, None).await.unwrap();
    assert!(format!("{next:?}").contains("canaryverbatim"), "{next:?}");
    apply(
        &f,
        &event(&fpb::CadenceStopped {
            lead_id: lead.to_string(),
            reason: "meeting_booked".into(),
            plan: None,
        }),
    )
    .await;
    let before = testkit::scan::find_values(&f.db, &["canaryverbatim"]).await;
    let places: Vec<_> = before.iter().map(|(table, _, _)| table.as_str()).collect();
    assert!(
        places.contains(&"belief_states") && places.contains(&"event_log"),
        "{before:?}"
    );

    let erased = event(&apb::LeadErased {
        lead_id: lead.to_string(),
        erasure_id: Uuid::now_v7().to_string(),
    });
    apply(&f, &erased).await;
    apply(&f, &erased).await;

    assert_eq!(
        testkit::scan::find_values(&f.db, &["canaryverbatim"]).await,
        []
    );
    let state = f.svc.get(lead).await.unwrap();
    assert_eq!(state.objections.len(), 1);
    assert_eq!(
        state.objections[0].checkpoint,
        Checkpoint::SecurityCompliance
    );
    assert!(state.objections[0].verbatim.is_empty());
    let debt = &state.handed_off.as_ref().expect("handed off").debt;
    assert_eq!(debt.unanswered.len(), 1, "the debt still counts it");
    assert!(debt.unanswered[0].verbatim.is_empty());
    let other = f.svc.get(kept).await.unwrap();
    assert_eq!(
        other.objections[0].verbatim.expose(),
        "canarykept: too expensive"
    );
    assert!(
        !testkit::scan::find_values(&f.db, &["canarykept"])
            .await
            .is_empty()
    );
}

async fn lead_with_objection(f: &Fixture, said: &str) -> Uuid {
    let lead = lead(f, "retail").await;
    f.svc
        .record_objection(lead, Checkpoint::Price, said.into(), None)
        .await
        .unwrap();
    lead
}

pub async fn unknown_leads_are_not_found(f: Fixture) {
    let err = f.svc.next_proof(Uuid::now_v7(), None).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound), "{err:?}");
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn make() -> Option<Fixture> {
                let test_db: Option<TestDb> = $make;
                Some(fixture(test_db?).await)
            }

            suite!(@tests a_new_lead_gets_problem_stage_proof_matched_to_its_industry,
                an_objection_leads_and_spacing_holds_otherwise,
                outcomes_count_once_toward_effectiveness,
                a_follow_up_proof_step_done_is_a_delivery_and_a_hand_off_records_debt,
                an_erased_lead_leaves_no_trace, unknown_leads_are_not_found);
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
