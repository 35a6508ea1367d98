//! The followup service below gRPC: enrolment from activation's events, tasks when steps come
//! due, outcomes, engagement, opt-outs from both directions, and intake's contactability check
//! in front of every firing.

use std::sync::Arc;

use followup::domain::{Engagement, ReplySentiment, Status, StopReason, TaskOutcome};
use followup::playbook::FollowupPlaybook;
use followup::service::{Followup, ServiceError};
use followup::store::{MIGRATIONS, Store};
use jiff::{SignedDuration, Timestamp};
use prost::Name;
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::playbook::Playbook;
use runtime::timers::Timers;
use runtime::{Clock, Db, EventLog, ManualClock};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Two steps a day apart in business time, then nurture; a frequency cap that is not in the
/// way unless a test wants it.
const PLAYBOOK: &str = r#"
[followup]
timezone = "Europe/Berlin"
business_hours = "mon-fri 09:00-17:00"
unanswered_before_change = 5
default_cadence = "standard"

[followup.frequency_cap]
touches = 10
window = "7d"

[followup.nurture]
after_cadence = "1 business day"
interval = "30d"
touches = 2
channel = "email"
template = "nurture"
strategy = "value"

[[followup.cadences]]
id = "standard"
timezone = "lead"
steps = [
  { delay = "1h", channel = "email", strategy = "value", template = "intro" },
  { delay = "1 business day", channel = "call", strategy = "value", template = "call" },
]
"#;

/// A Monday, 10:00 in Berlin.
fn monday_morning() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

/// A real intake, in process, that followup checks contactability with and forwards
/// opt-outs to.
pub struct Intake {
    client: IntakeServiceClient<tonic::transport::Channel>,
    pub url: String,
    stop: CancellationToken,
    _db: TestDb,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start_intake() -> Intake {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&intake::store::MIGRATIONS).await;
    let stop = CancellationToken::new();
    let (channel, addr) =
        testkit::serve::<intake::IntakeService>(db, testkit::config("intake"), stop.clone()).await;
    Intake {
        client: IntakeServiceClient::new(channel),
        url: format!("http://{addr}"),
        stop,
        _db: test_db,
    }
}

pub struct Fixture {
    svc: Followup,
    clock: ManualClock,
    db: Db,
    intake: Intake,
    _test_db: TestDb,
}

pub fn test_service(db: &Db, clock: &ManualClock, intake_url: &str, playbook: &str) -> Followup {
    let playbook: FollowupPlaybook = runtime::playbook::parse("test.toml", playbook).unwrap();
    Followup::new(
        Store::new(db.clone()),
        EventLog::new(db.clone(), "followup"),
        Timers::new(db.clone()),
        Playbook::fixed(playbook),
        Arc::new(clock.clone()),
        runtime::client::Connector::new(runtime::config::ClientConfig::default())
            .connect("FAIRCHANCE_INTAKE_URL", intake_url)
            .unwrap(),
        None,
    )
}

pub async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect(&MIGRATIONS).await;
    let clock = ManualClock::new(monday_morning());
    let intake = start_intake().await;
    Fixture {
        svc: test_service(&db, &clock, &intake.url, PLAYBOOK),
        clock,
        db,
        intake,
        _test_db: test_db,
    }
}

fn event<M: Name>(message: &M) -> Event {
    Event {
        payload: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{}", M::full_name()),
            value: message.encode_to_vec(),
        }),
        ..Default::default()
    }
}

async fn apply(f: &Fixture, event: &Event) {
    let mut tx = f.db.begin().await.unwrap();
    f.svc.apply_upstream_event(&mut tx, event).await.unwrap();
    tx.commit().await.unwrap();
}

/// Submits a lead to intake (so intake can answer for it) and returns its id.
async fn submit(f: &Fixture, email: &str) -> Uuid {
    let lead = ipb::LeadInput {
        contact: Some(ipb::Contact {
            name: "Ada".into(),
            email: email.into(),
            company: "Engines".into(),
            ..Default::default()
        }),
        source: Some(ipb::SourceContext {
            source: "website-demo-form".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = f
        .intake
        .client
        .clone()
        .submit_lead(ipb::SubmitLeadRequest {
            lead: Some(lead),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    response.lead.unwrap().lead_id.parse().unwrap()
}

/// Activation's LeadActivated for a lead of `email` held by `owner`.
pub fn activated_event(lead: Uuid, email: &str, owner: &str) -> Event {
    let activation = apb::Activation {
        lead_id: lead.to_string(),
        state: apb::ActivationState::Activated as i32,
        owner_id: owner.into(),
        owner_timezone: "Europe/Berlin".into(),
        manager_id: "mia".into(),
        context: Some(apb::ContextPacket {
            name: "Ada".into(),
            email: email.into(),
            phone: "+4930123456".into(),
            timezone: "Europe/Berlin".into(),
            source: "website-demo-form".into(),
            intent_kind: "demo_request".into(),
            icp_tier: "A".into(),
            message: "Can we see routing?".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    event(&apb::LeadActivated {
        lead_id: lead.to_string(),
        owner_id: owner.into(),
        activation: Some(activation),
        ..Default::default()
    })
}

async fn enrolled(f: &Fixture, email: &str) -> Uuid {
    let lead = submit(f, email).await;
    apply(f, &activated_event(lead, email, "anna")).await;
    lead
}

async fn fire(f: &Fixture) -> usize {
    f.svc
        .timers()
        .fire_due(f.clock.now(), &f.svc)
        .await
        .unwrap()
}

/// The event types on the log once at least `n` are readable (on PostgreSQL a commit is
/// readable once every older transaction in the cluster has finished).
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

async fn open_tasks(f: &Fixture, owner: &str) -> Vec<(Uuid, u32)> {
    f.svc
        .due_tasks(owner, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(key, _, _)| (key.lead, key.task))
        .collect()
}

pub async fn a_due_step_becomes_a_task_and_the_next_follows(f: Fixture) {
    let lead = enrolled(&f, "ada@engines.de").await;
    // A replayed event changes nothing.
    apply(&f, &activated_event(lead, "ada@engines.de", "anna")).await;
    let (plan, _) = f.svc.get(lead).await.unwrap();
    let first_due = plan.next.as_ref().unwrap().due_at;
    assert_eq!(first_due, monday_morning() + SignedDuration::from_hours(1));

    // Not due yet: nothing fires.
    assert_eq!(fire(&f).await, 0);
    assert!(open_tasks(&f, "anna").await.is_empty());

    f.clock.set(first_due);
    assert_eq!(fire(&f).await, 1);
    assert_eq!(open_tasks(&f, "anna").await, vec![(lead, 1)]);
    let (plan, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(plan.tasks.len(), 1);
    assert_eq!(plan.tasks[0].template, "intro");
    // The next step is a business day later, in Berlin's working hours.
    let next = plan.next.as_ref().unwrap().due_at;
    assert_eq!(next, first_due + SignedDuration::from_hours(24));

    // Only the owner completes it; then it leaves the to-do list.
    let refused = f
        .svc
        .complete_task(lead, 1, "ben", TaskOutcome::Done, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ServiceError::NotOwner { .. }),
        "{refused:?}"
    );
    f.svc
        .complete_task(lead, 1, "anna", TaskOutcome::Done, None)
        .await
        .unwrap();
    assert!(open_tasks(&f, "anna").await.is_empty());
    let twice = f
        .svc
        .complete_task(lead, 1, "anna", TaskOutcome::Done, None)
        .await
        .unwrap_err();
    assert!(matches!(twice, ServiceError::Refused(_)), "{twice:?}");
    let types = event_types(&f, 3).await;
    assert_eq!(types, ["LeadEnrolled", "FollowUpDue", "TaskCompleted"]);
}

pub async fn an_opt_out_accepted_before_the_due_time_means_the_step_never_fires(f: Fixture) {
    let lead = enrolled(&f, "race@engines.de").await;
    let (plan, _) = f.svc.get(lead).await.unwrap();
    let due = plan.next.as_ref().unwrap().due_at;
    // Intake accepts the opt-out; its event has not reached followup (no consumer runs here).
    f.intake
        .client
        .clone()
        .opt_out(ipb::OptOutRequest {
            email: "race@engines.de".into(),
            phone: String::new(),
            reason: "unsubscribe link".into(),
        })
        .await
        .unwrap();
    f.clock.set(due);
    fire(&f).await;
    assert!(open_tasks(&f, "anna").await.is_empty());
    let (plan, _) = f.svc.get(lead).await.unwrap();
    assert!(plan.tasks.is_empty(), "{:?}", plan.tasks);
    assert!(
        matches!(
            plan.status,
            Status::Stopped {
                reason: StopReason::OptedOut,
                ..
            }
        ),
        "{:?}",
        plan.status
    );
    let (total, _) = f.svc.timers().counts(f.clock.now()).await.unwrap();
    assert_eq!(total, 0, "nothing stays scheduled for an opted-out contact");
}

pub async fn intakes_opt_out_event_stops_every_lead_of_the_contact(f: Fixture) {
    let first = enrolled(&f, "twice@engines.de").await;
    let second = submit(&f, "twice@engines.de").await;
    // The second submission merged into the first lead at intake; activate a second lead of
    // the same person as activation would after the duplicate window.
    let second = if second == first {
        Uuid::now_v7()
    } else {
        second
    };
    apply(&f, &activated_event(second, "twice@engines.de", "ben")).await;
    apply(
        &f,
        &event(&ipb::ContactOptedOut {
            email: "twice@engines.de".into(),
            phone: String::new(),
            lead_ids: vec![first.to_string()],
            reason: "asked on a call".into(),
        }),
    )
    .await;
    for lead in [first, second] {
        let (plan, _) = f.svc.get(lead).await.unwrap();
        assert!(plan.is_over(), "{lead}: {:?}", plan.status);
    }
    // A later lead of the same contact is enrolled stopped: the opt-out outlives the leads.
    let third = Uuid::now_v7();
    apply(&f, &activated_event(third, "twice@engines.de", "anna")).await;
    let (plan, _) = f.svc.get(third).await.unwrap();
    assert!(plan.is_over(), "{:?}", plan.status);
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(2));
    assert_eq!(fire(&f).await, 0);
}

pub async fn a_positive_reply_stops_the_cadence_and_hands_the_lead_on(f: Fixture) {
    let lead = enrolled(&f, "yes@engines.de").await;
    let (_, effect) = f
        .svc
        .record_engagement(
            lead,
            Engagement::Reply {
                sentiment: ReplySentiment::Positive,
            },
            None,
        )
        .await
        .unwrap();
    assert!(effect.contains("positive_reply"), "{effect}");
    let (plan, _) = f.svc.get(lead).await.unwrap();
    assert!(matches!(
        plan.status,
        Status::Stopped {
            reason: StopReason::PositiveReply,
            ..
        }
    ));
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(72));
    fire(&f).await;
    assert!(open_tasks(&f, "anna").await.is_empty());
    let types = event_types(&f, 3).await;
    assert_eq!(
        types,
        ["LeadEnrolled", "CadenceStopped", "EngagementRecorded"]
    );
}

pub async fn an_unsubscribe_here_suppresses_the_contact_at_intake(f: Fixture) {
    let lead = enrolled(&f, "bye@engines.de").await;
    f.svc
        .record_engagement(lead, Engagement::Unsubscribe, None)
        .await
        .unwrap();
    // The opt-out goes to intake durably (a timer, due at once).
    fire(&f).await;
    let check = f
        .intake
        .client
        .clone()
        .check_contactable(ipb::CheckContactableRequest {
            lead_ids: vec![lead.to_string()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.do_not_contact_lead_ids, vec![lead.to_string()]);
}

pub async fn nothing_fires_while_intake_cannot_vouch_for_the_contact(f: Fixture) {
    let lead = enrolled(&f, "wait@engines.de").await;
    f.intake.stop.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (plan, _) = f.svc.get(lead).await.unwrap();
    f.clock.set(plan.next.as_ref().unwrap().due_at);
    assert_eq!(fire(&f).await, 0);
    assert!(open_tasks(&f, "anna").await.is_empty());
    // Still scheduled: it fires once intake answers again (after the claim's lease).
    let (total, _) = f.svc.timers().counts(f.clock.now()).await.unwrap();
    assert_eq!(total, 1);
}

pub async fn a_reassignment_moves_open_tasks_to_the_new_owner(f: Fixture) {
    let lead = enrolled(&f, "move@engines.de").await;
    let (plan, _) = f.svc.get(lead).await.unwrap();
    f.clock.set(plan.next.as_ref().unwrap().due_at);
    fire(&f).await;
    assert_eq!(open_tasks(&f, "anna").await, vec![(lead, 1)]);
    let mut moved = apb::Activation {
        lead_id: lead.to_string(),
        owner_id: "ben".into(),
        owner_timezone: "Europe/Berlin".into(),
        ..Default::default()
    };
    moved.state = apb::ActivationState::Assigned as i32;
    apply(
        &f,
        &event(&apb::LeadReassigned {
            lead_id: lead.to_string(),
            from_owner_id: "anna".into(),
            to_owner_id: "ben".into(),
            activation: Some(moved),
            ..Default::default()
        }),
    )
    .await;
    assert!(open_tasks(&f, "anna").await.is_empty());
    assert_eq!(open_tasks(&f, "ben").await, vec![(lead, 1)]);
}

pub async fn pause_and_resume(f: Fixture) {
    let lead = enrolled(&f, "pause@engines.de").await;
    f.svc.pause(lead, None, "on holiday".into()).await.unwrap();
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(48));
    assert_eq!(fire(&f).await, 0);
    let enrollment = f.svc.resume(lead).await.unwrap();
    let due = enrollment.next.as_ref().unwrap().due_at;
    assert!(due > f.clock.now(), "the delay counts from the resume");
    f.clock.set(due);
    assert_eq!(fire(&f).await, 1);
    assert_eq!(open_tasks(&f, "anna").await, vec![(lead, 1)]);
}

/// A contact erased in intake (activation's `LeadErased`) leaves followup: the running cadence stops, fires nothing more,
/// and the person's address, phone, name and words are gone from every table and stored
/// event; another contact's lead is untouched.
pub async fn an_erased_contact_leaves_no_trace(f: Fixture) {
    let lead = enrolled(&f, "canary.erased@engines.de").await;
    let kept = enrolled(&f, "kept@engines.de").await;
    // The first step fires, so a task with the context packet is on the log.
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(2));
    assert_eq!(fire(&f).await, 2);
    let needles = [
        "canary.erased@engines.de",
        "+4930123456",
        "Can we see routing?",
    ];
    assert!(!testkit::scan::find_values(&f.db, &needles).await.is_empty());

    let erasure = event(&apb::LeadErased {
        lead_id: lead.to_string(),
        erasure_id: Uuid::now_v7().to_string(),
    });
    apply(&f, &erasure).await;
    apply(&f, &erasure).await;

    let (plan, _) = f.svc.get(lead).await.unwrap();
    assert!(plan.is_over(), "{:?}", plan.status);
    assert!(plan.facts.email.is_none() && plan.facts.phone.is_none());
    // The other lead still holds its own (identical) phone and words; nothing of the
    // erased person's address is left anywhere, nor anything on the erased lead's events.
    let found = testkit::scan::find_values(&f.db, &["canary.erased@engines.de"]).await;
    assert_eq!(found, []);
    let erased_lead = lead.to_string();
    for stored in f
        .svc
        .log()
        .read_after(Default::default(), 1000)
        .await
        .unwrap()
    {
        if stored.aggregate_id == erased_lead {
            let text = String::from_utf8_lossy(&stored.payload);
            assert!(
                needles.iter().all(|n| !text.contains(n)) && !text.contains("Ada"),
                "{}",
                stored.type_name
            );
        }
    }
    let (other, _) = f.svc.get(kept).await.unwrap();
    assert_eq!(other.facts.email.as_deref(), Some("kept@engines.de"));
    assert!(!other.is_over());
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(72));
    fire(&f).await;
    let (plan, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(plan.tasks.len(), 1, "nothing fires after the erasure");
}

/// A service whose frequency cap allows one touch, and two leads of `email` (one person),
/// enrolled and with their first steps due now.
async fn two_leads_of_one_person_capped_at_one_touch(f: &Fixture, email: &str) -> Followup {
    let capped = PLAYBOOK.replace("touches = 10", "touches = 1");
    assert_ne!(capped, PLAYBOOK);
    let svc = test_service(&f.db, &f.clock, &f.intake.url, &capped);
    for _ in 0..2 {
        apply(f, &activated_event(Uuid::now_v7(), email, "anna")).await;
    }
    f.clock
        .set(monday_morning() + SignedDuration::from_hours(1));
    svc
}

/// Of the two steps, one went out and the other was deferred by the cap.
async fn assert_one_step_went_out_and_one_was_deferred(f: &Fixture) {
    let tasks = open_tasks(f, "anna").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let types = event_types(f, 4).await;
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("FollowUpDue"), 1, "{types:?}");
    assert_eq!(count("StepDeferred"), 1, "{types:?}");
}

/// Two leads of one person come due together and fire in one transaction, loaded together:
/// the second still counts the first's touch, so a cap of one touch holds it back.
pub async fn leads_of_one_contact_due_together_share_the_cap(f: Fixture) {
    let svc = two_leads_of_one_person_capped_at_one_touch(&f, "cap@engines.de").await;
    assert_eq!(svc.timers().fire_due(f.clock.now(), &svc).await.unwrap(), 2);
    assert_one_step_went_out_and_one_was_deferred(&f).await;
}

/// Two schedulers fire two leads of one person at the same time, each in its own transaction:
/// the second waits for the first to commit before it counts the person's touches, so a cap
/// of one touch still holds the second step back. Without the wait, each transaction counts
/// none of the other's touches and both steps go out.
#[tokio::test]
async fn schedulers_firing_one_persons_leads_at_once_share_the_cap_on_postgres() {
    use runtime::timers::TimerHandler;

    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let f = fixture(test_db).await;
    let first = two_leads_of_one_person_capped_at_one_touch(&f, "race@engines.de").await;
    let second = first.scheduler();
    let now = f.clock.now();
    // Each scheduler claims one of the two due steps, as two replicas would.
    let mine = Timers::new(f.db.clone()).claim_due(now, 1).await.unwrap();
    let theirs = Timers::new(f.db.clone()).claim_due(now, 1).await.unwrap();
    assert_eq!((mine.len(), theirs.len()), (1, 1));
    assert_ne!(mine[0].subject, theirs[0].subject);

    let mut tx = f.db.begin().await.unwrap();
    first.load(&mut tx, &mine).await.unwrap();
    first.fire(&mut tx, &mine[0]).await.unwrap();
    first.flush(&mut tx).await.unwrap();
    // The first step's touch is written, not committed, while the second fires.
    let racing = tokio::spawn({
        let db = f.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            second.load(&mut tx, &theirs).await.unwrap();
            second.fire(&mut tx, &theirs[0]).await.unwrap();
            second.flush(&mut tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    // Let the second get as far as it can: done, or waiting for a lock.
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
        if waiting > 0 || racing.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();
    racing.await.unwrap();
    assert_one_step_went_out_and_one_was_deferred(&f).await;
}

/// A change a caller makes (a resume, under the caller's own trace) reschedules the lead's
/// next step in the lead's trace, the one it was enrolled in, so the steps that follow stay
/// in the trace that follows the lead.
pub async fn a_callers_change_keeps_the_lead_in_its_own_trace(f: Fixture) {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = testkit::set_thread_subscriber(subscriber);
    let trace_of =
        |span: &tracing::Span| span.context().span().span_context().trace_id().to_string();
    let wake_trace = |db: Db, lead: Uuid| async move {
        let stored: String = sqlx::query_scalar(
            "SELECT trace_context FROM timers WHERE kind = 'followup_wake' AND subject = $1",
        )
        .bind(lead.to_string())
        .fetch_one(db.pool())
        .await
        .unwrap();
        let context = runtime::telemetry::decode_trace_context(&stored);
        // traceparent: version-traceid-spanid-flags
        context["traceparent"].split('-').nth(1).unwrap().to_owned()
    };

    let enrolment = tracing::info_span!("lead");
    let lead = enrolled(&f, "traced@engines.de")
        .instrument(enrolment.clone())
        .await;
    assert_eq!(wake_trace(f.db.clone(), lead).await, trace_of(&enrolment));

    let caller = tracing::info_span!("caller");
    assert_ne!(trace_of(&caller), trace_of(&enrolment));
    async {
        f.svc.pause(lead, None, "on holiday".into()).await.unwrap();
        f.svc.resume(lead).await.unwrap();
    }
    .instrument(caller)
    .await;
    assert_eq!(
        wake_trace(f.db.clone(), lead).await,
        trace_of(&enrolment),
        "the rescheduled step left the lead's trace"
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

            suite!(@tests a_due_step_becomes_a_task_and_the_next_follows,
                an_opt_out_accepted_before_the_due_time_means_the_step_never_fires,
                intakes_opt_out_event_stops_every_lead_of_the_contact,
                a_positive_reply_stops_the_cadence_and_hands_the_lead_on,
                an_unsubscribe_here_suppresses_the_contact_at_intake,
                nothing_fires_while_intake_cannot_vouch_for_the_contact,
                a_reassignment_moves_open_tasks_to_the_new_owner,
                pause_and_resume, an_erased_contact_leaves_no_trace,
                leads_of_one_contact_due_together_share_the_cap,
                a_callers_change_keeps_the_lead_in_its_own_trace);
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
