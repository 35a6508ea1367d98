//! Intake's gRPC edge: wire types in, domain calls, wire types out, and one mapping from
//! [`IntakeError`] to a `tonic::Status` (field violations for malformed input; storage
//! causes logged, never sent).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_server::{IntakeService, IntakeServiceServer};
use runtime::grpc::{IDEMPOTENCY_KEY_MAX, invalid_argument, parse_id};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{lead_input_from_proto, lead_to_proto, problem_to_proto, rejection_to_proto};
use crate::domain::{LeadId, RejectionId, RejectionState};
use crate::service::{Intake, IntakeError, ReviewAction, Submitted};

/// Fully qualified name of the service, for health checks.
pub const SERVICE_NAME: &str = "fairchance.intake.v1.IntakeService";

/// Streamed items handed to the service at once.
const STREAM_BATCH: usize = 256;
/// Most leads one CheckContactable call may ask about.
const MAX_CHECK: usize = 1000;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct IntakeApi {
    intake: Intake,
    shutdown: CancellationToken,
}

impl IntakeApi {
    /// `shutdown` ends live `Subscribe` streams so a graceful shutdown can complete.
    pub fn new(intake: Intake, shutdown: CancellationToken) -> Self {
        Self { intake, shutdown }
    }

    pub fn into_server(self, max_message_bytes: usize) -> IntakeServiceServer<Self> {
        IntakeServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

fn status_of(error: IntakeError) -> Status {
    match error {
        IntakeError::Invalid(problems) => {
            invalid_argument(problems.into_iter().map(|p| (p.field, p.description)))
        }
        IntakeError::IdempotencyConflict => Status::already_exists(
            "idempotency_key was already used for a different lead; use a new key for a new lead",
        ),
        IntakeError::LeadNotFound => Status::not_found("no lead with this lead_id"),
        IntakeError::RejectionNotFound => Status::not_found("no rejection with this rejection_id"),
        IntakeError::AlreadyReviewed => Status::failed_precondition(
            "this rejection was already reviewed; list pending rejections to find open ones",
        ),
        IntakeError::Storage(e) => runtime::grpc::storage_unavailable(&e),
    }
}

fn check_key(field: &str, key: &str) -> Result<(), Status> {
    if key.chars().count() > IDEMPOTENCY_KEY_MAX {
        return Err(invalid_argument([(
            field,
            format!("must be at most {IDEMPOTENCY_KEY_MAX} characters"),
        )]));
    }
    Ok(())
}

fn submit_response(submitted: Submitted) -> pb::SubmitLeadResponse {
    match submitted {
        Submitted::Accepted(lead) => pb::SubmitLeadResponse {
            outcome: pb::SubmitOutcome::Accepted as i32,
            lead: Some(lead_to_proto(&lead)),
            rejection: None,
        },
        Submitted::Merged(lead) => pb::SubmitLeadResponse {
            outcome: pb::SubmitOutcome::Merged as i32,
            lead: Some(lead_to_proto(&lead)),
            rejection: None,
        },
        Submitted::Rejected(rejection) => pb::SubmitLeadResponse {
            outcome: pb::SubmitOutcome::Rejected as i32,
            lead: None,
            rejection: Some(rejection_to_proto(&rejection)),
        },
    }
}

fn bulk_result(
    index: u32,
    result: Result<Submitted, IntakeError>,
    totals: &mut pb::SubmitLeadsResponse,
) -> pb::SubmitLeadsResult {
    let mut r = pb::SubmitLeadsResult {
        index,
        ..Default::default()
    };
    match result {
        Ok(Submitted::Accepted(lead)) => {
            totals.accepted += 1;
            r.outcome = pb::SubmitOutcome::Accepted as i32;
            r.lead_id = lead.id.to_string();
        }
        Ok(Submitted::Merged(lead)) => {
            totals.merged += 1;
            r.outcome = pb::SubmitOutcome::Merged as i32;
            r.lead_id = lead.id.to_string();
        }
        Ok(Submitted::Rejected(rejection)) => {
            totals.rejected += 1;
            r.outcome = pb::SubmitOutcome::Rejected as i32;
            r.rejection_id = rejection.id.to_string();
            r.problems = rejection.problems.iter().map(problem_to_proto).collect();
        }
        Err(IntakeError::Invalid(problems)) => {
            totals.invalid += 1;
            r.outcome = pb::SubmitOutcome::Invalid as i32;
            r.problems = problems.iter().map(problem_to_proto).collect();
        }
        Err(other) => {
            totals.invalid += 1;
            r.outcome = pb::SubmitOutcome::Invalid as i32;
            let status = status_of(other);
            r.problems = vec![pb::Problem {
                field: "idempotency_key".into(),
                code: "idempotency_conflict".into(),
                description: status.message().to_owned(),
            }];
        }
    }
    r
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn submit_lead(
        &self,
        request: Request<pb::SubmitLeadRequest>,
    ) -> Result<Response<pb::SubmitLeadResponse>, Status> {
        // The key the client chose for the lead wins; otherwise the one its transport sends
        // on every call (the same on each retry), so a retried call is not a second lead.
        let transport_key = runtime::grpc::idempotency_key(&request)?;
        let request = request.into_inner();
        check_key("idempotency_key", &request.idempotency_key)?;
        let Some(lead) = request.lead else {
            return Err(invalid_argument([("lead", "required")]));
        };
        let key = Some(request.idempotency_key)
            .filter(|k| !k.is_empty())
            .or(transport_key);
        let submitted = self
            .intake
            .submit(lead_input_from_proto(lead), key.as_deref())
            .await
            .map_err(status_of)?;
        Ok(Response::new(submit_response(submitted)))
    }

    async fn submit_leads(
        &self,
        request: Request<Streaming<pb::SubmitLeadsRequest>>,
    ) -> Result<Response<pb::SubmitLeadsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut response = pb::SubmitLeadsResponse::default();
        let mut index: u32 = 0;
        let mut done = false;
        while !done {
            // Take what is ready, up to a batch, so one transaction carries many items.
            let mut batch = Vec::with_capacity(STREAM_BATCH);
            let mut early = Vec::new();
            while batch.len() < STREAM_BATCH {
                let next = if batch.is_empty() {
                    stream.message().await?
                } else {
                    match futures::FutureExt::now_or_never(stream.message()) {
                        Some(next) => next?,
                        None => break,
                    }
                };
                let Some(item) = next else {
                    done = true;
                    break;
                };
                let position = index + u32::try_from(batch.len() + early.len()).unwrap_or(u32::MAX);
                if item.idempotency_key.chars().count() > IDEMPOTENCY_KEY_MAX {
                    early.push((
                        position,
                        pb::Problem {
                            field: "idempotency_key".into(),
                            code: "too_long".into(),
                            description: format!(
                                "must be at most {IDEMPOTENCY_KEY_MAX} characters"
                            ),
                        },
                    ));
                    continue;
                }
                let Some(lead) = item.lead else {
                    early.push((
                        position,
                        pb::Problem {
                            field: "lead".into(),
                            code: "missing_field".into(),
                            description: "required".into(),
                        },
                    ));
                    continue;
                };
                let key = Some(item.idempotency_key).filter(|k| !k.is_empty());
                batch.push((position, lead_input_from_proto(lead), key));
            }
            let positions: Vec<u32> = batch.iter().map(|(p, _, _)| *p).collect();
            let items = batch
                .into_iter()
                .map(|(_, lead, key)| (lead, key))
                .collect();
            let results = self.intake.submit_many(items).await.map_err(status_of)?;
            let mut chunk: Vec<pb::SubmitLeadsResult> = positions
                .into_iter()
                .zip(results)
                .map(|(position, result)| bulk_result(position, result, &mut response))
                .collect();
            for (position, problem) in early {
                response.invalid += 1;
                chunk.push(pb::SubmitLeadsResult {
                    index: position,
                    outcome: pb::SubmitOutcome::Invalid as i32,
                    problems: vec![problem],
                    ..Default::default()
                });
            }
            chunk.sort_by_key(|r| r.index);
            index += u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            response.results.extend(chunk);
        }
        Ok(Response::new(response))
    }

    async fn get_lead(
        &self,
        request: Request<pb::GetLeadRequest>,
    ) -> Result<Response<pb::GetLeadResponse>, Status> {
        let id = parse_id::<LeadId>("lead_id", &request.get_ref().lead_id, "lead id")?;
        let lead = self.intake.lead(id).await.map_err(status_of)?;
        Ok(Response::new(pb::GetLeadResponse {
            lead: Some(lead_to_proto(&lead)),
        }))
    }

    async fn list_rejections(
        &self,
        request: Request<pb::ListRejectionsRequest>,
    ) -> Result<Response<pb::ListRejectionsResponse>, Status> {
        let request = request.into_inner();
        let state = match request.state() {
            pb::RejectionState::Unspecified | pb::RejectionState::Pending => {
                RejectionState::Pending
            }
            pb::RejectionState::Accepted => RejectionState::Accepted,
            pb::RejectionState::Dismissed => RejectionState::Dismissed,
        };
        let page_size = runtime::grpc::page_size(request.page_size)?;
        let before = if request.page_token.is_empty() {
            None
        } else {
            Some(request.page_token.parse::<RejectionId>().map_err(|_| {
                invalid_argument([(
                    "page_token",
                    "not a token from a previous ListRejections response",
                )])
            })?)
        };
        let mut rejections = self
            .intake
            .rejections(state, &request.source, before, page_size + 1)
            .await
            .map_err(status_of)?;
        let next_page_token = if rejections.len() > page_size {
            rejections.truncate(page_size);
            rejections
                .last()
                .map(|r| r.id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRejectionsResponse {
            rejections: rejections.iter().map(rejection_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn reconsider_rejection(
        &self,
        request: Request<pb::ReconsiderRejectionRequest>,
    ) -> Result<Response<pb::ReconsiderRejectionResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id::<RejectionId>("rejection_id", &request.rejection_id, "rejection id")?;
        let action = match request.action() {
            pb::ReconsiderAction::Unspecified | pb::ReconsiderAction::Reevaluate => {
                ReviewAction::Reevaluate
            }
            pb::ReconsiderAction::AcceptAsIs => ReviewAction::AcceptAsIs,
            pb::ReconsiderAction::Dismiss => ReviewAction::Dismiss,
        };
        let corrected = request.corrected.map(lead_input_from_proto);
        let (rejection, submitted) = self
            .intake
            .reconsider(id, corrected, action, &request.note)
            .await
            .map_err(status_of)?;
        let (outcome, lead) = match submitted {
            Some(Submitted::Accepted(lead)) => {
                (pb::SubmitOutcome::Accepted, Some(lead_to_proto(&lead)))
            }
            Some(Submitted::Merged(lead)) => {
                (pb::SubmitOutcome::Merged, Some(lead_to_proto(&lead)))
            }
            Some(Submitted::Rejected(_)) | None => (pb::SubmitOutcome::Rejected, None),
        };
        Ok(Response::new(pb::ReconsiderRejectionResponse {
            rejection: Some(rejection_to_proto(&rejection)),
            lead,
            outcome: outcome as i32,
        }))
    }

    async fn opt_out(
        &self,
        request: Request<pb::OptOutRequest>,
    ) -> Result<Response<pb::OptOutResponse>, Status> {
        let request = request.into_inner();
        if request.email.trim().is_empty() && request.phone.trim().is_empty() {
            return Err(invalid_argument([(
                "",
                "give the email or the phone number to suppress",
            )]));
        }
        if request.reason.chars().count() > 500 {
            return Err(invalid_argument([(
                "reason",
                "must be at most 500 characters",
            )]));
        }
        let opted = self
            .intake
            .opt_out(&request.email, &request.phone, &request.reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::OptOutResponse {
            lead_ids: opted.lead_ids.iter().map(ToString::to_string).collect(),
            newly_suppressed: opted.newly_suppressed,
        }))
    }

    async fn erase_contact(
        &self,
        request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        let request = request.into_inner();
        if request.email.trim().is_empty() && request.phone.trim().is_empty() {
            return Err(invalid_argument([(
                "email",
                "give the email or the phone number of the person to erase",
            )]));
        }
        let erased = self
            .intake
            .erase_contact(&request.email, &request.phone, &request.reference)
            .await
            .map_err(status_of)?;
        // Audit: who asked is on the request span (the caller); the trail holds the rest.
        tracing::info!(
            erasure = %erased.erasure_id,
            leads = erased.lead_ids.len(),
            rejections = erased.rejection_ids.len(),
            events = erased.events_rewritten,
            "contact erased"
        );
        Ok(Response::new(pb::EraseContactResponse {
            erasure_id: erased.erasure_id.to_string(),
            lead_ids: erased.lead_ids.iter().map(ToString::to_string).collect(),
            rejection_ids: erased
                .rejection_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            events_rewritten: u32::try_from(erased.events_rewritten).unwrap_or(u32::MAX),
        }))
    }

    async fn check_contactable(
        &self,
        request: Request<pb::CheckContactableRequest>,
    ) -> Result<Response<pb::CheckContactableResponse>, Status> {
        let request = request.into_inner();
        if request.lead_ids.len() > MAX_CHECK {
            return Err(invalid_argument([(
                "lead_ids",
                format!("at most {MAX_CHECK} per call; split the list"),
            )]));
        }
        let mut ids = Vec::with_capacity(request.lead_ids.len());
        for (i, text) in request.lead_ids.iter().enumerate() {
            ids.push(parse_id::<LeadId>(
                &format!("lead_ids[{i}]"),
                text,
                "lead id",
            )?);
        }
        let known = self.intake.contactability(&ids).await.map_err(status_of)?;
        let known: std::collections::HashMap<LeadId, bool> = known.into_iter().collect();
        let mut response = pb::CheckContactableResponse::default();
        for id in ids {
            match known.get(&id) {
                Some(true) => response.do_not_contact_lead_ids.push(id.to_string()),
                Some(false) => {}
                None => response.unknown_lead_ids.push(id.to_string()),
            }
        }
        Ok(Response::new(response))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = request.into_inner().from.unwrap_or_default();
        let stream = self.intake.log().subscribe(from, self.shutdown.clone())?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|event| pb::SubscribeResponse { event: Some(event) })
        }))))
    }
}
