//! The activation service end to end below gRPC: intake events in, assignments, first actions,
//! breaches, escalations and reassignments out, on both backends.

use std::sync::Arc;

use activation::domain::Channel;
use activation::domain::first_action::FirstAction;
use activation::playbook::ActivationPlaybook;
use activation::record::State;
use activation::service::{Activation, ActivationError};
use activation::store::{MIGRATIONS, Store};
use jiff::{SignedDuration, Timestamp};
use prost::{Message, Name};
use proto::events::v1::Event;
use proto::intake::v1 as ipb;
use runtime::playbook::Playbook;
use runtime::timers::Timers;
use runtime::{Clock, Db, EventLog, ManualClock, StoredEvent};
use testkit::TestDb;
use uuid::Uuid;

const PLAYBOOK: &str = r#"
[activation]
default_team = "dach"

[activation.escalation]
max_reassignments = 1
routing_delay = "2m"

[[activation.teams]]
id = "dach"
name = "DACH"
manager = "mia"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"

[[activation.teams]]
id = "leadership"
name = "Leadership"
manager = "mia"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"

[[activation.owners]]
id = "anna"
name = "Anna"
team = "dach"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"
capacity = 10

[[activation.owners]]
id = "ben"
name = "Ben"
team = "dach"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"
capacity = 10

[[activation.owners]]
id = "mia"
name = "Mia"
team = "leadership"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"
capacity = 100

[[activation.sla]]
name = "hot"
window = "5m"
intents = ["demo_request"]

[[activation.sla]]
name = "standard"
window = "1h"

[[activation.plans]]
name = "call-demo"
intents = ["demo_request"]
channel = "call"
template = "demo-call-opener"
alternatives = ["email"]

[[activation.plans]]
name = "email-first"
channel = "email"
template = "hello"
"#;

pub struct Fixture {
    pub svc: Activation,
    pub clock: ManualClock,
    pub db: Db,
    _test_db: TestDb,
}

/// A Monday at 10:00 in Berlin: everybody is working.
fn monday_morning() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

fn service(db: &Db, clock: &ManualClock) -> Activation {
    let playbook: ActivationPlaybook = runtime::playbook::parse("test.toml", PLAYBOOK).unwrap();
    Activation::new(
        Store::new(db.clone()),
        EventLog::new(db.clone(), "activation"),
        Timers::new(db.clone()),
        Playbook::fixed(playbook),
        Arc::new(clock.clone()),
    )
}

pub async fn fixture(test_db: TestDb) -> Fixture {
    let db = test_db.connect(&MIGRATIONS).await;
    let clock = ManualClock::new(monday_morning());
    Fixture {
        svc: service(&db, &clock),
        clock,
        db,
        _test_db: test_db,
    }
}

fn accepted(email: &str, kind: ipb::IntentKind, do_not_contact: bool) -> (Uuid, Event) {
    let id = Uuid::now_v7();
    let lead = ipb::Lead {
        lead_id: id.to_string(),
        input: Some(ipb::LeadInput {
            contact: Some(ipb::Contact {
                name: "Ada".into(),
                email: email.into(),
                company: "Engines".into(),
                country: "DE".into(),
                ..Default::default()
            }),
            source: Some(ipb::SourceContext {
                source: "website-demo-form".into(),
                campaign: "q4-demo".into(),
                message: "Can we see routing for 40 reps?".into(),
                ..Default::default()
            }),
            intent: Some(ipb::IntentSignal {
                kind: kind as i32,
                strength: ipb::IntentStrength::High as i32,
                detail: String::new(),
            }),
            ..Default::default()
        }),
        icp_tier: ipb::IcpTier::A as i32,
        do_not_contact,
        ..Default::default()
    };
    (
        id,
        event(&ipb::LeadAccepted {
            lead: Some(lead),
            ..Default::default()
        }),
    )
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
    f.svc.apply_intake_event(&mut tx, event).await.unwrap();
    tx.commit().await.unwrap();
}

async fn fire(f: &Fixture) -> usize {
    f.svc
        .timers()
        .fire_due(f.clock.now(), &f.svc)
        .await
        .unwrap()
}

/// The events on the log once `n` are readable (on PostgreSQL a commit is readable once every
/// older transaction in the cluster, other tests' included, has finished).
async fn logged(f: &Fixture, n: usize) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for _ in 0..300 {
        events = f
            .svc
            .log()
            .read_after(Default::default(), 1000)
            .await
            .unwrap();
        if events.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    events
}

/// The event types on the log once `n` are readable.
async fn event_types(f: &Fixture, n: usize) -> Vec<String> {
    logged(f, n)
        .await
        .iter()
        .map(|e| e.short_type().to_owned())
        .collect()
}

fn act(owner: &str, channel: Channel, reference: &str, at: Timestamp) -> FirstAction {
    FirstAction {
        owner: owner.into(),
        channel,
        reference: reference.into(),
        at,
    }
}

pub async fn a_lead_gets_an_owner_plan_context_and_deadline(f: Fixture) {
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev).await;
    // The same event again (a replay) changes nothing.
    apply(&f, &ev).await;
    let (record, context) = f.svc.get(lead).await.unwrap();
    assert_eq!(record.state, State::Assigned);
    assert!(matches!(
        record.owner.as_ref().map(|o| o.as_str()),
        Some("anna" | "ben")
    ));
    assert_eq!(record.sla_policy, "hot");
    assert_eq!(
        record.deadline,
        monday_morning() + SignedDuration::from_mins(5)
    );
    assert_eq!(record.plan.channel, Channel::Call);
    assert!(!record.plan.talking_points.is_empty());
    let packet = proto::activation::v1::ContextPacket::decode(context.as_slice()).unwrap();
    assert_eq!(packet.message, "Can we see routing for 40 reps?");
    assert_eq!(packet.campaign, "q4-demo");
    assert_eq!(event_types(&f, 1).await, ["LeadAssigned"]);
    let (total, _) = f.svc.timers().counts(f.clock.now()).await.unwrap();
    assert_eq!(total, 1);
}

pub async fn round_robin_alternates_between_equal_owners(f: Fixture) {
    let mut owners = Vec::new();
    for n in 0..6 {
        let (lead, ev) = accepted(
            &format!("p{n}@x.de"),
            ipb::IntentKind::ContentDownload,
            false,
        );
        apply(&f, &ev).await;
        owners.push(f.svc.get(lead).await.unwrap().0.owner.unwrap().to_string());
    }
    assert_eq!(
        owners.iter().filter(|o| *o == "anna").count(),
        3,
        "{owners:?}"
    );
    assert_eq!(
        owners.iter().filter(|o| *o == "ben").count(),
        3,
        "{owners:?}"
    );
}

pub async fn only_a_relevant_first_action_by_the_owner_activates(f: Fixture) {
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev).await;
    let (record, _) = f.svc.get(lead).await.unwrap();
    let owner = record.owner.clone().unwrap().to_string();
    let other = if owner == "anna" { "ben" } else { "anna" };
    f.clock.advance(SignedDuration::from_mins(2));
    let at = f.clock.now();
    let wrong_owner = f
        .svc
        .record_first_action(lead, act(other, Channel::Call, "demo-call-opener", at))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_owner, ActivationError::Irrelevant(_)),
        "{wrong_owner}"
    );
    let wrong_channel = f
        .svc
        .record_first_action(lead, act(&owner, Channel::Sms, "demo-call-opener", at))
        .await
        .unwrap_err();
    assert!(
        wrong_channel.to_string().contains("channel sms"),
        "{wrong_channel}"
    );
    let no_reference = f
        .svc
        .record_first_action(lead, act(&owner, Channel::Email, "hi", at))
        .await
        .unwrap_err();
    assert!(
        matches!(no_reference, ActivationError::Irrelevant(_)),
        "{no_reference}"
    );
    let (done, _) = f
        .svc
        .record_first_action(lead, act(&owner, Channel::Email, "demo-call-opener", at))
        .await
        .unwrap();
    assert_eq!(done.state, State::Activated);
    assert!(done.within_sla);
    assert_eq!(done.time_to_activation, Some(SignedDuration::from_mins(2)));
    // Activated: the deadline no longer fires, and a second action is refused.
    f.clock.advance(SignedDuration::from_mins(10));
    assert_eq!(fire(&f).await, 0);
    assert!(matches!(
        f.svc
            .record_first_action(
                lead,
                act(&owner, Channel::Call, "demo-call-opener", f.clock.now())
            )
            .await,
        Err(ActivationError::NotOpen(_))
    ));
    assert_eq!(event_types(&f, 2).await, ["LeadAssigned", "LeadActivated"]);
}

pub async fn a_breach_escalates_and_reassigns_until_the_manager_owns_it(f: Fixture) {
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev).await;
    let first = f.svc.get(lead).await.unwrap().0.owner.unwrap();
    // The owner lets the window pass.
    f.clock.advance(SignedDuration::from_mins(6));
    assert_eq!(fire(&f).await, 1);
    let (after, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(after.state, State::Assigned);
    assert_eq!(after.breaches, 1);
    assert_ne!(after.owner.as_ref(), Some(&first));
    assert_eq!(after.previous_owners, std::slice::from_ref(&first));
    assert_eq!(after.deadline, f.clock.now() + SignedDuration::from_mins(5));
    // The old owner acting late is refused: the lead has moved on.
    assert!(
        f.svc
            .record_first_action(
                lead,
                act(
                    first.as_str(),
                    Channel::Call,
                    "demo-call-opener",
                    f.clock.now()
                )
            )
            .await
            .is_err()
    );
    // The second owner lets it pass too: the limit is reached and the manager owns it.
    f.clock.advance(SignedDuration::from_mins(6));
    assert_eq!(fire(&f).await, 1);
    let (escalated, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(escalated.state, State::Escalated);
    assert_eq!(escalated.owner.as_ref().map(|o| o.as_str()), Some("mia"));
    assert_eq!(escalated.breaches, 2);
    assert_eq!(
        event_types(&f, 6).await,
        [
            "LeadAssigned",
            "SlaBreached",
            "EscalationRaised",
            "LeadReassigned",
            "SlaBreached",
            "EscalationRaised"
        ]
    );
    // Each breach is attributed: the owners were working and present, so the owners were late.
    let escalations: Vec<proto::activation::v1::EscalationRaised> = f
        .svc
        .log()
        .read_after(Default::default(), 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.short_type() == "EscalationRaised")
        .map(|e| proto::activation::v1::EscalationRaised::decode(e.payload.as_slice()).unwrap())
        .collect();
    assert_eq!(escalations.len(), 2);
    assert!(escalations.iter().all(|e| e.cause()
        == proto::activation::v1::FailureCause::OwnerLate
        && e.manager_id == "mia"));
    assert_eq!(
        escalations
            .iter()
            .map(|e| e.manager_owns)
            .collect::<Vec<_>>(),
        [false, true]
    );
    // The manager's action still activates it, late and not within SLA.
    let (done, _) = f
        .svc
        .record_first_action(
            lead,
            act("mia", Channel::Call, "demo-call-opener", f.clock.now()),
        )
        .await
        .unwrap();
    assert_eq!(done.state, State::Activated);
    assert!(!done.within_sla);
}

pub async fn nobody_available_queues_with_a_cause_and_alerts_at_once(f: Fixture) {
    let until = Some(monday_morning() + SignedDuration::from_hours(48));
    f.svc
        .set_availability(&"anna".into(), until, "vacation")
        .await
        .unwrap();
    f.svc
        .set_availability(&"ben".into(), until, "vacation")
        .await
        .unwrap();
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::ContentDownload, false);
    apply(&f, &ev).await;
    let (queued, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(queued.state, State::Queued);
    assert!(queued.owner.is_none());
    assert_eq!(
        event_types(&f, 2).await,
        ["EscalationRaised", "LeadAssigned"]
    );
    let alert = f
        .svc
        .log()
        .read_after(Default::default(), 10)
        .await
        .unwrap();
    let alert =
        proto::activation::v1::EscalationRaised::decode(alert[0].payload.as_slice()).unwrap();
    assert_eq!(
        alert.cause(),
        proto::activation::v1::FailureCause::OwnerUnavailable
    );
    // Ben is back: the next retry assigns the lead, and the wait counted against the SLA.
    f.svc
        .set_availability(&"ben".into(), None, "")
        .await
        .unwrap();
    f.clock.advance(SignedDuration::from_mins(1));
    assert_eq!(fire(&f).await, 1);
    let (assigned, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(assigned.state, State::Assigned);
    assert_eq!(assigned.owner.as_ref().map(|o| o.as_str()), Some("ben"));
    assert_eq!(
        assigned.deadline,
        monday_morning() + SignedDuration::from_hours(1)
    );
}

pub async fn going_out_of_office_moves_open_leads(f: Fixture) {
    let mut leads = Vec::new();
    for n in 0..2 {
        let (lead, ev) = accepted(
            &format!("p{n}@x.de"),
            ipb::IntentKind::ContentDownload,
            false,
        );
        apply(&f, &ev).await;
        leads.push(lead);
    }
    let anna_had: Vec<Uuid> = {
        let mut v = Vec::new();
        for l in &leads {
            if f.svc
                .get(*l)
                .await
                .unwrap()
                .0
                .owner
                .as_ref()
                .map(|o| o.as_str())
                == Some("anna")
            {
                v.push(*l);
            }
        }
        v
    };
    let moved = f
        .svc
        .set_availability(
            &"anna".into(),
            Some(f.clock.now() + SignedDuration::from_hours(8)),
            "sick",
        )
        .await
        .unwrap();
    assert_eq!(moved, anna_had);
    for l in leads {
        assert_eq!(
            f.svc
                .get(l)
                .await
                .unwrap()
                .0
                .owner
                .as_ref()
                .map(|o| o.as_str()),
            Some("ben")
        );
    }
    assert!(
        f.svc
            .set_availability(&"nobody".into(), None, "")
            .await
            .is_err()
    );
}

pub async fn do_not_contact_leads_get_no_owner(f: Fixture) {
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, true);
    apply(&f, &ev).await;
    let (record, _) = f.svc.get(lead).await.unwrap();
    assert_eq!(record.state, State::DoNotContact);
    assert!(record.owner.is_none());
    assert_eq!(f.svc.timers().counts(f.clock.now()).await.unwrap().0, 0);
    // An opt-out after assignment stops the clock too.
    let (lead2, ev2) = accepted("bo@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev2).await;
    apply(
        &f,
        &event(&ipb::ContactOptedOut {
            email: "bo@engines.de".into(),
            lead_ids: vec![lead2.to_string()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(f.svc.get(lead2).await.unwrap().0.state, State::DoNotContact);
    f.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(fire(&f).await, 0);
    // Subscribers see both leave: the owner's queue and dashboards stay true.
    assert_eq!(
        event_types(&f, 3).await,
        ["LeadDoNotContact", "LeadAssigned", "LeadDoNotContact"]
    );
}

pub async fn a_deadline_that_passed_while_down_fires_on_start(f: Fixture) {
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev).await;
    // The process stops; an hour later a new one starts on the same database.
    f.clock.advance(SignedDuration::from_hours(1));
    let restarted = service(&f.db, &f.clock);
    assert_eq!(
        restarted
            .timers()
            .fire_due(f.clock.now(), &restarted)
            .await
            .unwrap(),
        1
    );
    let (record, _) = restarted.get(lead).await.unwrap();
    assert_eq!(record.breaches, 1);
    assert_eq!(record.state, State::Assigned);
}

pub async fn accounts_route_to_their_owner_and_re_engagements_return_to_the_holder(f: Fixture) {
    assert!(
        f.svc
            .upsert_account("acme", "Acme", &"ben".into(), &["acme.com".to_owned()])
            .await
            .unwrap()
    );
    assert!(
        !f.svc
            .upsert_account("acme", "Acme", &"ben".into(), &["acme.com".to_owned()])
            .await
            .unwrap()
    );
    assert!(matches!(
        f.svc
            .upsert_account("x", "X", &"nobody".into(), &["x.com".to_owned()])
            .await,
        Err(ActivationError::UnknownOwner(_))
    ));
    let mut owners = Vec::new();
    for n in 0..3 {
        let (lead, ev) = accepted(
            &format!("p{n}@eu.acme.com"),
            ipb::IntentKind::ContentDownload,
            false,
        );
        apply(&f, &ev).await;
        let (record, _) = f.svc.get(lead).await.unwrap();
        assert!(
            record.routed_by.contains("acme.com"),
            "{}",
            record.routed_by
        );
        owners.push(record.owner.unwrap().to_string());
    }
    assert_eq!(owners, ["ben", "ben", "ben"]);

    // The same contact comes back: the holder gets the lead again with the new context.
    let (lead, ev) = accepted("ada@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &ev).await;
    let holder = f.svc.get(lead).await.unwrap().0.owner.unwrap();
    let touch = ipb::Touch {
        input: Some(ipb::LeadInput {
            source: Some(ipb::SourceContext {
                source: "webinar".into(),
                message: "Any news on pricing?".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    apply(
        &f,
        &event(&ipb::LeadMerged {
            lead_id: lead.to_string(),
            touch: Some(touch),
            do_not_contact: false,
        }),
    )
    .await;
    let (record, context) = f.svc.get(lead).await.unwrap();
    assert_eq!(record.owner, Some(holder));
    let packet = proto::activation::v1::ContextPacket::decode(context.as_slice()).unwrap();
    assert_eq!(
        packet.touches,
        ["again via webinar: \"Any news on pricing?\""]
    );
    let types = event_types(&f, 5).await;
    assert_eq!(types.iter().filter(|t| *t == "LeadAssigned").count(), 5);
}

/// Open-lead counts (capacity) follow every assignment, activation and reassignment.
pub async fn open_lead_counts_follow_every_change(f: Fixture) {
    let mut leads = Vec::new();
    for n in 0..4 {
        let (lead, ev) = accepted(
            &format!("p{n}@x.de"),
            ipb::IntentKind::ContentDownload,
            false,
        );
        apply(&f, &ev).await;
        leads.push(lead);
    }
    let counts = |f: &Fixture| {
        let db = f.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let states = Store::owner_states(&mut tx, &["anna".into(), "ben".into(), "mia".into()])
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            states
                .values()
                .map(|s| s.open_unactivated)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(counts(&f).await, [2, 2, 0]);
    let (first, _) = f.svc.get(leads[0]).await.unwrap();
    let owner = first.owner.unwrap();
    f.svc
        .record_first_action(
            leads[0],
            act(owner.as_str(), Channel::Email, "hello", f.clock.now()),
        )
        .await
        .unwrap();
    let mut expected = [2, 2, 0];
    expected[usize::from(owner.as_str() == "ben")] -= 1;
    assert_eq!(counts(&f).await, expected);
    // Everybody's window passes: each lead moves to the other owner, totals stay.
    f.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(fire(&f).await, 3);
    let after = counts(&f).await;
    assert_eq!(after.iter().sum::<u32>(), 3);
}

/// A contact erased in intake leaves activation too: what they wrote is gone from the facts,
/// the talking points, the context packet and every stored event; the open lead is closed as
/// do-not-contact and `LeadErased` tells the services downstream; the other lead is untouched.
pub async fn an_erased_contact_leaves_no_trace(f: Fixture) {
    const WORDS: &str = "Can we see routing for 40 reps?";
    let (lead, ev) = accepted(
        "canary.erased@engines.de",
        ipb::IntentKind::DemoRequest,
        false,
    );
    apply(&f, &ev).await;
    let (kept, kept_ev) = accepted("kept@engines.de", ipb::IntentKind::DemoRequest, false);
    apply(&f, &kept_ev).await;
    let needles = ["canary.erased@engines.de", WORDS, "Ada"];
    assert!(!testkit::scan::find_values(&f.db, &needles).await.is_empty());

    let erasure = event(&ipb::ContactErased {
        erasure_id: Uuid::now_v7().to_string(),
        lead_ids: vec![lead.to_string()],
    });
    apply(&f, &erasure).await;
    apply(&f, &erasure).await;

    let (record, context) = f.svc.get(lead).await.unwrap();
    assert_eq!(record.state, State::DoNotContact);
    assert!(record.facts.message.is_empty());
    assert!(
        record
            .plan
            .talking_points
            .iter()
            .all(|p| !p.contains("40 reps"))
    );
    let packet = proto::activation::v1::ContextPacket::decode(context.as_slice()).unwrap();
    assert!(packet.email.is_empty() && packet.name.is_empty() && packet.message.is_empty());
    assert_eq!(packet.campaign, "q4-demo", "where the lead came from stays");
    // Downstream hears of it after everything it may have copied; the repeat tells it again
    // (erasing twice is harmless) but changes nothing else.
    let types = event_types(&f, 5).await;
    assert_eq!(
        types,
        [
            "LeadAssigned",
            "LeadAssigned",
            "LeadDoNotContact",
            "LeadErased",
            "LeadErased"
        ]
    );

    // Only the other lead still holds its (identical) words; none of the erased person's.
    let found = testkit::scan::find_values(&f.db, &["canary.erased@engines.de"]).await;
    assert_eq!(found, []);
    let (other, other_context) = f.svc.get(kept).await.unwrap();
    assert_eq!(other.facts.message, WORDS);
    let packet = proto::activation::v1::ContextPacket::decode(other_context.as_slice()).unwrap();
    assert_eq!(packet.email, "kept@engines.de");
    let events = f
        .svc
        .log()
        .read_after(Default::default(), 100)
        .await
        .unwrap();
    let erased_lead = lead.to_string();
    for stored in events.iter().filter(|e| e.aggregate_id == erased_lead) {
        let text = String::from_utf8_lossy(&stored.payload);
        assert!(
            !text.contains(WORDS) && !text.contains("Ada"),
            "{}",
            stored.type_name
        );
    }
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn make() -> Option<Fixture> {
                let test_db: Option<TestDb> = $make;
                Some(fixture(test_db?).await)
            }

            suite!(@tests a_lead_gets_an_owner_plan_context_and_deadline, round_robin_alternates_between_equal_owners,
                only_a_relevant_first_action_by_the_owner_activates, a_breach_escalates_and_reassigns_until_the_manager_owns_it,
                nobody_available_queues_with_a_cause_and_alerts_at_once, going_out_of_office_moves_open_leads,
                do_not_contact_leads_get_no_owner, a_deadline_that_passed_while_down_fires_on_start,
                accounts_route_to_their_owner_and_re_engagements_return_to_the_holder, open_lead_counts_follow_every_change,
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

/// Each lead's state and owner, the owners' open-lead counts, and the events on the log
/// (type and lead) once `n` are readable.
async fn outcome(
    f: &Fixture,
    leads: &[Uuid],
    n: usize,
) -> (
    Vec<(State, Option<String>)>,
    Vec<u32>,
    Vec<(String, String)>,
) {
    let mut records = Vec::new();
    for lead in leads {
        let (record, _) = f.svc.get(*lead).await.unwrap();
        records.push((record.state, record.owner.map(|o| o.to_string())));
    }
    let mut tx = f.db.begin().await.unwrap();
    let loads = Store::owner_states(&mut tx, &["anna".into(), "ben".into(), "mia".into()])
        .await
        .unwrap()
        .values()
        .map(|s| s.open_unactivated)
        .collect();
    tx.rollback().await.unwrap();
    let events = logged(f, n)
        .await
        .iter()
        .map(|e| (e.short_type().to_owned(), e.aggregate_id.clone()))
        .collect();
    (records, loads, events)
}

/// A transaction of many intake events reads the owners, accounts and rotation once for the
/// batch (`EventHandler::load`) and keeps them in step itself: it must assign exactly as the
/// same events applied one per transaction do. Two databases of one backend get the same
/// events, one event per transaction on the first, two consumer batches on the second: the
/// first batch has a duplicate, an opt-out of a lead it assigned itself (its owner's count
/// must drop before the next pick) and an account's lead; the second replays two leads (one
/// without its aggregate id, which the batch cannot look up in advance) and fills the team
/// past its capacity, starting where the first batch left the rotation.
async fn a_batch_assigns_as_one_event_at_a_time_does(one_by_one: TestDb, batched: TestDb) {
    let single = fixture(one_by_one).await;
    let batch = fixture(batched).await;
    for f in [&single, &batch] {
        f.svc
            .upsert_account("acme", "Acme", &"mia".into(), &["acme.com".to_owned()])
            .await
            .unwrap();
    }
    let mut leads = Vec::new();
    let mut lead_events = Vec::new();
    for n in 0..22 {
        let (lead, mut ev) = accepted(
            &format!("a{n}@x.de"),
            ipb::IntentKind::ContentDownload,
            false,
        );
        ev.aggregate_id = lead.to_string();
        leads.push(lead);
        lead_events.push(ev);
    }
    let (account_lead, mut account_ev) =
        accepted("k@acme.com", ipb::IntentKind::DemoRequest, false);
    account_ev.aggregate_id = account_lead.to_string();
    let opt_out = event(&ipb::ContactOptedOut {
        email: "a1@x.de".into(),
        lead_ids: vec![leads[1].to_string()],
        ..Default::default()
    });
    let mut first: Vec<Event> = lead_events[..5].to_vec();
    first.push(lead_events[0].clone());
    first.push(opt_out);
    first.push(account_ev);
    let mut anonymous_replay = lead_events[4].clone();
    anonymous_replay.aggregate_id.clear();
    let mut second = vec![lead_events[3].clone(), anonymous_replay];
    second.extend(lead_events[5..].iter().cloned());
    for (n, ev) in first.iter_mut().chain(second.iter_mut()).enumerate() {
        ev.cursor = format!("{n:04}");
    }

    for ev in first.iter().chain(&second) {
        apply(&single, ev).await;
    }
    runtime::consumer::apply_batch(&batch.db, "intake", &batch.svc, "", &first)
        .await
        .unwrap();
    let after_first = first.last().unwrap().cursor.clone();
    runtime::consumer::apply_batch(&batch.db, "intake", &batch.svc, &after_first, &second)
        .await
        .unwrap();

    leads.push(account_lead);
    // 23 leads assigned once each (one queued: still a LeadAssigned), the queued lead's
    // alert, and the opt-out.
    let expected_events = 23 + 1 + 1;
    let got = outcome(&batch, &leads, expected_events).await;
    assert_eq!(got, outcome(&single, &leads, expected_events).await);

    // What the hand count says, so the comparison is not between two wrong answers.
    let (records, loads, events) = got;
    assert_eq!(events.len(), expected_events, "{events:?}");
    assert_eq!(records[1].0, State::DoNotContact);
    assert_eq!(records[22], (State::Assigned, Some("mia".to_owned())));
    let queued: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].0 == State::Queued)
        .collect();
    assert_eq!(
        queued,
        [21],
        "capacity 10 each: the 21st open lead of the team waits"
    );
    assert_eq!(loads, [10, 10, 1]);
    // The rotation continued across batches: equal weights alternate, the opted-out lead's
    // turn included.
    let owners: Vec<&str> = records[..5]
        .iter()
        .map(|(_, o)| o.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(owners, ["anna", "ben", "anna", "ben", "anna"]);
    assert_eq!(records[5].1.as_deref(), Some("ben"));
}

#[tokio::test]
async fn a_batch_assigns_as_one_event_at_a_time_does_on_sqlite() {
    a_batch_assigns_as_one_event_at_a_time_does(TestDb::sqlite(), TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_batch_assigns_as_one_event_at_a_time_does_on_postgres() {
    let (Some(one), Some(other)) = (TestDb::postgres().await, TestDb::postgres().await) else {
        return;
    };
    a_batch_assigns_as_one_event_at_a_time_does(one, other).await;
}
