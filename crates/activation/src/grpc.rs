//! Activation's gRPC edge: requests to domain calls, one mapping from [`ActivationError`] to
//! a `tonic::Status`, and the two streams (`WatchActivations`, `Subscribe`) built on the
//! event log.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use prost::{Message, Name};
use proto::activation::v1 as pb;
use proto::activation::v1::activation_service_server::{
    ActivationService, ActivationServiceServer,
};
use runtime::grpc::{from_proto_timestamp, invalid_argument, parse_id};
use runtime::{StoredEvent, eventlog::parse_cursor};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{activation_to_proto, channel_from_proto};
use crate::domain::OwnerId;
use crate::domain::first_action::FirstAction;
use crate::service::{Activation, ActivationError};

/// Fully qualified name of the service, for health checks.
pub const SERVICE_NAME: &str = "fairchance.activation.v1.ActivationService";

/// The tonic service.
#[derive(Debug, Clone)]
pub struct ActivationApi {
    activation: Activation,
    shutdown: CancellationToken,
}

impl ActivationApi {
    /// `shutdown` ends live streams so a graceful shutdown can complete.
    pub fn new(activation: Activation, shutdown: CancellationToken) -> Self {
        Self {
            activation,
            shutdown,
        }
    }

    pub fn into_server(self, max_message_bytes: usize) -> ActivationServiceServer<Self> {
        ActivationServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn status_of(error: ActivationError) -> Status {
    match error {
        ActivationError::NotFound => {
            Status::not_found("no activation for this lead_id (has intake accepted it?)")
        }
        ActivationError::Irrelevant(why) => Status::failed_precondition(format!(
            "the first action does not activate the lead: {why}"
        )),
        ActivationError::NotOpen(state) => Status::failed_precondition(format!(
            "the lead is {state}; only an assigned lead takes a first action"
        )),
        ActivationError::UnknownOwner(owner) => invalid_argument([(
            "owner_id",
            format!("{owner:?} is not an owner in the playbook"),
        )]),
        ActivationError::BadEvent(e) => {
            tracing::error!(error = %e, "unusable intake event");
            Status::internal("internal error")
        }
        ActivationError::Storage(e) => runtime::grpc::storage_unavailable(&e),
    }
}

fn owner_id(field: &str, text: &str) -> Result<OwnerId, Status> {
    if text.trim().is_empty() {
        return Err(invalid_argument([(field, "required")]));
    }
    Ok(OwnerId(text.trim().to_owned()))
}

/// The activation snapshot an activation event carries.
fn snapshot_of(event: &StoredEvent) -> Option<pb::Activation> {
    let bytes = event.payload.as_slice();
    let name = event.type_name.as_str();
    if name == pb::LeadAssigned::full_name() {
        pb::LeadAssigned::decode(bytes).ok()?.activation
    } else if name == pb::LeadActivated::full_name() {
        pb::LeadActivated::decode(bytes).ok()?.activation
    } else if name == pb::SlaBreached::full_name() {
        pb::SlaBreached::decode(bytes).ok()?.activation
    } else if name == pb::EscalationRaised::full_name() {
        pb::EscalationRaised::decode(bytes).ok()?.activation
    } else if name == pb::LeadReassigned::full_name() {
        pb::LeadReassigned::decode(bytes).ok()?.activation
    } else if name == pb::LeadDoNotContact::full_name() {
        pb::LeadDoNotContact::decode(bytes).ok()?.activation
    } else {
        None
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ActivationService for ActivationApi {
    async fn get_activation(
        &self,
        request: Request<pb::GetActivationRequest>,
    ) -> Result<Response<pb::GetActivationResponse>, Status> {
        let lead = parse_id::<Uuid>("lead_id", &request.get_ref().lead_id, "lead id")?;
        let (record, context) = self.activation.get(lead).await.map_err(status_of)?;
        let now = jiff::Timestamp::now();
        Ok(Response::new(pb::GetActivationResponse {
            activation: Some(activation_to_proto(&record, &context, now)),
        }))
    }

    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let request = request.into_inner();
        let owner = owner_id("owner_id", &request.owner_id)?;
        let page_size = runtime::grpc::page_size(request.page_size)?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(parse_page_token(&request.page_token)?)
        };
        let mut page = self
            .activation
            .queue(&owner, after, page_size + 1)
            .await
            .map_err(status_of)?;
        let next_page_token = if page.len() > page_size {
            page.truncate(page_size);
            page.last()
                .map(|(r, _)| format!("{}.{}", r.deadline.as_microsecond(), r.lead))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let now = jiff::Timestamp::now();
        Ok(Response::new(pb::ListQueueResponse {
            activations: page
                .iter()
                .map(|(r, c)| activation_to_proto(r, c, now))
                .collect(),
            next_page_token,
        }))
    }

    async fn record_first_action(
        &self,
        request: Request<pb::RecordFirstActionRequest>,
    ) -> Result<Response<pb::RecordFirstActionResponse>, Status> {
        let request = request.into_inner();
        let lead = parse_id::<Uuid>("lead_id", &request.lead_id, "lead id")?;
        let owner = owner_id("owner_id", &request.owner_id)?;
        let Some(channel) = channel_from_proto(request.channel()) else {
            return Err(invalid_argument([(
                "channel",
                "required: the channel the owner used",
            )]));
        };
        let now = jiff::Timestamp::now();
        let at = match &request.occurred_at {
            None => now,
            Some(ts) => match from_proto_timestamp(ts) {
                Some(at) if at <= now => at,
                Some(_) => {
                    return Err(invalid_argument([(
                        "occurred_at",
                        "must not be in the future",
                    )]));
                }
                None => return Err(invalid_argument([("occurred_at", "not a valid timestamp")])),
            },
        };
        let reference = if request.template_id.is_empty() {
            request.context_reference
        } else {
            request.template_id
        };
        let action = FirstAction {
            owner,
            channel,
            reference,
            at,
        };
        let (record, context) = self
            .activation
            .record_first_action(lead, action)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RecordFirstActionResponse {
            activation: Some(activation_to_proto(&record, &context, now)),
        }))
    }

    async fn set_owner_availability(
        &self,
        request: Request<pb::SetOwnerAvailabilityRequest>,
    ) -> Result<Response<pb::SetOwnerAvailabilityResponse>, Status> {
        let request = request.into_inner();
        let owner = owner_id("owner_id", &request.owner_id)?;
        let until = match &request.unavailable_until {
            None => None,
            Some(ts) => Some(from_proto_timestamp(ts).ok_or_else(|| {
                invalid_argument([("unavailable_until", "not a valid timestamp")])
            })?),
        };
        let moved = self
            .activation
            .set_availability(&owner, until, &request.reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::SetOwnerAvailabilityResponse {
            reassigned_lead_ids: moved.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn upsert_account(
        &self,
        request: Request<pb::UpsertAccountRequest>,
    ) -> Result<Response<pb::UpsertAccountResponse>, Status> {
        let request = request.into_inner();
        let mut problems = Vec::new();
        if request.account_id.trim().is_empty() {
            problems.push(("account_id".to_owned(), "required".to_owned()));
        }
        let mut domains = Vec::new();
        for (i, domain) in request.domains.iter().enumerate() {
            let d = domain.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || !d.contains('.') || d.contains(['@', ' ', '/']) {
                problems.push((
                    format!("domains[{i}]"),
                    "not an email domain such as example.com".to_owned(),
                ));
            } else {
                domains.push(d);
            }
        }
        if request.domains.is_empty() {
            problems.push((
                "domains".to_owned(),
                "give at least one email domain".to_owned(),
            ));
        }
        if !problems.is_empty() {
            return Err(invalid_argument(problems));
        }
        let owner = owner_id("owner_id", &request.owner_id)?;
        let created = self
            .activation
            .upsert_account(request.account_id.trim(), &request.name, &owner, &domains)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::UpsertAccountResponse { created }))
    }

    type WatchActivationsStream = BoxStream<pb::WatchActivationsResponse>;

    async fn watch_activations(
        &self,
        request: Request<pb::WatchActivationsRequest>,
    ) -> Result<Response<Self::WatchActivationsStream>, Status> {
        let request = request.into_inner();
        let after = parse_cursor("after_cursor", &request.after_cursor)?;
        let states: Vec<i32> = request.states.clone();
        let (team, owner) = (request.team_id, request.owner_id);
        let stream =
            self.activation
                .log()
                .stream(after, false, self.shutdown.clone(), move |event| {
                    let activation = snapshot_of(event)?;
                    let wanted = (team.is_empty() || activation.team_id == team)
                        && (owner.is_empty() || activation.owner_id == owner)
                        && (states.is_empty() || states.contains(&activation.state));
                    wanted.then(|| pb::WatchActivationsResponse {
                        cursor: event.cursor.to_string(),
                        event_type: event.short_type().to_owned(),
                        activation: Some(activation),
                    })
                });
        Ok(Response::new(Box::pin(stream)))
    }

    type SubscribeStream = BoxStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from.unwrap_or_default();
        let stream = self
            .activation
            .log()
            .subscribe(from, self.shutdown.clone())?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|event| pb::SubscribeResponse { event: Some(event) })
        }))))
    }
}

fn parse_page_token(token: &str) -> Result<(jiff::Timestamp, Uuid), Status> {
    let bad = || {
        invalid_argument([(
            "page_token",
            "not a token from a previous ListQueue response",
        )])
    };
    let (micros, lead) = token.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = jiff::Timestamp::from_microsecond(micros).map_err(|_| bad())?;
    Ok((at, lead.parse().map_err(|_| bad())?))
}
