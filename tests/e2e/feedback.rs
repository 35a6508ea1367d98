//! Feedback end to end on the real binary, all five services: leads from two sources, one
//! worked promptly and one left to breach, both lost; the source report blames the first on
//! lead quality and the second on the system, with the reasons in each lead's verdict.

use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::feedback::v1 as fbpb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use proto::followup::v1 as fpb;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::transport::Channel;

use crate::activation::{PLAYBOOK as ACTIVATION_PLAYBOOK, lead};
use crate::followup::activate;
use crate::support::Suite;

const FOLLOWUP: &str = r#"
[followup]
timezone = "UTC"
default_cadence = "quick"

[[followup.cadences]]
id = "quick"
steps = [{ delay = "1h", channel = "email", strategy = "value", template = "intro" }]
"#;

/// Waits until feedback has seen the lead, then records its outcome.
async fn outcome(
    feedback: &mut FeedbackServiceClient<Channel>,
    lead_id: &str,
    stage: fbpb::OutcomeStage,
    reason: fbpb::OutcomeReason,
) -> fbpb::LeadVerdict {
    for _ in 0..100 {
        let recorded = feedback
            .record_outcome(fbpb::RecordOutcomeRequest {
                lead_id: lead_id.into(),
                stage: stage as i32,
                reason: reason as i32,
                ..Default::default()
            })
            .await;
        match recorded {
            Ok(answer) => return answer.into_inner().verdict.expect("verdict"),
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("record outcome: {status:?}"),
        }
    }
    panic!("feedback never saw lead {lead_id}");
}

#[tokio::test]
async fn the_source_report_tells_lead_quality_from_system_failure() {
    let suite = Suite::start_with_playbook(Some(&format!("{ACTIVATION_PLAYBOOK}{FOLLOWUP}")));
    let channel = suite.channel().await;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let started = runtime::grpc::to_proto_timestamp(runtime::db::from_micros(
        since_epoch.as_micros() as i64 - 60_000_000,
    ));
    let mut feedback = FeedbackServiceClient::new(channel.clone());

    // Worked promptly: activated within its SLA, answered, then disqualified as not ICP.
    let (worked, _) = activate(&channel, "prompt@engines.example").await;
    let mut followup = FollowupServiceClient::new(channel.clone());
    for _ in 0..100 {
        let replied = followup
            .record_engagement(fpb::RecordEngagementRequest {
                lead_id: worked.clone(),
                kind: fpb::EngagementKind::Reply as i32,
                sentiment: fpb::ReplySentiment::Positive as i32,
                ..Default::default()
            })
            .await;
        if replied.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Left alone: a 2 s SLA breached twice, then the manager owns it; lost, no response.
    let mut ignored = lead("ignored@engines.example", ipb::IntentKind::ContentDownload);
    ignored
        .lead
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .source = "webinar".into();
    let ignored = IntakeServiceClient::new(channel.clone())
        .submit_lead(ignored)
        .await
        .expect("submit")
        .into_inner()
        .lead
        .expect("accepted")
        .lead_id;
    let mut activation = ActivationServiceClient::new(channel.clone());
    for _ in 0..150 {
        let state = activation
            .get_activation(apb::GetActivationRequest {
                lead_id: ignored.clone(),
            })
            .await
            .ok()
            .and_then(|a| a.into_inner().activation)
            .map(|a| a.state);
        if state == Some(apb::ActivationState::Escalated as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let fair = outcome(
        &mut feedback,
        &worked,
        fbpb::OutcomeStage::Disqualified,
        fbpb::OutcomeReason::NotIcp,
    )
    .await;
    let failed = outcome(
        &mut feedback,
        &ignored,
        fbpb::OutcomeStage::Lost,
        fbpb::OutcomeReason::NoResponse,
    )
    .await;

    // Once feedback has every event, the verdicts and the report say who failed whom.
    let mut report = fbpb::GetSourceReportResponse::default();
    for _ in 0..100 {
        report = feedback
            .get_source_report(fbpb::GetSourceReportRequest {
                from: Some(started),
                ..Default::default()
            })
            .await
            .expect("report")
            .into_inner();
        let total = report.total.clone().unwrap_or_default();
        if total.lead_quality_losses == 1 && total.system_failure_losses == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let group = |name: &str| {
        report
            .groups
            .iter()
            .find(|g| g.group == name)
            .cloned()
            .unwrap_or_else(|| panic!("no group {name}: {report:#?}"))
    };
    let demo = group("website-demo-form");
    assert_eq!(
        (demo.lead_quality_losses, demo.system_failure_losses),
        (1, 0),
        "{demo:#?}"
    );
    assert_eq!(demo.activated_within_sla_share, 1.0);
    let webinar = group("webinar");
    assert_eq!(
        (webinar.lead_quality_losses, webinar.system_failure_losses),
        (0, 1),
        "{webinar:#?}"
    );
    assert_eq!(webinar.never_activated_share, 1.0);

    let timeline = feedback
        .get_lead_timeline(fbpb::GetLeadTimelineRequest {
            lead_id: ignored.clone(),
        })
        .await
        .expect("timeline")
        .into_inner();
    let verdict = timeline.verdict.expect("verdict");
    assert_eq!(verdict.verdict, fbpb::Verdict::NotFair as i32);
    assert_eq!(verdict.attribution, fbpb::Attribution::SystemFailure as i32);
    assert!(
        timeline
            .entries
            .iter()
            .any(|e| e.event_type == "SlaBreached"),
        "{:#?}",
        timeline.entries
    );
    assert_eq!(
        timeline.context.get("source").map(String::as_str),
        Some("webinar")
    );
    // The answers of RecordOutcome already said so, before the report caught up or not.
    assert_eq!(fair.source, "website-demo-form");
    assert_eq!(failed.source, "webinar");
}
