//! Followup's gRPC edge in process: every bad field is named in a BadRequest detail, unknown
//! leads and tasks are NOT_FOUND, and refusals say why.

use followup::FollowupService;
use proto::followup::v1 as pb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::service::{Intake, start_intake};

const PLAYBOOK: &str = r#"
[followup]
default_cadence = "one"

[[followup.cadences]]
id = "one"
steps = [{ delay = "1h", channel = "email", strategy = "value", template = "intro" }]
"#;

struct Running {
    client: FollowupServiceClient<tonic::transport::Channel>,
    stop: CancellationToken,
    _intake: Intake,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let intake = start_intake().await;
    let test_db = TestDb::new().await;
    let db = test_db.connect(&followup::store::MIGRATIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let stop = CancellationToken::new();
    let mut config = testkit::config("followup");
    config.playbook = Some(playbook);
    config.upstreams.insert("intake", intake.url.clone());
    config.upstreams.insert("activation", intake.url.clone());
    let (channel, _) = testkit::serve::<FollowupService>(db, config, stop.clone()).await;
    Running {
        client: FollowupServiceClient::new(channel),
        stop,
        _intake: intake,
        _db: test_db,
        _dir: dir,
    }
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let mut r = start().await;
    let lead = "01890000-0000-7000-8000-000000000000";

    let status = r
        .client
        .get_plan(pb::GetPlanRequest {
            lead_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["lead_id"]);

    let status = r
        .client
        .complete_task(pb::CompleteTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        testkit::violated_fields(&status),
        ["task_id", "owner_id", "outcome"]
    );

    let status = r
        .client
        .record_engagement(pb::RecordEngagementRequest {
            lead_id: lead.into(),
            kind: pb::EngagementKind::Reply as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["sentiment"]);

    let status = r
        .client
        .record_engagement(pb::RecordEngagementRequest {
            lead_id: lead.into(),
            kind: pb::EngagementKind::Bounce as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["channel"]);

    let status = r
        .client
        .list_due_tasks(pb::ListDueTasksRequest {
            owner_id: "anna".into(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["page_token"]);

    // Well-formed, but about a lead followup does not know.
    let status = r
        .client
        .get_plan(pb::GetPlanRequest {
            lead_id: lead.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = r
        .client
        .complete_task(pb::CompleteTaskRequest {
            task_id: format!("{lead}/1"),
            owner_id: "anna".into(),
            outcome: pb::TaskOutcome::Done as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // An empty list is an empty list.
    let empty = r
        .client
        .list_due_tasks(pb::ListDueTasksRequest {
            owner_id: "anna".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.tasks.is_empty() && empty.next_page_token.is_empty());
    r.stop.cancel();
}
