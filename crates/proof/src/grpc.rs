//! Proof's gRPC edge: requests to domain calls with field-level validation, one mapping from
//! [`ServiceError`] to a `tonic::Status`, and the `Subscribe` stream.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use proto::proof::v1 as pb;
use proto::proof::v1::proof_service_server::{ProofService, ProofServiceServer};
use runtime::grpc::{invalid_argument, optional_timestamp, parse_id, to_proto_timestamp};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{
    asset_to_proto, by_asset, checkpoint_from_proto, kind_from_proto, stage_from_proto,
    state_to_proto,
};
use crate::domain::{Asset, ProofError, Recommendation, Sentiment, Signal};
use crate::service::{Proof, ServiceError};

/// Fully qualified name of the service, for health checks.
pub const SERVICE_NAME: &str = "fairchance.proof.v1.ProofService";

/// Longest objection verbatim or note accepted.
const TEXT_MAX: usize = 2000;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct ProofApi {
    proof: Proof,
    shutdown: CancellationToken,
}

impl ProofApi {
    /// `shutdown` ends live streams so a graceful shutdown can complete.
    pub fn new(proof: Proof, shutdown: CancellationToken) -> Self {
        Self { proof, shutdown }
    }

    pub fn into_server(self, max_message_bytes: usize) -> ProofServiceServer<Self> {
        ProofServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn status_of(error: ServiceError) -> Status {
    match error {
        ServiceError::NotFound => Status::not_found(
            "no belief state for this lead_id (proof starts one when activation records the first action, or with RecordObjection / RecordBeliefSignal)",
        ),
        ServiceError::IdempotencyConflict => Status::already_exists(
            "the idempotency-key metadata was already used for another request; send a new key per call",
        ),
        ServiceError::Refused(error) => match &error {
            ProofError::UnknownAsset(_) => invalid_argument([("asset_id", error.to_string())]),
            ProofError::InvalidAsset { .. } | ProofError::UnknownValue { .. } => {
                invalid_argument([("asset", error.to_string())])
            }
            ProofError::PlaybookAsset(_) => Status::failed_precondition(error.to_string()),
        },
        ServiceError::Storage(e) => runtime::grpc::storage_unavailable(&e),
    }
}

fn lead_id(text: &str) -> Result<Uuid, Status> {
    parse_id("lead_id", text.trim(), "lead id")
}

fn text(field: &str, value: &str) -> Result<(), Status> {
    if value.chars().count() > TEXT_MAX {
        return Err(invalid_argument([(
            field,
            format!("must be at most {TEXT_MAX} characters"),
        )]));
    }
    Ok(())
}

/// The asset a request describes, or every field that is wrong.
fn asset_from_proto(asset: Option<pb::Asset>) -> Result<Asset, Status> {
    let Some(asset) = asset else {
        return Err(invalid_argument([("asset", "required")]));
    };
    let mut problems: Vec<(String, String)> = Vec::new();
    if asset.asset_id.trim().is_empty() {
        problems.push(("asset.asset_id".into(), "required".into()));
    }
    if asset.title.trim().is_empty() {
        problems.push(("asset.title".into(), "required".into()));
    }
    let kind = pb::AssetKind::try_from(asset.kind)
        .ok()
        .and_then(kind_from_proto);
    if kind.is_none() {
        problems.push((
            "asset.kind".into(),
            "required: case_study, testimonial, roi_calculator, security_pack, demo_video, reference_call or benchmark".into(),
        ));
    }
    let stage = pb::BeliefStage::try_from(asset.stage)
        .ok()
        .and_then(stage_from_proto);
    if stage.is_none() {
        problems.push((
            "asset.stage".into(),
            "required: problem_awareness, mechanism_understanding or capability_trust".into(),
        ));
    }
    let mut checkpoints = Vec::new();
    for (i, c) in asset.checkpoints.iter().enumerate() {
        match pb::Checkpoint::try_from(*c)
            .ok()
            .and_then(checkpoint_from_proto)
        {
            Some(c) => checkpoints.push(c),
            None => problems.push((format!("asset.checkpoints[{i}]"), "not a checkpoint".into())),
        }
    }
    let (Some(kind), Some(stage), true) = (kind, stage, problems.is_empty()) else {
        return Err(invalid_argument(problems));
    };
    let asset = Asset {
        id: asset.asset_id.trim().to_owned(),
        title: asset.title.trim().to_owned(),
        kind,
        stage,
        checkpoints,
        segments: asset.segments,
        industries: asset.industries,
        personas: asset.personas,
        url: Some(asset.url).filter(|u| !u.trim().is_empty()),
        active: asset.active,
    };
    asset
        .validate()
        .map_err(|e| invalid_argument([("asset", e.to_string())]))?;
    Ok(asset)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ProofService for ProofApi {
    async fn upsert_asset(
        &self,
        request: Request<pb::UpsertAssetRequest>,
    ) -> Result<Response<pb::UpsertAssetResponse>, Status> {
        let asset = asset_from_proto(request.into_inner().asset)?;
        let created = self.proof.upsert_asset(&asset).await.map_err(status_of)?;
        Ok(Response::new(pb::UpsertAssetResponse { created }))
    }

    async fn list_assets(
        &self,
        request: Request<pb::ListAssetsRequest>,
    ) -> Result<Response<pb::ListAssetsResponse>, Status> {
        let include_inactive = request.get_ref().include_inactive;
        let (catalog, effectiveness) =
            self.proof.assets().await.map_err(|e| status_of(e.into()))?;
        let effectiveness = by_asset(effectiveness);
        let assets = catalog
            .iter()
            .filter(|a| include_inactive || a.active)
            .map(|a| {
                asset_to_proto(
                    a,
                    effectiveness.get(&a.id).map(Vec::as_slice).unwrap_or(&[]),
                )
            })
            .collect();
        Ok(Response::new(pb::ListAssetsResponse { assets }))
    }

    async fn next_proof(
        &self,
        request: Request<pb::NextProofRequest>,
    ) -> Result<Response<pb::NextProofResponse>, Status> {
        let key = runtime::grpc::idempotency_key(&request)?;
        let lead = lead_id(&request.get_ref().lead_id)?;
        let recommendation = self
            .proof
            .next_proof(lead, key.as_deref())
            .await
            .map_err(status_of)?;
        let passed = |passed: Vec<crate::domain::PassedOver>| {
            passed
                .into_iter()
                .map(|p| pb::PassedOver {
                    asset_id: p.asset,
                    reason: p.why.to_string(),
                })
                .collect()
        };
        let response = match recommendation {
            Recommendation::Asset {
                asset,
                reason,
                passed_over,
                ..
            } => pb::NextProofResponse {
                verdict: pb::Verdict::Recommended as i32,
                asset: Some(asset_to_proto(&asset, &[])),
                reason,
                wait_until: None,
                passed_over: passed(passed_over),
            },
            Recommendation::Wait { until, reason } => pb::NextProofResponse {
                verdict: pb::Verdict::Wait as i32,
                reason,
                wait_until: Some(to_proto_timestamp(until)),
                ..Default::default()
            },
            Recommendation::Nothing {
                reason,
                passed_over,
            } => pb::NextProofResponse {
                verdict: pb::Verdict::NothingFits as i32,
                reason,
                passed_over: passed(passed_over),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn record_objection(
        &self,
        request: Request<pb::RecordObjectionRequest>,
    ) -> Result<Response<pb::RecordObjectionResponse>, Status> {
        let request = request.into_inner();
        let lead = lead_id(&request.lead_id)?;
        let checkpoint = pb::Checkpoint::try_from(request.checkpoint)
            .ok()
            .and_then(checkpoint_from_proto)
            .ok_or_else(|| {
                invalid_argument([(
                    "checkpoint",
                    "required: price, implementation_effort, risk_of_failure, security_compliance, switching_cost or internal_buy_in",
                )])
            })?;
        text("verbatim", &request.verbatim)?;
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let state = self
            .proof
            .record_objection(lead, checkpoint, request.verbatim, at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordObjectionResponse {
            state: Some(state_to_proto(&state, self.proof.now())),
        }))
    }

    async fn record_belief_signal(
        &self,
        request: Request<pb::RecordBeliefSignalRequest>,
    ) -> Result<Response<pb::RecordBeliefSignalResponse>, Status> {
        let request = request.into_inner();
        let lead = lead_id(&request.lead_id)?;
        text("note", &request.note)?;
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let stage = pb::BeliefStage::try_from(request.stage)
            .ok()
            .and_then(stage_from_proto);
        let signal = match pb::SignalKind::try_from(request.kind)
            .unwrap_or(pb::SignalKind::Unspecified)
        {
            pb::SignalKind::Unspecified => {
                return Err(invalid_argument([(
                    "kind",
                    "required: asset_consumed, reply, call_note, meeting_booked or objection_resolved",
                )]));
            }
            pb::SignalKind::AssetConsumed => {
                if request.asset_id.trim().is_empty() {
                    return Err(invalid_argument([(
                        "asset_id",
                        "required for asset_consumed: the asset the lead consumed",
                    )]));
                }
                let asset = self
                    .proof
                    .asset(request.asset_id.trim())
                    .await
                    .map_err(status_of)?;
                Signal::AssetEngaged {
                    asset: asset.id,
                    stage: asset.stage,
                }
            }
            pb::SignalKind::Reply => {
                let sentiment = match pb::Sentiment::try_from(request.sentiment) {
                    Ok(pb::Sentiment::Positive) => Sentiment::Positive,
                    Ok(pb::Sentiment::Neutral) => Sentiment::Neutral,
                    Ok(pb::Sentiment::Negative) => Sentiment::Negative,
                    _ => {
                        return Err(invalid_argument([(
                            "sentiment",
                            "required for a reply: positive, neutral or negative",
                        )]));
                    }
                };
                Signal::Reply { sentiment }
            }
            pb::SignalKind::CallNote => Signal::Note { shows: stage },
            pb::SignalKind::MeetingBooked => Signal::MeetingBooked,
            pb::SignalKind::ObjectionResolved => {
                let checkpoint = pb::Checkpoint::try_from(request.checkpoint)
                    .ok()
                    .and_then(checkpoint_from_proto)
                    .ok_or_else(|| {
                        invalid_argument([(
                            "checkpoint",
                            "required for objection_resolved: the checkpoint settled",
                        )])
                    })?;
                Signal::ObjectionResolved { checkpoint }
            }
        };
        let state = self
            .proof
            .record_signal(lead, signal, at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordBeliefSignalResponse {
            state: Some(state_to_proto(&state, self.proof.now())),
        }))
    }

    async fn record_proof_delivered(
        &self,
        request: Request<pb::RecordProofDeliveredRequest>,
    ) -> Result<Response<pb::RecordProofDeliveredResponse>, Status> {
        let request = request.into_inner();
        let lead = lead_id(&request.lead_id)?;
        if request.asset_id.trim().is_empty() {
            return Err(invalid_argument([("asset_id", "required")]));
        }
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let state = self
            .proof
            .record_delivered(lead, request.asset_id.trim(), at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordProofDeliveredResponse {
            state: Some(state_to_proto(&state, self.proof.now())),
        }))
    }

    async fn get_belief_state(
        &self,
        request: Request<pb::GetBeliefStateRequest>,
    ) -> Result<Response<pb::GetBeliefStateResponse>, Status> {
        let lead = lead_id(&request.get_ref().lead_id)?;
        let state = self.proof.get(lead).await.map_err(status_of)?;
        Ok(Response::new(pb::GetBeliefStateResponse {
            state: Some(state_to_proto(&state, self.proof.now())),
        }))
    }

    type SubscribeStream = BoxStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from.unwrap_or_default();
        let stream = self.proof.log().subscribe(from, self.shutdown.clone())?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|event| pb::SubscribeResponse { event: Some(event) })
        }))))
    }
}
