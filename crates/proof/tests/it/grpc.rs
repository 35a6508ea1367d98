//! Proof's gRPC edge in process: every bad field is named in a BadRequest detail, unknown
//! leads are NOT_FOUND, and the catalog can be extended but not overridden at run time.

use proof::ProofService;
use proto::proof::v1 as pb;
use proto::proof::v1::proof_service_client::ProofServiceClient;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::service::PLAYBOOK;

struct Running {
    client: ProofServiceClient<tonic::transport::Channel>,
    db: runtime::Db,
    stop: CancellationToken,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&proof::store::MIGRATIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let stop = CancellationToken::new();
    let mut config = testkit::config("proof");
    config.playbook = Some(playbook);
    // Nothing listens there: the consumers retry quietly; this test calls the API only.
    config
        .upstreams
        .insert("activation", "http://127.0.0.1:9".into());
    config
        .upstreams
        .insert("followup", "http://127.0.0.1:9".into());
    let (channel, _) = testkit::serve::<ProofService>(db.clone(), config, stop.clone()).await;
    Running {
        client: ProofServiceClient::new(channel),
        db,
        stop,
        _db: test_db,
        _dir: dir,
    }
}

#[tokio::test]
async fn bad_requests_name_their_fields_and_the_catalog_grows() {
    let mut r = start().await;
    let lead = "01890000-0000-7000-8000-000000000000";

    let status = r
        .client
        .upsert_asset(pb::UpsertAssetRequest {
            asset: Some(pb::Asset {
                checkpoints: vec![99],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        testkit::violated_fields(&status),
        [
            "asset.asset_id",
            "asset.title",
            "asset.kind",
            "asset.stage",
            "asset.checkpoints[0]"
        ]
    );

    let status = r
        .client
        .record_objection(pb::RecordObjectionRequest {
            lead_id: lead.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["checkpoint"]);

    let status = r
        .client
        .record_belief_signal(pb::RecordBeliefSignalRequest {
            lead_id: lead.into(),
            kind: pb::SignalKind::Reply as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["sentiment"]);

    let status = r
        .client
        .record_proof_delivered(pb::RecordProofDeliveredRequest {
            lead_id: lead.into(),
            asset_id: "no-such-asset".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&status), ["asset_id"]);

    let status = r
        .client
        .next_proof(pb::NextProofRequest {
            lead_id: lead.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A run-time asset joins the catalog; a playbook asset cannot be overridden.
    let asset = |id: &str| pb::Asset {
        asset_id: id.into(),
        title: "ROI calculator".into(),
        kind: pb::AssetKind::RoiCalculator as i32,
        stage: pb::BeliefStage::MechanismUnderstanding as i32,
        checkpoints: vec![pb::Checkpoint::Price as i32],
        active: true,
        ..Default::default()
    };
    let created = r
        .client
        .upsert_asset(pb::UpsertAssetRequest {
            asset: Some(asset("roi-calculator")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let refused = r
        .client
        .upsert_asset(pb::UpsertAssetRequest {
            asset: Some(asset("security-pack")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let assets = r
        .client
        .list_assets(pb::ListAssetsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .assets;
    assert_eq!(assets.len(), 6);
    assert!(assets.iter().any(|a| a.asset_id == "roi-calculator"));

    // An objection on an unknown lead starts its belief state.
    let state = r
        .client
        .record_objection(pb::RecordObjectionRequest {
            lead_id: lead.into(),
            checkpoint: pb::Checkpoint::Price as i32,
            verbatim: "Too expensive".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(state.objections.len(), 1);
    let next = r
        .client
        .next_proof(pb::NextProofRequest {
            lead_id: lead.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.verdict, pb::Verdict::Recommended as i32);
    assert_eq!(next.asset.unwrap().asset_id, "roi-calculator");
    r.stop.cancel();
}

/// A `NextProof` call the client's transport retries (same `idempotency-key` metadata, as
/// `runtime::client` sends) gets the first answer back and logs one recommendation; the key
/// reused for another lead is refused; a malformed key is named.
#[tokio::test]
async fn a_retried_next_proof_gets_its_first_answer_and_logs_once() {
    let mut r = start().await;
    let lead = "01890000-0000-7000-8000-00000000000a";
    let other = "01890000-0000-7000-8000-00000000000b";
    for id in [lead, other] {
        r.client
            .record_objection(pb::RecordObjectionRequest {
                lead_id: id.into(),
                checkpoint: pb::Checkpoint::Price as i32,
                verbatim: "Too expensive".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let keyed = |lead: &str, key: &str| {
        let mut request = tonic::Request::new(pb::NextProofRequest {
            lead_id: lead.into(),
        });
        request
            .metadata_mut()
            .insert(runtime::client::IDEMPOTENCY_KEY, key.parse().unwrap());
        request
    };
    let recommended = |db: runtime::Db| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM event_log WHERE event_type LIKE '%ProofRecommended'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    };

    let first = r
        .client
        .next_proof(keyed(lead, "followup:step-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.verdict, pb::Verdict::Recommended as i32);
    assert_eq!(recommended(r.db.clone()).await, 1);
    for _ in 0..3 {
        let retried = r
            .client
            .next_proof(keyed(lead, "followup:step-1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried, first);
    }
    assert_eq!(recommended(r.db.clone()).await, 1, "a retry logged again");

    // Without a key every call is a new recommendation (spacing may make it a wait).
    r.client
        .next_proof(pb::NextProofRequest {
            lead_id: lead.into(),
        })
        .await
        .unwrap();
    let after_unkeyed = recommended(r.db.clone()).await;

    let reused = r
        .client
        .next_proof(keyed(other, "followup:step-1"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(recommended(r.db.clone()).await, after_unkeyed);

    let long = r
        .client
        .next_proof(keyed(lead, &"k".repeat(129)))
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&long), ["idempotency-key"]);

    // Records older than the retry window go; younger ones stay.
    let scope = proof::service::NEXT_PROOF_SCOPE;
    let now = jiff::Timestamp::now();
    assert_eq!(
        runtime::idempotency::prune(&r.db, scope, now - jiff::SignedDuration::from_hours(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        runtime::idempotency::prune(&r.db, scope, now + jiff::SignedDuration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    r.stop.cancel();
}
