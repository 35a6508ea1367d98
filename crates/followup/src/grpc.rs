//! Followup's gRPC edge: requests to domain calls with field-level validation, one mapping
//! from [`ServiceError`] to a `tonic::Status`, and the `Subscribe` stream.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use prost::Message;
use proto::activation::v1 as apb;
use proto::followup::v1 as pb;
use proto::followup::v1::followup_service_server::{FollowupService, FollowupServiceServer};
use runtime::grpc::{invalid_argument, optional_timestamp, page_size, parse_id};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{
    channel_from_proto, outcome_from_proto, parse_task_id, plan_to_proto, task_to_proto,
};
use crate::domain::{Engagement, Enrollment, FollowupError, ReplySentiment};
use crate::service::{Followup, ServiceError};
use crate::store::TaskKey;

/// Fully qualified name of the service, for health checks.
pub const SERVICE_NAME: &str = "fairchance.followup.v1.FollowupService";

/// The tonic service.
#[derive(Debug, Clone)]
pub struct FollowupApi {
    followup: Followup,
    shutdown: CancellationToken,
}

impl FollowupApi {
    /// `shutdown` ends live streams so a graceful shutdown can complete.
    pub fn new(followup: Followup, shutdown: CancellationToken) -> Self {
        Self { followup, shutdown }
    }

    pub fn into_server(self, max_message_bytes: usize) -> FollowupServiceServer<Self> {
        FollowupServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    fn plan(&self, enrollment: &Enrollment) -> pb::Plan {
        let playbook = self.followup.playbook();
        plan_to_proto(enrollment, &enrollment.plan(&playbook, self.followup.now()))
    }
}

fn status_of(error: ServiceError) -> Status {
    match error {
        ServiceError::NotFound => Status::not_found(
            "no follow-up plan for this lead_id (leads are enrolled when activation records their first action)",
        ),
        ServiceError::NotOwner { owner } => Status::failed_precondition(format!(
            "the task belongs to {owner:?}, the lead's current owner"
        )),
        ServiceError::Refused(error) => match error {
            FollowupError::UnknownTask { .. } => Status::not_found(error.to_string()),
            FollowupError::OutcomeNotForChannel { .. } => {
                invalid_argument([("outcome", error.to_string())])
            }
            FollowupError::PauseEndsInThePast => invalid_argument([("until", error.to_string())]),
            _ => Status::failed_precondition(error.to_string()),
        },
        ServiceError::Storage(e) => runtime::grpc::storage_unavailable(&e),
    }
}

fn lead_id(text: &str) -> Result<Uuid, Status> {
    parse_id("lead_id", text.trim(), "lead id")
}

/// The engagement a request describes, or the fields that are wrong.
fn engagement_of(request: &pb::RecordEngagementRequest) -> Result<Engagement, Status> {
    use pb::EngagementKind as K;
    let kind = K::try_from(request.kind).unwrap_or(K::Unspecified);
    let engagement = match kind {
        K::Unspecified => {
            return Err(invalid_argument([(
                "kind",
                "required: reply, meeting_booked, open, click, site_visit, out_of_office, bounce or unsubscribe",
            )]));
        }
        K::Reply => {
            let sentiment = match pb::ReplySentiment::try_from(request.sentiment)
                .unwrap_or(pb::ReplySentiment::Unspecified)
            {
                pb::ReplySentiment::Positive => ReplySentiment::Positive,
                pb::ReplySentiment::Neutral => ReplySentiment::Neutral,
                pb::ReplySentiment::Negative => ReplySentiment::Negative,
                pb::ReplySentiment::RemoveMe => ReplySentiment::RemoveMe,
                pb::ReplySentiment::Unspecified => {
                    return Err(invalid_argument([(
                        "sentiment",
                        "required for a reply: positive, neutral, negative or remove_me",
                    )]));
                }
            };
            Engagement::Reply { sentiment }
        }
        K::MeetingBooked => Engagement::MeetingBooked,
        K::Open => Engagement::Open,
        K::Click => Engagement::Click,
        K::SiteVisit => Engagement::SiteVisit,
        K::OutOfOffice => Engagement::OutOfOffice {
            until: optional_timestamp("returns_at", request.returns_at.as_ref())?,
        },
        K::Bounce => {
            let channel = apb::Channel::try_from(request.channel)
                .ok()
                .and_then(channel_from_proto)
                .ok_or_else(|| {
                    invalid_argument([(
                        "channel",
                        "required for a bounce: the channel that bounced (email, sms, call, linkedin)",
                    )])
                })?;
            Engagement::Bounce {
                channel,
                hard: request.hard_bounce,
            }
        }
        K::Unsubscribe => Engagement::Unsubscribe,
    };
    Ok(engagement)
}

fn parse_page_token(token: &str) -> Result<TaskKey, Status> {
    let bad = || {
        invalid_argument([(
            "page_token",
            "not a token from a previous ListDueTasks response",
        )])
    };
    let mut parts = token.split('.');
    let (Some(micros), Some(lead), Some(task), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(TaskKey {
        due_at: jiff::Timestamp::from_microsecond(micros).map_err(|_| bad())?,
        lead: lead.parse().map_err(|_| bad())?,
        task: task.parse().map_err(|_| bad())?,
    })
}

fn page_token(key: &TaskKey) -> String {
    format!("{}.{}.{}", key.due_at.as_microsecond(), key.lead, key.task)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FollowupService for FollowupApi {
    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let lead = lead_id(&request.get_ref().lead_id)?;
        let (enrollment, _) = self.followup.get(lead).await.map_err(status_of)?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(self.plan(&enrollment)),
        }))
    }

    async fn list_due_tasks(
        &self,
        request: Request<pb::ListDueTasksRequest>,
    ) -> Result<Response<pb::ListDueTasksResponse>, Status> {
        let request = request.into_inner();
        let owner = request.owner_id.trim();
        if owner.is_empty() {
            return Err(invalid_argument([("owner_id", "required")]));
        }
        let limit = page_size(request.page_size)?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(parse_page_token(&request.page_token)?)
        };
        let found = self
            .followup
            .due_tasks(owner, after, limit + 1)
            .await
            .map_err(status_of)?;
        let more = found.len() > limit;
        let mut response = pb::ListDueTasksResponse::default();
        for (key, enrollment, context) in found.into_iter().take(limit) {
            let Some(task) = enrollment.tasks.get(key.task as usize - 1) else {
                continue;
            };
            response.tasks.push(task_to_proto(
                &enrollment,
                task,
                apb::ContextPacket::decode(context.as_slice()).ok(),
            ));
            if more {
                response.next_page_token = page_token(&key);
            }
        }
        Ok(Response::new(response))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let request = request.into_inner();
        let mut problems = Vec::new();
        let task = parse_task_id(request.task_id.trim());
        if task.is_none() {
            problems.push((
                "task_id",
                "not a task id (expected <lead_id>/<task number>, as ListDueTasks returns it)",
            ));
        }
        if request.owner_id.trim().is_empty() {
            problems.push(("owner_id", "required"));
        }
        let outcome = pb::TaskOutcome::try_from(request.outcome)
            .ok()
            .and_then(outcome_from_proto);
        if outcome.is_none() {
            problems.push((
                "outcome",
                "required: done, no_answer, left_voicemail, connected or wrong_number",
            ));
        }
        let (Some((lead, number)), Some(outcome), true) = (task, outcome, problems.is_empty())
        else {
            return Err(invalid_argument(problems));
        };
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let enrollment = self
            .followup
            .complete_task(lead, number, request.owner_id.trim(), outcome, at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CompleteTaskResponse {
            plan: Some(self.plan(&enrollment)),
        }))
    }

    async fn record_engagement(
        &self,
        request: Request<pb::RecordEngagementRequest>,
    ) -> Result<Response<pb::RecordEngagementResponse>, Status> {
        let request = request.into_inner();
        let lead = lead_id(&request.lead_id)?;
        let engagement = engagement_of(&request)?;
        let at = optional_timestamp("occurred_at", request.occurred_at.as_ref())?;
        let (enrollment, effect) = self
            .followup
            .record_engagement(lead, engagement, at)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordEngagementResponse {
            plan: Some(self.plan(&enrollment)),
            effect,
        }))
    }

    async fn pause_cadence(
        &self,
        request: Request<pb::PauseCadenceRequest>,
    ) -> Result<Response<pb::PauseCadenceResponse>, Status> {
        let request = request.into_inner();
        let lead = lead_id(&request.lead_id)?;
        if request.reason.chars().count() > 500 {
            return Err(invalid_argument([(
                "reason",
                "must be at most 500 characters",
            )]));
        }
        let until = optional_timestamp("until", request.until.as_ref())?;
        let enrollment = self
            .followup
            .pause(lead, until, request.reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::PauseCadenceResponse {
            plan: Some(self.plan(&enrollment)),
        }))
    }

    async fn resume_cadence(
        &self,
        request: Request<pb::ResumeCadenceRequest>,
    ) -> Result<Response<pb::ResumeCadenceResponse>, Status> {
        let lead = lead_id(&request.get_ref().lead_id)?;
        let enrollment = self.followup.resume(lead).await.map_err(status_of)?;
        Ok(Response::new(pb::ResumeCadenceResponse {
            plan: Some(self.plan(&enrollment)),
        }))
    }

    type SubscribeStream = BoxStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from.unwrap_or_default();
        let stream = self.followup.log().subscribe(from, self.shutdown.clone())?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|event| pb::SubscribeResponse { event: Some(event) })
        }))))
    }
}
