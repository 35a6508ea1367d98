//! Feedback's gRPC edge: requests to reports and outcomes with field-level validation, and
//! one mapping from [`ServiceError`] to a `tonic::Status`.

use proto::feedback::v1 as pb;
use proto::feedback::v1::feedback_service_server::{FeedbackService, FeedbackServiceServer};
use runtime::grpc::{
    invalid_argument, optional_timestamp, page_size, parse_id, to_proto_timestamp,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{from_wire, funnel_step_to_proto, group_to_proto, verdict_to_proto};
use crate::domain::{FeedbackError, GroupBy, OutcomeReason, OutcomeStage};
use crate::queries::VerdictCode;
use crate::service::{Feedback, Judged, ServiceError};

/// Fully qualified name of the service, for health checks.
pub const SERVICE_NAME: &str = "fairchance.feedback.v1.FeedbackService";

/// Longest note accepted with an outcome.
const NOTE_MAX: usize = 2000;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct FeedbackApi {
    feedback: Feedback,
}

impl FeedbackApi {
    pub fn new(feedback: Feedback) -> Self {
        Self { feedback }
    }

    pub fn into_server(self, max_message_bytes: usize) -> FeedbackServiceServer<Self> {
        FeedbackServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn status_of(error: ServiceError) -> Status {
    match error {
        ServiceError::NotFound => Status::not_found(
            "feedback has not seen this lead_id (yet): leads appear once intake's LeadAccepted reaches feedback",
        ),
        ServiceError::Refused(error) => {
            let field = match &error {
                FeedbackError::MissingReason(_) | FeedbackError::UnexpectedReason { .. } => {
                    "reason"
                }
                FeedbackError::FutureOutcome { .. } => "occurred_at",
                FeedbackError::EmptyPeriod { .. } => "to",
                FeedbackError::UnknownValue { .. } => "",
            };
            invalid_argument([(field, error.to_string())])
        }
        ServiceError::Storage(e) => runtime::grpc::storage_unavailable(&e),
    }
}

fn verdict(judged: &Judged) -> pb::LeadVerdict {
    verdict_to_proto(&judged.fact, &judged.verdict, judged.attribution.as_ref())
}

fn required_time(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Result<jiff::Timestamp, Status> {
    optional_timestamp(field, ts)?
        .ok_or_else(|| invalid_argument([(field, "required: the start of the period")]))
}

#[tonic::async_trait]
impl FeedbackService for FeedbackApi {
    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        let request = request.into_inner();
        let lead: Uuid = parse_id("lead_id", request.lead_id.trim(), "lead id")?;
        let stage: OutcomeStage = pb::OutcomeStage::try_from(request.stage)
            .ok()
            .and_then(|s| from_wire(s.as_str_name(), "OUTCOME_STAGE_"))
            .ok_or_else(|| {
                invalid_argument([(
                    "stage",
                    "required: meeting, opportunity, won, lost or disqualified",
                )])
            })?;
        let reason: Option<OutcomeReason> = pb::OutcomeReason::try_from(request.reason)
            .ok()
            .and_then(|r| from_wire(r.as_str_name(), "OUTCOME_REASON_"));
        if request.note.chars().count() > NOTE_MAX {
            return Err(invalid_argument([(
                "note",
                format!("must be at most {NOTE_MAX} characters"),
            )]));
        }
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let judged = self
            .feedback
            .record_outcome(lead, stage, reason, request.note, at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordOutcomeResponse {
            verdict: Some(verdict(&judged)),
        }))
    }

    async fn get_source_report(
        &self,
        request: Request<pb::GetSourceReportRequest>,
    ) -> Result<Response<pb::GetSourceReportResponse>, Status> {
        let request = request.into_inner();
        let from = required_time("from", request.from.as_ref())?;
        let to = optional_timestamp("to", request.to.as_ref())?;
        let by = match pb::GroupBy::try_from(request.group_by).unwrap_or_default() {
            pb::GroupBy::Unspecified | pb::GroupBy::Source => GroupBy::Source,
            pb::GroupBy::Campaign => GroupBy::Campaign,
            pb::GroupBy::Channel => GroupBy::Channel,
        };
        let report = self
            .feedback
            .report(from, to, by)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::GetSourceReportResponse {
            groups: report.groups.iter().map(group_to_proto).collect(),
            total: Some(group_to_proto(&report.total)),
        }))
    }

    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let request = request.into_inner();
        let from = required_time("from", request.from.as_ref())?;
        let to = optional_timestamp("to", request.to.as_ref())?;
        let source = Some(request.source.trim().to_owned()).filter(|s| !s.is_empty());
        let funnel = self
            .feedback
            .funnel(from, to, source)
            .await
            .map_err(status_of)?;
        let stages = funnel
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| funnel_step_to_proto(step, i.checked_sub(1).map(|p| &funnel.steps[p])))
            .collect();
        Ok(Response::new(pb::GetFunnelResponse { stages }))
    }

    async fn list_verdicts(
        &self,
        request: Request<pb::ListVerdictsRequest>,
    ) -> Result<Response<pb::ListVerdictsResponse>, Status> {
        let request = request.into_inner();
        let from = required_time("from", request.from.as_ref())?;
        let to = optional_timestamp("to", request.to.as_ref())?;
        let limit = page_size(request.page_size)?;
        let offset: u64 = if request.page_token.is_empty() {
            0
        } else {
            request.page_token.parse().map_err(|_| {
                invalid_argument([(
                    "page_token",
                    "not a token from a previous ListVerdicts response",
                )])
            })?
        };
        let wanted = match pb::Verdict::try_from(request.verdict).unwrap_or_default() {
            pb::Verdict::Unspecified => None,
            pb::Verdict::Fair => Some(VerdictCode::Fair),
            pb::Verdict::NotFair => Some(VerdictCode::NotFair),
            pb::Verdict::Undetermined => Some(VerdictCode::Undetermined),
        };
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        // One more than the page tells whether another page follows.
        let mut verdicts: Vec<pb::LeadVerdict> = self
            .feedback
            .verdicts(from, to, wanted, offset, limit.saturating_add(1))
            .await
            .map_err(status_of)?
            .iter()
            .map(verdict)
            .collect();
        let more = verdicts.len() as u64 > limit;
        verdicts.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = offset + verdicts.len() as u64;
        Ok(Response::new(pb::ListVerdictsResponse {
            verdicts,
            next_page_token: if more {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn get_lead_timeline(
        &self,
        request: Request<pb::GetLeadTimelineRequest>,
    ) -> Result<Response<pb::GetLeadTimelineResponse>, Status> {
        let lead: Uuid = parse_id("lead_id", request.get_ref().lead_id.trim(), "lead id")?;
        let (timeline, judged) = self.feedback.timeline(lead).await.map_err(status_of)?;
        Ok(Response::new(pb::GetLeadTimelineResponse {
            lead_id: lead.to_string(),
            entries: timeline
                .entries
                .iter()
                .map(|e| pb::TimelineEntry {
                    at: Some(to_proto_timestamp(e.at)),
                    service: e.service.clone(),
                    event_type: e.event_type.clone(),
                    summary: e.summary.clone(),
                })
                .collect(),
            context: timeline.context.into_iter().collect(),
            verdict: Some(verdict(&judged)),
        }))
    }
}
