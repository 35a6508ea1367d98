//! Feedback's gRPC edge in process: every bad field is named in a BadRequest detail, unknown
//! leads are NOT_FOUND, and the verdict listing pages by token.

use feedback::FeedbackService;
use proto::feedback::v1 as pb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

struct Running {
    client: FeedbackServiceClient<tonic::transport::Channel>,
    stop: CancellationToken,
    db: runtime::Db,
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
    let (channel, _) = testkit::serve::<FeedbackService>(db.clone(), config, stop.clone()).await;
    Running {
        client: FeedbackServiceClient::new(channel),
        stop,
        db,
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

/// Stores accepted leads received at `minutes` past 2026-03-01, as the consumers would.
async fn store_leads(db: &runtime::Db, first: u64, minutes: &[i64]) -> Vec<String> {
    use feedback::domain::{IcpTier, LeadFact, Observation};
    let start: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for (n, m) in minutes.iter().enumerate() {
        let lead = uuid::Uuid::from_u64_pair(first, n as u64);
        let mut fact = LeadFact::new(lead);
        fact.apply(&Observation::LeadAccepted {
            lead,
            source: "web".into(),
            campaign: "spring".into(),
            channel: "organic".into(),
            received_at: start + jiff::SignedDuration::from_mins(*m),
            icp_tier: IcpTier::A,
            do_not_contact: false,
            review: None,
        });
        feedback::store::Store::save_fact(&mut tx, &fact, None)
            .await
            .unwrap();
        ids.push(lead.to_string());
    }
    tx.commit().await.unwrap();
    ids
}

#[tokio::test]
async fn verdicts_page_by_token_without_skipping_or_repeating() {
    let mut r = start().await;
    let march = |seconds: i64| prost_types::Timestamp {
        seconds: 1_772_323_200 + seconds,
        nanos: 0,
    };
    // Ten leads, two of them received at the same minute (ordered by id).
    let mut expected = store_leads(&r.db, 1, &[0, 5, 10, 10, 20, 30, 40, 50, 60, 70]).await;
    let request = |token: String| pb::ListVerdictsRequest {
        from: Some(march(0)),
        to: Some(march(86_400)),
        page_size: 3,
        page_token: token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = r
            .client
            .list_verdicts(request(token.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(page.verdicts.len() <= 3);
        seen.extend(page.verdicts.iter().map(|v| v.lead_id.clone()));
        pages += 1;
        if pages == 2 {
            // Received before the page just read, and after it: only the latter is listed.
            store_leads(&r.db, 2, &[1]).await;
            expected.extend(store_leads(&r.db, 3, &[65]).await);
            // The token of one listing does not continue another.
            let status = r
                .client
                .list_verdicts(pb::ListVerdictsRequest {
                    verdict: pb::Verdict::Fair as i32,
                    ..request(page.next_page_token.clone())
                })
                .await
                .unwrap_err();
            assert_eq!(testkit::violated_fields(&status), ["page_token"]);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Lead 3/0 at minute 65 comes between minutes 60 and 70.
    let late = expected.pop().unwrap();
    expected.insert(9, late);
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    r.stop.cancel();
}
