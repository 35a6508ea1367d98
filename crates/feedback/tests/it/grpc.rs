//! Feedback's gRPC edge in process: every bad field is named in a BadRequest detail, and
//! unknown leads are NOT_FOUND.

use feedback::FeedbackService;
use proto::feedback::v1 as pb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

struct Running {
    client: FeedbackServiceClient<tonic::transport::Channel>,
    stop: CancellationToken,
    _db: TestDb,
}

async fn start() -> Running {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&feedback::store::MIGRATIONS).await;
    let stop = CancellationToken::new();
    let mut config = testkit::config("feedback");
    // Nothing listens there: the consumers retry quietly; this test calls the API only.
    for upstream in ["intake", "activation", "followup", "proof"] {
        config
            .upstreams
            .insert(upstream, "http://127.0.0.1:9".into());
    }
    let (channel, _) = testkit::serve::<FeedbackService>(db, config, stop.clone()).await;
    Running {
        client: FeedbackServiceClient::new(channel),
        stop,
        _db: test_db,
    }
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let mut r = start().await;
    let lead = "01890000-0000-7000-8000-000000000000";
    let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };

    let status = r
        .client
        .record_outcome(pb::RecordOutcomeRequest {
            lead_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["lead_id"]);
    let status = r
        .client
        .record_outcome(pb::RecordOutcomeRequest {
            lead_id: lead.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["stage"]);
    let status = r
        .client
        .record_outcome(pb::RecordOutcomeRequest {
            lead_id: lead.into(),
            stage: pb::OutcomeStage::Lost as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["reason"]);
    let status = r
        .client
        .record_outcome(pb::RecordOutcomeRequest {
            lead_id: lead.into(),
            stage: pb::OutcomeStage::Won as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = r
        .client
        .get_source_report(pb::GetSourceReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["from"]);
    let status = r
        .client
        .get_funnel(pb::GetFunnelRequest {
            from: Some(ts(2_000_000_000)),
            to: Some(ts(1_000_000_000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["to"]);
    let status = r
        .client
        .list_verdicts(pb::ListVerdictsRequest {
            from: Some(ts(1_000_000_000)),
            page_token: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["page_token"]);

    // An empty period reports zeros, not errors.
    let report = r
        .client
        .get_source_report(pb::GetSourceReportRequest {
            from: Some(ts(1_000_000_000)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.groups.is_empty());
    assert_eq!(report.total.unwrap().received, 0);
    r.stop.cancel();
}
