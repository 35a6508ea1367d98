//! Activation end to end on the real binary: a lead submitted to intake is assigned with
//! owner, deadline and context packet, seen by a WatchActivations subscriber; the first action
//! activates it; a lead left alone breaches and is reassigned; a subscriber that disconnects
//! and resumes from its cursor misses nothing and sees nothing twice.

use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::Streaming;

use crate::support::Suite;

/// Everybody works around the clock; demo requests get 30 s, everything else 2 s.
pub const PLAYBOOK: &str = r#"
[intake]

[activation]
default_team = "sales"

[activation.escalation]
max_reassignments = 1
routing_delay = "1m"

[[activation.teams]]
id = "sales"
name = "Sales"
manager = "mia"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"

[[activation.teams]]
id = "leadership"
name = "Leadership"
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
id = "ben"
name = "Ben"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100

[[activation.owners]]
id = "mia"
name = "Mia"
team = "leadership"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100

[[activation.sla]]
name = "demo"
window = "30s"
intents = ["demo_request"]

[[activation.sla]]
name = "fast"
window = "2s"

[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
alternatives = ["email"]
"#;

pub fn lead(email: &str, kind: ipb::IntentKind) -> ipb::SubmitLeadRequest {
    ipb::SubmitLeadRequest {
        lead: Some(ipb::LeadInput {
            contact: Some(ipb::Contact {
                name: "Ada".into(),
                email: email.into(),
                company: "Engines".into(),
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
                ..Default::default()
            }),
            ..Default::default()
        }),
        idempotency_key: String::new(),
    }
}

async fn next(
    stream: &mut Streaming<apb::WatchActivationsResponse>,
) -> apb::WatchActivationsResponse {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an update within 30 s")
        .expect("stream ok")
        .expect("stream open")
}

async fn watch(
    client: &mut ActivationServiceClient<tonic::transport::Channel>,
    after: &str,
) -> Streaming<apb::WatchActivationsResponse> {
    let request = apb::WatchActivationsRequest {
        after_cursor: after.into(),
        ..Default::default()
    };
    client
        .watch_activations(request)
        .await
        .expect("watch")
        .into_inner()
}

#[tokio::test]
async fn leads_are_assigned_activated_breached_and_watched_without_loss() {
    let suite = Suite::start_with_playbook(Some(PLAYBOOK));
    let channel = suite.channel().await;
    let mut intake = IntakeServiceClient::new(channel.clone());
    let mut activation = ActivationServiceClient::new(channel);
    let mut updates = watch(&mut activation, "").await;

    // A demo request: assigned with owner, deadline and the context it came with.
    let demo = intake
        .submit_lead(lead("ada@example.com", ipb::IntentKind::DemoRequest))
        .await
        .unwrap()
        .into_inner();
    let demo_id = demo.lead.unwrap().lead_id;
    let assigned = next(&mut updates).await;
    assert_eq!(assigned.event_type, "LeadAssigned");
    let a = assigned.activation.clone().unwrap();
    assert_eq!(a.lead_id, demo_id);
    assert!(a.owner_id == "anna" || a.owner_id == "ben", "{a:?}");
    assert!(a.deadline.is_some());
    assert_eq!(
        a.context.as_ref().unwrap().message,
        "Can we see routing for 40 reps?"
    );
    assert_eq!(a.plan.as_ref().unwrap().template_id, "opener");

    // The owner's first action activates it.
    let done = activation
        .record_first_action(apb::RecordFirstActionRequest {
            lead_id: demo_id.clone(),
            owner_id: a.owner_id.clone(),
            channel: apb::Channel::Call as i32,
            template_id: "opener".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.activation.unwrap().state(),
        apb::ActivationState::Activated
    );
    let activated = next(&mut updates).await;
    assert_eq!(activated.event_type, "LeadActivated");
    assert!(activated.activation.unwrap().within_sla);

    // A content download nobody works: it breaches after 2 s and moves to the other owner.
    intake
        .submit_lead(lead("bo@example.com", ipb::IntentKind::ContentDownload))
        .await
        .unwrap();
    let second = next(&mut updates).await;
    assert_eq!(second.event_type, "LeadAssigned");
    // Disconnect here, and resume from the last cursor.
    let resume_from = second.cursor.clone();
    drop(updates);
    let mut resumed = watch(&mut activation, &resume_from).await;
    let mut types = Vec::new();
    let mut cursors = Vec::new();
    while types.len() < 3 {
        let u = next(&mut resumed).await;
        types.push(u.event_type.clone());
        cursors.push(u.cursor.clone());
    }
    assert_eq!(types, ["SlaBreached", "EscalationRaised", "LeadReassigned"]);
    let breached = activation
        .get_activation(apb::GetActivationRequest {
            lead_id: second.activation.unwrap().lead_id,
        })
        .await
        .unwrap()
        .into_inner()
        .activation
        .unwrap();
    assert_eq!(breached.breaches, 1);
    assert_eq!(breached.previous_owner_ids.len(), 1);
    assert_ne!(breached.owner_id, breached.previous_owner_ids[0]);

    // A full replay agrees with what the two connections saw together: nothing lost or doubled.
    let mut replay = watch(&mut activation, "").await;
    let mut all = Vec::new();
    while all.len() < 6 {
        all.push(next(&mut replay).await.cursor);
    }
    assert_eq!(all[3..], cursors[..]);
    assert_eq!(all[2], resume_from);
}
