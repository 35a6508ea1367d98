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
    let (channel, _) = testkit::serve::<ProofService>(db, config, stop.clone()).await;
    Running {
        client: ProofServiceClient::new(channel),
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
