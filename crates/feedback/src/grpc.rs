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
use crate::queries::{VerdictCode, VerdictCursor};
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

/// What a verdict listing's page token continues: the request's period and filter, which
/// the token carries so that a token handed to another listing is refused rather than
/// silently starting it part-way.
struct Listing {
    from: jiff::Timestamp,
    to: Option<jiff::Timestamp>,
    verdict: i32,
}

/// The version and kind a token starts with, so a token from another RPC is never read as one.
const TOKEN_TAG: &str = "verdicts-v1";

impl Listing {
    fn fields(&self) -> [String; 4] {
        [
            TOKEN_TAG.to_owned(),
            self.from.as_microsecond().to_string(),
            self.to
                .map(|t| t.as_microsecond().to_string())
                .unwrap_or_default(),
            self.verdict.to_string(),
        ]
    }

    /// The token of the page after `cursor`: this listing and the cursor, hex-encoded so
    /// callers treat it as opaque.
    fn token(&self, cursor: VerdictCursor) -> String {
        let [tag, from, to, verdict] = self.fields();
        hex::encode(format!(
            "{tag}.{from}.{to}.{verdict}.{}.{}",
            cursor.received_at.as_microsecond(),
            cursor.lead
        ))
    }

    fn parse_token(&self, token: &str) -> Result<VerdictCursor, Status> {
        let bad = |why: &str| invalid_argument([("page_token", why.to_owned())]);
        let malformed = || bad("not a token from a previous ListVerdicts response");
        let text = hex::decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(malformed)?;
        let parts: Vec<&str> = text.split('.').collect();
        let [tag, from, to, verdict, received, lead] = parts.as_slice() else {
            return Err(malformed());
        };
        if *tag != TOKEN_TAG {
            return Err(malformed());
        }
        if [*tag, *from, *to, *verdict] != self.fields().each_ref().map(String::as_str) {
            return Err(bad(
                "the token belongs to another listing: keep from, to and verdict as they were",
            ));
        }
        let received: i64 = received.parse().map_err(|_| malformed())?;
        Ok(VerdictCursor {
            received_at: jiff::Timestamp::from_microsecond(received).map_err(|_| malformed())?,
            lead: lead.parse().map_err(|_| malformed())?,
        })
    }
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
        let listing = Listing {
            from,
            to,
            verdict: request.verdict,
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(listing.parse_token(&request.page_token)?)
        };
        let wanted = match pb::Verdict::try_from(request.verdict).unwrap_or_default() {
            pb::Verdict::Unspecified => None,
            pb::Verdict::Fair => Some(VerdictCode::Fair),
            pb::Verdict::NotFair => Some(VerdictCode::NotFair),
            pb::Verdict::Undetermined => Some(VerdictCode::Undetermined),
        };
        let page = self
            .feedback
            .verdicts(
                from,
                to,
                wanted,
                after,
                u64::try_from(limit).unwrap_or(u64::MAX),
            )
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::ListVerdictsResponse {
            verdicts: page.verdicts.iter().map(verdict).collect(),
            next_page_token: page
                .next
                .map(|cursor| listing.token(cursor))
                .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(verdict: i32) -> Listing {
        Listing {
            from: "2026-03-01T00:00:00Z".parse().unwrap(),
            to: None,
            verdict,
        }
    }

    fn violation(status: &Status) -> String {
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn a_token_continues_its_own_listing_only() {
        let cursor = VerdictCursor {
            received_at: "2026-03-04T05:06:07.000008Z".parse().unwrap(),
            lead: Uuid::now_v7(),
        };
        let token = listing(2).token(cursor);
        assert_eq!(listing(2).parse_token(&token).unwrap(), cursor);
        // Another verdict filter, period end or start: the token is foreign.
        for other in [
            listing(1),
            Listing {
                to: Some("2026-04-01T00:00:00Z".parse().unwrap()),
                ..listing(2)
            },
            Listing {
                from: "2026-02-01T00:00:00Z".parse().unwrap(),
                ..listing(2)
            },
        ] {
            let status = other.parse_token(&token).unwrap_err();
            assert!(violation(&status).contains("another listing"));
        }
        // Not hex, not text, another tag, missing or garbled parts: malformed.
        let garbled = [
            "nope".to_owned(),
            "50000".to_owned(),
            hex::encode([0xff, 0xfe]),
            hex::encode(format!("queue-v1.1.2.3.4.{}", cursor.lead)),
            hex::encode("verdicts-v1.1772323200000000..2.5"),
            hex::encode("verdicts-v1.1772323200000000..2.x.y"),
            hex::encode(
                "verdicts-v1.1772323200000000..2.999999999999999999.00000000-0000-0000-0000-000000000000",
            ),
            format!("{token}0"),
        ];
        for token in garbled {
            let status = listing(2).parse_token(&token).unwrap_err();
            assert!(
                violation(&status).contains("not a token"),
                "{token}: {status:?}"
            );
        }
    }
}
