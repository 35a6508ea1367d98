//! Proof end to end on the real binary: a follow-up proof step asks proof's `NextProof` over
//! gRPC and carries the asset it recommends; the owner delivering it is recorded as a
//! delivery; an objection recorded on a call changes the next step's proof.

use std::time::Duration;

use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::proof::v1 as ppb;
use proto::proof::v1::proof_service_client::ProofServiceClient;
use tonic::transport::Channel;

use crate::activation::PLAYBOOK as ACTIVATION_PLAYBOOK;
use crate::followup::activate;
use crate::support::Suite;

/// Two proof steps a few seconds apart, and a small catalog.
const PLAYBOOK: &str = r#"
[followup]
timezone = "UTC"
default_cadence = "proof"

[[followup.cadences]]
id = "proof"
default_template = "generic-proof"
steps = [
  { delay = "2s", channel = "email", strategy = "proof", template = "proof-1" },
  { delay = "6s", channel = "email", strategy = "proof", template = "proof-2" },
]

[proof]
spacing = "0s"
outcome_window = "1d"

[[proof.assets]]
id = "cost-benchmark"
title = "What slow follow-up costs"
kind = "benchmark"
stage = "problem_awareness"

[[proof.assets]]
id = "security-pack"
title = "Security and compliance pack"
kind = "security_pack"
stage = "mechanism_understanding"
checkpoints = ["security_compliance"]
"#;

/// The owner's next open task, once one is due.
async fn next_task(client: &mut FollowupServiceClient<Channel>, owner: &str) -> fpb::Task {
    for _ in 0..200 {
        let tasks = client
            .list_due_tasks(fpb::ListDueTasksRequest {
                owner_id: owner.into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        if let Some(task) = tasks.into_iter().next() {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no task came due for {owner}");
}

#[tokio::test]
async fn proof_steps_carry_the_recommended_asset_and_objections_redirect_them() {
    let suite = Suite::start_with_playbook(Some(&format!("{ACTIVATION_PLAYBOOK}{PLAYBOOK}")));
    let channel = suite.channel().await;
    let mut followup = FollowupServiceClient::new(channel.clone());
    let mut proof = ProofServiceClient::new(channel.clone());
    let (lead_id, owner) = activate(&channel, "proof@engines.example").await;

    // The first proof step carries what proof recommends for a lead at the start.
    let first = next_task(&mut followup, &owner).await;
    let step = first.step.clone().expect("step");
    assert_eq!(step.strategy, fpb::Strategy::Proof as i32);
    assert_eq!(step.proof_asset_id, "cost-benchmark", "{step:?}");
    assert!(!step.proof_note.is_empty());
    followup
        .complete_task(fpb::CompleteTaskRequest {
            task_id: first.task_id.clone(),
            owner_id: owner.clone(),
            outcome: fpb::TaskOutcome::Done as i32,
            ..Default::default()
        })
        .await
        .expect("complete");

    // Proof hears of the delivery from followup's stream.
    let mut delivered = false;
    for _ in 0..100 {
        let state = proof
            .get_belief_state(ppb::GetBeliefStateRequest {
                lead_id: lead_id.clone(),
            })
            .await
            .expect("belief state")
            .into_inner()
            .state
            .expect("state");
        if state
            .deliveries
            .iter()
            .any(|d| d.asset_id == "cost-benchmark")
        {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the completed proof step counts as a delivery");

    // On a call the lead raises security: the next proof step answers it.
    proof
        .record_objection(ppb::RecordObjectionRequest {
            lead_id: lead_id.clone(),
            checkpoint: ppb::Checkpoint::SecurityCompliance as i32,
            verbatim: "Our CISO has to approve every vendor".into(),
            ..Default::default()
        })
        .await
        .expect("objection");
    let second = next_task(&mut followup, &owner).await;
    assert_ne!(second.task_id, first.task_id);
    assert_eq!(second.step.expect("step").proof_asset_id, "security-pack");
}
