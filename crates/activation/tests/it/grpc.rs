//! The gRPC edge in-process: intake and activation on one port, leads submitted to intake,
//! activation's status codes, field violations and queue paging observed over gRPC.

use std::sync::Arc;
use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::service::{ServiceContext, ServiceSpec};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const PLAYBOOK: &str = r#"
[intake]
[activation]
default_team = "sales"
[activation.escalation]
max_reassignments = 1
routing_delay = "1m"
[[activation.teams]]
id = "sales"
name = "Sales"
manager = "anna"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
[[activation.owners]]
id = "anna"
name = "Anna"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100
[[activation.sla]]
name = "all"
window = "1h"
[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
"#;

struct Running {
    intake: IntakeServiceClient<tonic::transport::Channel>,
    activation: ActivationServiceClient<tonic::transport::Channel>,
    stop: CancellationToken,
    _dbs: (TestDb, TestDb),
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let (intake_db, activation_db) = (TestDb::new().await, TestDb::new().await);
    let (listener, addr) = testkit::bind_local().await;
    let mut config = runtime::config::ServiceConfig::load(
        &runtime::config::Sources::default(),
        &runtime::config::Defaults::service("test", 0),
    )
    .unwrap();
    config.playbook = Some(playbook);
    config.upstreams.insert("intake", format!("http://{addr}"));
    let stop = CancellationToken::new();
    let mut routes = tonic::service::RoutesBuilder::default();
    let db = intake_db.connect(&intake::store::MIGRATIONS).await;
    let ctx = ServiceContext {
        db,
        config: config.clone(),
        clock: Arc::new(runtime::SystemClock),
        shutdown: stop.clone(),
    };
    let mut health = intake::IntakeService::start(ctx, &mut routes)
        .await
        .unwrap();
    let db = activation_db.connect(&activation::store::MIGRATIONS).await;
    let ctx = ServiceContext {
        db,
        config: config.clone(),
        clock: Arc::new(runtime::SystemClock),
        shutdown: stop.clone(),
    };
    health.extend(
        activation::ActivationService::start(ctx, &mut routes)
            .await
            .unwrap(),
    );
    let server_stop = stop.clone();
    tokio::spawn(async move {
        runtime::server::serve(listener, routes, health, &config.server, server_stop).await
    });
    let channel = testkit::channel(addr).await;
    Running {
        intake: IntakeServiceClient::new(channel.clone()),
        activation: ActivationServiceClient::new(channel),
        stop,
        _dbs: (intake_db, activation_db),
        _dir: dir,
    }
}

async fn submit(r: &mut Running, n: usize) -> String {
    let lead = ipb::LeadInput {
        contact: Some(ipb::Contact {
            email: format!("p{n}@example.com"),
            ..Default::default()
        }),
        source: Some(ipb::SourceContext {
            source: "web".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = r
        .intake
        .submit_lead(ipb::SubmitLeadRequest {
            lead: Some(lead),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    response.into_inner().lead.unwrap().lead_id
}

async fn activation_of(r: &mut Running, lead: &str) -> apb::Activation {
    for _ in 0..200 {
        match r
            .activation
            .get_activation(apb::GetActivationRequest {
                lead_id: lead.into(),
            })
            .await
        {
            Ok(response) => return response.into_inner().activation.unwrap(),
            Err(status) if status.code() == Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    panic!("lead {lead} never reached activation");
}

#[tokio::test]
async fn errors_name_their_field_or_reason_and_queues_page_by_deadline() {
    let mut r = start().await;
    let mut leads = Vec::new();
    for n in 0..5 {
        leads.push(submit(&mut r, n).await);
    }
    for lead in &leads {
        let activation = activation_of(&mut r, lead).await;
        assert_eq!(activation.owner_id, "anna");
        // What followup needs to schedule in the owner's day and escalate to the manager.
        assert_eq!(activation.owner_timezone, "UTC");
        assert_eq!(activation.manager_id, "anna");
    }

    // The queue, two at a time, earliest deadline first, every lead once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = r
            .activation
            .list_queue(apb::ListQueueRequest {
                owner_id: "anna".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.activations.len() <= 2);
        seen.extend(page.activations.iter().map(|a| a.lead_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, leads);

    let code = |s: tonic::Status| s.code();
    let bad_owner = r
        .activation
        .list_queue(apb::ListQueueRequest {
            owner_id: "nobody".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad_owner.map_err(code).unwrap_err(), Code::InvalidArgument);
    let bad_page = r
        .activation
        .list_queue(apb::ListQueueRequest {
            owner_id: "anna".into(),
            page_size: 501,
            ..Default::default()
        })
        .await;
    assert_eq!(bad_page.map_err(code).unwrap_err(), Code::InvalidArgument);
    let bad_token = r
        .activation
        .list_queue(apb::ListQueueRequest {
            owner_id: "anna".into(),
            page_token: "x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad_token.map_err(code).unwrap_err(), Code::InvalidArgument);
    let unknown = r
        .activation
        .get_activation(apb::GetActivationRequest {
            lead_id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert_eq!(unknown.map_err(code).unwrap_err(), Code::NotFound);

    let action =
        |channel: apb::Channel, owner: &str, template: &str| apb::RecordFirstActionRequest {
            lead_id: leads[0].clone(),
            owner_id: owner.into(),
            channel: channel as i32,
            template_id: template.into(),
            ..Default::default()
        };
    let no_channel = r
        .activation
        .record_first_action(action(apb::Channel::Unspecified, "anna", "opener"))
        .await;
    assert_eq!(no_channel.map_err(code).unwrap_err(), Code::InvalidArgument);
    let wrong_channel = r
        .activation
        .record_first_action(action(apb::Channel::Linkedin, "anna", "opener"))
        .await
        .unwrap_err();
    assert_eq!(wrong_channel.code(), Code::FailedPrecondition);
    assert!(
        wrong_channel.message().contains("linkedin"),
        "{}",
        wrong_channel.message()
    );
    let done = r
        .activation
        .record_first_action(action(apb::Channel::Call, "anna", "opener"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.activation.unwrap().state(),
        apb::ActivationState::Activated
    );
    let again = r
        .activation
        .record_first_action(action(apb::Channel::Call, "anna", "opener"))
        .await;
    assert_eq!(again.map_err(code).unwrap_err(), Code::FailedPrecondition);

    let account = r
        .activation
        .upsert_account(apb::UpsertAccountRequest {
            account_id: "a".into(),
            domains: vec!["not a domain".into()],
            owner_id: "anna".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(account.code(), Code::InvalidArgument);
    r.stop.cancel();
}
