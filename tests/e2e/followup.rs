//! Follow-up end to end on the real binary: a lead submitted to intake is assigned, its first
//! action activates it, followup enrols it, and its first step becomes a task on the owner's
//! list with the lead's context when it comes due; the owner completes it, a reply stops the
//! cadence, and an opt-out at intake stops another lead's cadence before its step is due.

use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::transport::Channel;

use crate::activation::{PLAYBOOK as ACTIVATION_PLAYBOOK, lead};
use crate::support::Suite;

/// A cadence whose steps are seconds apart, like the demo playbook's.
const FOLLOWUP: &str = r#"
[followup]
timezone = "UTC"
default_cadence = "quick"

[[followup.cadences]]
id = "quick"
steps = [
  { delay = "2s", channel = "email", strategy = "value", template = "intro" },
  { delay = "1h", channel = "call", strategy = "proof", template = "proof-call" },
]
"#;

/// Submits a lead, waits for its owner and records a relevant first action.
pub async fn activate(channel: &Channel, email: &str) -> (String, String) {
    let mut intake = IntakeServiceClient::new(channel.clone());
    let submitted = intake
        .submit_lead(lead(email, ipb::IntentKind::DemoRequest))
        .await
        .expect("submit")
        .into_inner();
    let lead_id = submitted.lead.expect("accepted").lead_id;
    let owner = activate_lead(channel, &lead_id).await;
    (lead_id, owner)
}

/// Waits for an accepted lead's owner and records a relevant first action; returns the owner.
pub async fn activate_lead(channel: &Channel, lead_id: &str) -> String {
    let mut activation = ActivationServiceClient::new(channel.clone());
    let mut owner = String::new();
    for _ in 0..100 {
        if let Ok(found) = activation
            .get_activation(apb::GetActivationRequest {
                lead_id: lead_id.to_owned(),
            })
            .await
        {
            owner = found.into_inner().activation.expect("activation").owner_id;
            if !owner.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!owner.is_empty(), "lead {lead_id} got an owner");
    activation
        .record_first_action(apb::RecordFirstActionRequest {
            lead_id: lead_id.to_owned(),
            owner_id: owner.clone(),
            channel: apb::Channel::Call as i32,
            template_id: "opener".into(),
            ..Default::default()
        })
        .await
        .expect("first action");
    owner
}

/// The plan once followup has enrolled the lead.
async fn plan(client: &mut FollowupServiceClient<Channel>, lead_id: &str) -> fpb::Plan {
    for _ in 0..100 {
        if let Ok(found) = client
            .get_plan(fpb::GetPlanRequest {
                lead_id: lead_id.into(),
            })
            .await
        {
            return found.into_inner().plan.expect("plan");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("lead {lead_id} was not enrolled");
}

#[tokio::test]
async fn an_activated_lead_gets_its_follow_up_tasks_on_time() {
    let suite = Suite::start_with_playbook(Some(&format!("{ACTIVATION_PLAYBOOK}{FOLLOWUP}")));
    let channel = suite.channel().await;
    let mut followup = FollowupServiceClient::new(channel.clone());
    let mut events = followup
        .subscribe(fpb::SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();

    let (lead_id, owner) = activate(&channel, "ada@engines.example").await;
    let enrolled = plan(&mut followup, &lead_id).await;
    assert_eq!(enrolled.cadence_id, "quick");
    assert_eq!(enrolled.chosen_by, "default cadence");
    assert_eq!(enrolled.owner_id, owner);
    assert_eq!(enrolled.status, fpb::PlanStatus::Active as i32);

    // The first step comes due after 2 s and is on the owner's list with the lead's context.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks = followup
            .list_due_tasks(fpb::ListDueTasksRequest {
                owner_id: owner.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        if !tasks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tasks.len(), 1, "one task due");
    let task = &tasks[0];
    assert_eq!(task.lead_id, lead_id);
    assert_eq!(task.step.as_ref().unwrap().template_id, "intro");
    let context = task
        .context
        .as_ref()
        .expect("context travels with the task");
    assert_eq!(context.message, "Can we see routing for 40 reps?");

    // The subscriber saw the enrolment and the task.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .expect("an event within 30 s")
            .expect("stream ok")
            .expect("stream open")
            .event
            .expect("event");
        seen.push(event.event_type);
    }
    assert_eq!(seen, ["LeadEnrolled", "FollowUpDue"]);

    // The owner completes it; a wrong outcome for the channel is refused with its field.
    let wrong = followup
        .complete_task(fpb::CompleteTaskRequest {
            task_id: task.task_id.clone(),
            owner_id: owner.clone(),
            outcome: fpb::TaskOutcome::NoAnswer as i32,
            ..Default::default()
        })
        .await
        .expect_err("no_answer is for calls");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    let done = followup
        .complete_task(fpb::CompleteTaskRequest {
            task_id: task.task_id.clone(),
            owner_id: owner.clone(),
            outcome: fpb::TaskOutcome::Done as i32,
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(done.steps_done.len(), 1);
    assert_eq!(done.next_step.as_ref().unwrap().template_id, "proof-call");

    // A positive reply stops the cadence and says so.
    let replied = followup
        .record_engagement(fpb::RecordEngagementRequest {
            lead_id: lead_id.clone(),
            kind: fpb::EngagementKind::Reply as i32,
            sentiment: fpb::ReplySentiment::Positive as i32,
            ..Default::default()
        })
        .await
        .expect("engagement")
        .into_inner();
    assert!(
        replied.effect.contains("positive_reply"),
        "{}",
        replied.effect
    );
    assert_eq!(
        replied.plan.unwrap().status,
        fpb::PlanStatus::Stopped as i32
    );
}

#[tokio::test]
async fn an_opt_out_at_intake_stops_the_cadence_before_its_step() {
    let suite = Suite::start_with_playbook(Some(&format!("{ACTIVATION_PLAYBOOK}{FOLLOWUP}")));
    let channel = suite.channel().await;
    let mut followup = FollowupServiceClient::new(channel.clone());
    let (lead_id, owner) = activate(&channel, "leaving@engines.example").await;
    plan(&mut followup, &lead_id).await;
    IntakeServiceClient::new(channel.clone())
        .opt_out(ipb::OptOutRequest {
            email: "leaving@engines.example".into(),
            reason: "unsubscribe link".into(),
            ..Default::default()
        })
        .await
        .expect("opt out");
    // Well past the step's due time, nothing is on the list and the plan says why.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tasks = followup
        .list_due_tasks(fpb::ListDueTasksRequest {
            owner_id: owner,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert!(tasks.is_empty(), "{tasks:?}");
    let stopped = plan(&mut followup, &lead_id).await;
    assert_eq!(stopped.status, fpb::PlanStatus::OptedOut as i32);
    assert!(stopped.steps_done.is_empty());
}
