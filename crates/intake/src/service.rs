//! Intake's use cases: submit (one or many), review rejections, opt out, read. Each write is
//! one transaction holding the state change, its events and its idempotency record, so a
//! lead is never half-accepted and never accepted without its event.

use jiff::Timestamp;
use proto::intake::v1 as pb;
use runtime::idempotency::{self, Claim};
use runtime::playbook::Playbook;
use runtime::{DbError, EventLog, NewEvent, SharedClock, Tx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::convert::{lead_to_proto, rejection_to_proto, touch_to_proto};
use crate::domain::quality::{completeness_score, icp_tier, quality_problems};
use crate::domain::validate::normalize;
use crate::domain::{
    ConsentBasis, ContactKey, Lead, LeadId, LeadInput, Problem, Rejection, RejectionId,
    RejectionState, Touch, suppression_keys,
};
use crate::playbook::IntakePlaybook;
use crate::store::Store;

/// Items of a bulk submit committed together: fewer commits, and a failure of the database
/// affects at most one chunk.
const BULK_CHUNK: usize = 256;

/// What intake did with a submission. Stored as the answer to an idempotent retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Submitted {
    /// A new lead.
    Accepted(Lead),
    /// Merged into the contact's existing lead (returned with the new touch).
    Merged(Lead),
    /// Well-formed but failed data-quality rules: in the review queue.
    Rejected(Rejection),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the lead is malformed")]
    Invalid(Vec<Problem>),
    #[error("the idempotency key was already used for a different request")]
    IdempotencyConflict,
    #[error("no lead with this id")]
    LeadNotFound,
    #[error("no rejection with this id")]
    RejectionNotFound,
    #[error("the rejection was already reviewed")]
    AlreadyReviewed,
    #[error(transparent)]
    Storage(#[from] DbError),
}

/// How a reviewer resolves a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewAction {
    /// Accept only if it passes the playbook now.
    Reevaluate,
    /// Accept despite the data-quality rules.
    AcceptAsIs,
    /// Never make it a lead.
    Dismiss,
}

/// Outcome of an opt-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptedOut {
    pub lead_ids: Vec<LeadId>,
    pub newly_suppressed: bool,
}

/// Intake's application service.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
    log: EventLog,
    playbook: Playbook<IntakePlaybook>,
    clock: SharedClock,
}

impl Intake {
    pub fn new(
        store: Store,
        log: EventLog,
        playbook: Playbook<IntakePlaybook>,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            log,
            playbook,
            clock,
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Now, at the microsecond precision timestamps are stored with, so an answer and a later
    /// read of the same lead agree.
    fn now(&self) -> Timestamp {
        let now = self.clock.now();
        Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
    }

    /// Submits one lead.
    pub async fn submit(
        &self,
        input: LeadInput,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let mut results = self
            .submit_many(vec![(input, idempotency_key.map(str::to_owned))])
            .await?;
        results
            .pop()
            .unwrap_or(Err(IntakeError::Invalid(Vec::new())))
    }

    /// Submits many leads; each gets its own result, and a malformed or conflicting item never
    /// affects the others. Only a storage failure fails the call as a whole.
    pub async fn submit_many(
        &self,
        items: Vec<(LeadInput, Option<String>)>,
    ) -> Result<Vec<Result<Submitted, IntakeError>>, IntakeError> {
        let playbook = self.playbook.current();
        let mut results = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items.by_ref().take(BULK_CHUNK).collect();
            let now = self.now();
            let mut tx = self.store.db().begin().await?;
            let mut events = Vec::with_capacity(chunk.len());
            for (raw, key) in chunk {
                let result = self
                    .submit_in(&mut tx, raw, key.as_deref(), &playbook, now, &mut events)
                    .await;
                match result {
                    Err(IntakeError::Storage(e)) => return Err(IntakeError::Storage(e)),
                    other => results.push(other),
                }
            }
            self.log.append(&mut tx, &events).await?;
            self.log.commit(tx).await?;
        }
        Ok(results)
    }

    async fn submit_in(
        &self,
        tx: &mut Tx,
        raw: LeadInput,
        key: Option<&str>,
        playbook: &IntakePlaybook,
        now: Timestamp,
        events: &mut Vec<NewEvent>,
    ) -> Result<Submitted, IntakeError> {
        let key = key.filter(|k| !k.is_empty());
        // Fingerprint the request as sent, before normalisation, to tell a retry from reuse.
        let hash = key.map(|_| {
            idempotency::request_hash(serde_json::to_string(&raw).unwrap_or_default().as_bytes())
        });
        let input = normalize(raw).map_err(IntakeError::Invalid)?;
        if let (Some(key), Some(hash)) = (key, hash.as_deref()) {
            match idempotency::claim(tx, "SubmitLead", key, hash, now).await? {
                Claim::New => {}
                Claim::Replay(answer) => {
                    return serde_json::from_slice(&answer).map_err(|e| {
                        IntakeError::Storage(DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))
                    });
                }
                Claim::Conflict => return Err(IntakeError::IdempotencyConflict),
            }
        }
        let problems = quality_problems(&input, playbook);
        let submitted = if problems.is_empty() {
            match self
                .accept_or_merge(tx, input, playbook, now, events)
                .await?
            {
                (lead, true) => Submitted::Merged(lead),
                (lead, false) => Submitted::Accepted(lead),
            }
        } else {
            let rejection = Rejection {
                id: RejectionId::new(),
                input,
                received_at: now,
                problems,
                state: RejectionState::Pending,
                lead_id: None,
            };
            Store::insert_rejection(tx, &rejection).await?;
            let event = pb::LeadRejected {
                rejection: Some(rejection_to_proto(&rejection)),
            };
            events.push(NewEvent::new(rejection.id.to_string(), &event, now));
            Submitted::Rejected(rejection)
        };
        if let Some(key) = key {
            let answer = serde_json::to_vec(&submitted).unwrap_or_default();
            idempotency::store(tx, "SubmitLead", key, &answer).await?;
        }
        Ok(submitted)
    }

    /// Creates a lead, or merges the submission into the contact's lead if that was first
    /// received within the duplicate window. Returns the lead and whether it was a merge.
    async fn accept_or_merge(
        &self,
        tx: &mut Tx,
        input: LeadInput,
        playbook: &IntakePlaybook,
        now: Timestamp,
        events: &mut Vec<NewEvent>,
    ) -> Result<(Lead, bool), IntakeError> {
        // Validation guarantees a contact channel; without one there is nothing to key on.
        let Some(contact_key) = ContactKey::of(&input.contact) else {
            return Err(IntakeError::Invalid(vec![Problem::new(
                "contact",
                "no_contact_channel",
                "give an email or a phone number so someone can reach this lead",
            )]));
        };
        let contact_key = contact_key.as_storage_key();
        let keys: Vec<String> = suppression_keys(&input.contact)
            .iter()
            .map(ContactKey::as_storage_key)
            .collect();
        let do_not_contact =
            input.consent.basis == ConsentBasis::None || Store::is_suppressed(tx, &keys).await?;

        let candidate = LeadId::new();
        let current = Store::claim_contact(tx, &contact_key, candidate, now).await?;
        if current.lead_id != candidate {
            if now.duration_since(current.first_received_at) <= playbook.duplicate_window() {
                let touch = Touch {
                    id: Uuid::now_v7(),
                    received_at: now,
                    input,
                };
                Store::insert_touch(tx, current.lead_id, &touch, do_not_contact).await?;
                let lead = Store::lead_in(tx, current.lead_id)
                    .await?
                    .ok_or(IntakeError::LeadNotFound)?;
                let event = pb::LeadMerged {
                    lead_id: lead.id.to_string(),
                    touch: Some(touch_to_proto(&touch)),
                    do_not_contact: lead.do_not_contact,
                };
                events.push(NewEvent::new(lead.id.to_string(), &event, now));
                return Ok((lead, true));
            }
            Store::repoint_contact(tx, &contact_key, candidate, now).await?;
        }
        let lead = Lead {
            id: candidate,
            completeness_score: completeness_score(&input, playbook),
            icp_tier: icp_tier(&input, playbook),
            input,
            received_at: now,
            do_not_contact,
            touches: Vec::new(),
        };
        Store::insert_lead(tx, &lead, &contact_key).await?;
        let event = pb::LeadAccepted {
            lead: Some(lead_to_proto(&lead)),
        };
        events.push(NewEvent::new(lead.id.to_string(), &event, now));
        Ok((lead, false))
    }

    /// A lead with its touches.
    pub async fn lead(&self, id: LeadId) -> Result<Lead, IntakeError> {
        self.store.lead(id).await?.ok_or(IntakeError::LeadNotFound)
    }

    /// A page of the review queue, newest first.
    pub async fn rejections(
        &self,
        state: RejectionState,
        source: &str,
        before: Option<RejectionId>,
        limit: usize,
    ) -> Result<Vec<Rejection>, IntakeError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .store
            .list_rejections(state, source, before, limit)
            .await?)
    }

    /// Resolves a pending rejection. Returns the rejection after review and the lead it
    /// became, if any.
    pub async fn reconsider(
        &self,
        id: RejectionId,
        corrected: Option<LeadInput>,
        action: ReviewAction,
        note: &str,
    ) -> Result<(Rejection, Option<Submitted>), IntakeError> {
        let corrected = match corrected {
            Some(raw) => Some(normalize(raw).map_err(|problems| {
                IntakeError::Invalid(
                    problems
                        .into_iter()
                        .map(|p| Problem {
                            field: prefixed("corrected", &p.field),
                            ..p
                        })
                        .collect(),
                )
            })?),
            None => None,
        };
        let playbook = self.playbook.current();
        let now = self.now();
        let mut tx = self.store.db().begin().await?;
        let lock = self.store.db().backend() == runtime::Backend::Postgres;
        let mut rejection = Store::rejection_for_update(&mut tx, id, lock)
            .await?
            .ok_or(IntakeError::RejectionNotFound)?;
        if rejection.state != RejectionState::Pending {
            return Err(IntakeError::AlreadyReviewed);
        }
        if let Some(input) = corrected {
            rejection.input = input;
        }
        let mut events = Vec::new();
        let submitted = match action {
            ReviewAction::Dismiss => {
                rejection.state = RejectionState::Dismissed;
                None
            }
            ReviewAction::Reevaluate | ReviewAction::AcceptAsIs => {
                let problems = match action {
                    ReviewAction::Reevaluate => quality_problems(&rejection.input, &playbook),
                    _ => Vec::new(),
                };
                if problems.is_empty() {
                    let (lead, merged) = self
                        .accept_or_merge(
                            &mut tx,
                            rejection.input.clone(),
                            &playbook,
                            now,
                            &mut events,
                        )
                        .await?;
                    rejection.state = RejectionState::Accepted;
                    rejection.lead_id = Some(lead.id);
                    Some(if merged {
                        Submitted::Merged(lead)
                    } else {
                        Submitted::Accepted(lead)
                    })
                } else {
                    rejection.problems = problems;
                    None
                }
            }
        };
        Store::update_rejection(&mut tx, &rejection, note).await?;
        self.log.append(&mut tx, &events).await?;
        self.log.commit(tx).await?;
        Ok((rejection, submitted))
    }

    /// Suppresses a contact by email and/or phone and flags its leads do-not-contact.
    pub async fn opt_out(
        &self,
        email: &str,
        phone: &str,
        reason: &str,
    ) -> Result<OptedOut, IntakeError> {
        let contact = normalize_contact_for_opt_out(email, phone)?;
        let keys: Vec<String> = suppression_keys(&contact)
            .iter()
            .map(ContactKey::as_storage_key)
            .collect();
        let now = self.now();
        let mut tx = self.store.db().begin().await?;
        let newly_suppressed = Store::suppress(&mut tx, &keys, reason, now).await?;
        let lead_ids = Store::flag_do_not_contact(&mut tx, &contact.email, &contact.phone).await?;
        if newly_suppressed {
            let event = pb::ContactOptedOut {
                email: contact.email.clone(),
                phone: contact.phone.clone(),
                lead_ids: lead_ids.iter().map(ToString::to_string).collect(),
                reason: reason.to_owned(),
            };
            // The aggregate is the contact; its id must not carry the address itself.
            let aggregate = format!(
                "contact:{}",
                hex::encode(&Sha256::digest(keys.join("|").as_bytes())[..12])
            );
            self.log
                .append(&mut tx, &[NewEvent::new(aggregate, &event, now)])
                .await?;
        }
        self.log.commit(tx).await?;
        Ok(OptedOut {
            lead_ids,
            newly_suppressed,
        })
    }
}

fn prefixed(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Validates an opt-out's contact with the same rules as a lead's, reporting fields by the
/// request's names (`email`, `phone`).
fn normalize_contact_for_opt_out(
    email: &str,
    phone: &str,
) -> Result<crate::domain::Contact, IntakeError> {
    let mut input = LeadInput::default();
    input.contact.email = email.to_owned();
    input.contact.phone = phone.to_owned();
    input.source.source = "opt-out".to_owned();
    match normalize(input) {
        Ok(input) => Ok(input.contact),
        Err(problems) => Err(IntakeError::Invalid(
            problems
                .into_iter()
                .map(|p| {
                    let field = match p.field.as_str() {
                        "contact" => String::new(),
                        f => f.strip_prefix("contact.").unwrap_or(f).to_owned(),
                    };
                    let description = p
                        .description
                        .replace("contact.country", "a +country prefix");
                    Problem {
                        field,
                        description,
                        ..p
                    }
                })
                .collect(),
        )),
    }
}
