//! Intake's use cases: submit (one or many), review rejections, opt out, read. Each write is
//! one transaction holding the state change, its events and its idempotency record, so a
//! lead is never half-accepted and never accepted without its event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use proto::intake::v1 as pb;
use runtime::db::Batch;
use runtime::idempotency::{self, Claim};
use runtime::playbook::Playbook;
use runtime::{DbError, EventLog, NewEvent, SharedClock, Tx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{lead_to_proto, rejection_to_proto, touch_to_proto};
use crate::domain::quality::{completeness_score, icp_tier, quality_problems};
use crate::domain::validate::normalize;
use crate::domain::{
    ConsentBasis, ContactKey, Lead, LeadId, LeadInput, Problem, Rejection, RejectionId,
    RejectionState, Touch, suppression_keys,
};
use crate::playbook::IntakePlaybook;
use crate::store::{ContactRow, Store};

/// Items of a bulk submit committed together: fewer commits, and a failure of the database
/// affects at most one chunk.
const BULK_CHUNK: usize = 256;
/// Transactions writing grouped unary submissions at once: while one commits, the next group
/// gathers and the other is being written, which keeps the database busy without contending.
const GROUP_WRITERS: usize = 2;
/// Unary submissions that may wait for a writer before callers wait to enqueue.
const GROUP_QUEUE: usize = 4 * BULK_CHUNK;
/// Idempotency scope of lead submissions (unary and streamed share it).
const SUBMIT_SCOPE: &str = "SubmitLead";

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

/// A lead created or merged into, with the event that says so.
#[derive(Debug)]
struct Accepted {
    lead: Lead,
    merged: bool,
    event: NewEvent,
}

/// What an erasure did, for the caller and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub erasure_id: Uuid,
    pub lead_ids: Vec<LeadId>,
    pub rejection_ids: Vec<RejectionId>,
    pub events_rewritten: usize,
}

/// Outcome of an opt-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptedOut {
    pub lead_ids: Vec<LeadId>,
    pub newly_suppressed: bool,
}

/// A submission as far as it can be taken without the database: fingerprinted, validated
/// and judged by the playbook's data-quality rules. Callers check their own submissions
/// before queueing, so a group transaction holds its connection only for its reads and
/// writes, and a malformed lead is answered without waiting for one.
#[derive(Debug)]
struct Checked {
    /// The idempotency key, with the fingerprint of the request as sent (before
    /// normalisation), which tells a retry from the key's reuse.
    key: Option<(String, String)>,
    /// The normalised lead with the data-quality rules it fails (none: it becomes a lead),
    /// or why it is malformed.
    verdict: Result<(LeadInput, Vec<Problem>), Vec<Problem>>,
}

impl Checked {
    fn new(raw: LeadInput, key: Option<String>, playbook: &IntakePlaybook) -> Self {
        let key = key.filter(|k| !k.is_empty()).map(|key| {
            let body = serde_json::to_string(&raw).unwrap_or_default();
            (key, idempotency::request_hash(body.as_bytes()))
        });
        let verdict = normalize(raw).map(|input| {
            let problems = quality_problems(&input, playbook);
            (input, problems)
        });
        Self { key, verdict }
    }
}

/// A unary submission waiting for a group transaction.
#[derive(Debug)]
struct Queued {
    checked: Checked,
    /// The caller's trace: the events its submission causes carry it on downstream.
    trace: BTreeMap<String, String>,
    reply: oneshot::Sender<Result<Submitted, IntakeError>>,
}

/// Intake's application service.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
    log: EventLog,
    playbook: Playbook<IntakePlaybook>,
    clock: SharedClock,
    /// Where [`Intake::submit`] queues for a group transaction; `None` writes each alone
    /// (outside a Tokio runtime, and in the writers' own copy).
    group: Option<mpsc::Sender<Queued>>,
}

impl Intake {
    pub fn new(
        store: Store,
        log: EventLog,
        playbook: Playbook<IntakePlaybook>,
        clock: SharedClock,
    ) -> Self {
        let direct = Self {
            store,
            log,
            playbook,
            clock,
            group: None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return direct;
        }
        // The writers hold a copy without the queue's sender, so they end once every
        // `Intake` that can submit is gone.
        let (sender, receiver) = mpsc::channel(GROUP_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..GROUP_WRITERS {
            tokio::spawn(direct.clone().write_groups(Arc::clone(&receiver)));
        }
        Self {
            group: Some(sender),
            ..direct
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Submits one lead.
    ///
    /// Submissions that arrive while others are being written share the next transaction
    /// (group commit), each with its own result: under many concurrent callers, one commit
    /// serves many leads instead of each lead queueing for a connection of its own; a lone
    /// caller is written at once. A caller that gives up (deadline, disconnect) after queueing
    /// may still have its lead written, as with any call whose answer is lost; its
    /// idempotency key makes the retry safe.
    pub async fn submit(
        &self,
        input: LeadInput,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, IntakeError> {
        let playbook = self.playbook.current();
        let checked = Checked::new(input, idempotency_key.map(str::to_owned), &playbook);
        if let Err(problems) = checked.verdict {
            return Err(IntakeError::Invalid(problems));
        }
        let Some(group) = &self.group else {
            return self.submit_alone(checked, &playbook).await;
        };
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            checked,
            trace: runtime::telemetry::current_trace_context(),
            reply,
        };
        if let Err(mpsc::error::SendError(queued)) = group.send(queued).await {
            return self.submit_alone(queued.checked, &playbook).await;
        }
        answer
            .await
            .unwrap_or(Err(IntakeError::Storage(DbError::Sqlx(
                sqlx::Error::WorkerCrashed,
            ))))
    }

    async fn submit_alone(
        &self,
        checked: Checked,
        playbook: &IntakePlaybook,
    ) -> Result<Submitted, IntakeError> {
        let mut results = self.write_chunk(vec![checked], None, playbook).await?;
        results
            .pop()
            .unwrap_or(Err(IntakeError::Invalid(Vec::new())))
    }

    /// A group writer: takes whatever has queued (up to a chunk) and writes it in one
    /// transaction, until the queue closes.
    async fn write_groups(self, queue: Arc<Mutex<mpsc::Receiver<Queued>>>) {
        loop {
            let group = {
                let mut queue = queue.lock().await;
                let Some(first) = queue.recv().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < BULK_CHUNK {
                    match queue.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                group
            };
            let span = tracing::info_span!("submit_group", leads = group.len());
            self.write_group(group).instrument(span).await;
        }
    }

    async fn write_group(&self, group: Vec<Queued>) {
        let mut items = Vec::with_capacity(group.len());
        let mut traces = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for queued in group {
            items.push(queued.checked);
            traces.push(queued.trace);
            replies.push(queued.reply);
        }
        let playbook = self.playbook.current();
        match self.write_chunk(items, Some(&traces), &playbook).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up no longer listens.
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                // Every caller of the group gets the failure (UNAVAILABLE, retryable).
                let cause = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(IntakeError::Storage(DbError::Sqlx(
                        sqlx::Error::Protocol(cause.clone()),
                    ))));
                }
            }
        }
    }

    /// Submits many leads; each gets its own result, and a malformed or conflicting item never
    /// affects the others. Only a storage failure fails the call as a whole. Items are
    /// committed in chunks, each written with a few multi-row statements.
    pub async fn submit_many(
        &self,
        items: Vec<(LeadInput, Option<String>)>,
    ) -> Result<Vec<Result<Submitted, IntakeError>>, IntakeError> {
        let playbook = self.playbook.current();
        let mut results = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items
                .by_ref()
                .take(BULK_CHUNK)
                .map(|(raw, key)| Checked::new(raw, key, &playbook))
                .collect();
            results.extend(self.write_chunk(chunk, None, &playbook).await?);
        }
        Ok(results)
    }

    /// Writes one chunk in one transaction: the contacts are claimed, then the chunk's leads,
    /// touches and events go out as one statement (see [`Batch`]). With `traces` (one per
    /// item), each event carries the trace of the item that caused it; without, the current
    /// one.
    async fn write_chunk(
        &self,
        chunk: Vec<Checked>,
        traces: Option<&[BTreeMap<String, String>]>,
        playbook: &IntakePlaybook,
    ) -> Result<Vec<Result<Submitted, IntakeError>>, IntakeError> {
        let now = self.clock.now_micros();
        let mut tx = self.store.db().begin().await?;
        let mut writes = Batch::default();
        let (results, events) = self
            .submit_chunk(&mut tx, &mut writes, chunk, playbook, now)
            .await?;
        let current = traces
            .is_none()
            .then(runtime::telemetry::current_trace_context);
        let events: Vec<_> = events
            .into_iter()
            .map(|(i, event)| {
                let trace = match (traces, &current) {
                    (Some(traces), _) => traces.get(i).cloned(),
                    (None, current) => current.clone(),
                };
                (event, trace.unwrap_or_default())
            })
            .collect();
        let mut writes: Batch<'_> = writes;
        self.log.append_traced_into(&mut writes, &events);
        writes.execute(&mut tx).await?;
        self.log.commit(tx).await?;
        Ok(results)
    }

    /// One chunk of checked submissions inside one transaction: idempotency, rejections, then
    /// every accepted lead written together (into `writes`, which the caller runs). Events
    /// come back in submission order, each with the position of the item that caused it.
    async fn submit_chunk(
        &self,
        tx: &mut Tx,
        writes: &mut Batch<'static>,
        chunk: Vec<Checked>,
        playbook: &IntakePlaybook,
        now: Timestamp,
    ) -> Result<(Vec<Result<Submitted, IntakeError>>, Vec<(usize, NewEvent)>), IntakeError> {
        let mut slots: Vec<Option<Result<Submitted, IntakeError>>> =
            chunk.iter().map(|_| None).collect();
        let mut events: Vec<(usize, NewEvent)> = Vec::new();
        let mut to_accept: Vec<(usize, LeadInput)> = Vec::new();
        // Keys claimed in this chunk: the answer is stored once the chunk is decided, and a
        // repeat of the key within the chunk is a retry of the first item.
        let mut claimed: HashMap<String, (String, usize)> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();

        for (i, Checked { key, verdict }) in chunk.into_iter().enumerate() {
            let (input, problems) = match verdict {
                Ok(checked) => checked,
                Err(problems) => {
                    slots[i] = Some(Err(IntakeError::Invalid(problems)));
                    continue;
                }
            };
            if let Some((key, hash)) = key {
                if let Some((first_hash, first)) = claimed.get(&key) {
                    if *first_hash == hash {
                        repeats.push((i, *first));
                    } else {
                        slots[i] = Some(Err(IntakeError::IdempotencyConflict));
                    }
                    continue;
                }
                match idempotency::claim(tx, SUBMIT_SCOPE, &key, &hash, now).await? {
                    Claim::New => {
                        claimed.insert(key, (hash, i));
                    }
                    Claim::Replay(answer) => {
                        let answer = serde_json::from_slice(&answer)
                            .map_err(|e| IntakeError::Storage(DbError::corrupt(e)))?;
                        slots[i] = Some(Ok(answer));
                        continue;
                    }
                    Claim::Conflict => {
                        slots[i] = Some(Err(IntakeError::IdempotencyConflict));
                        continue;
                    }
                }
            }
            if problems.is_empty() {
                to_accept.push((i, input));
                continue;
            }
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
            events.push((i, NewEvent::new(rejection.id.to_string(), &event, now)));
            slots[i] = Some(Ok(Submitted::Rejected(rejection)));
        }

        let (positions, inputs): (Vec<usize>, Vec<LeadInput>) = to_accept.into_iter().unzip();
        let accepted = self.accept_all(tx, writes, inputs, playbook, now).await?;
        for (position, accepted) in positions.into_iter().zip(accepted) {
            events.push((position, accepted.event));
            slots[position] = Some(Ok(if accepted.merged {
                Submitted::Merged(accepted.lead)
            } else {
                Submitted::Accepted(accepted.lead)
            }));
        }
        for (repeat, first) in repeats {
            slots[repeat] = Some(match &slots[first] {
                Some(Ok(answer)) => Ok(answer.clone()),
                _ => Err(IntakeError::IdempotencyConflict),
            });
        }
        for (key, (_, i)) in &claimed {
            if let Some(Ok(answer)) = &slots[*i] {
                let answer = serde_json::to_vec(answer).unwrap_or_default();
                idempotency::store(tx, SUBMIT_SCOPE, key, &answer).await?;
            }
        }
        events.sort_by_key(|(i, _)| *i);
        let results = slots
            .into_iter()
            .map(|slot| slot.unwrap_or(Err(IntakeError::Invalid(Vec::new()))))
            .collect();
        Ok((results, events))
    }

    /// Creates a lead for each input, or merges it into its contact's lead if that was first
    /// received within the duplicate window (several inputs of one contact in one batch: the
    /// first decides, the rest merge). Results are in input order. Contacts are claimed in
    /// `tx`; the leads, touches and flags are pushed to `writes`, which the caller runs.
    async fn accept_all(
        &self,
        tx: &mut Tx,
        writes: &mut Batch<'static>,
        inputs: Vec<LeadInput>,
        playbook: &IntakePlaybook,
        now: Timestamp,
    ) -> Result<Vec<Accepted>, IntakeError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // Validation guarantees a contact channel, hence a key.
        let contact_keys: Vec<String> = inputs
            .iter()
            .map(|input| {
                ContactKey::of(&input.contact)
                    .map(|k| k.as_storage_key())
                    .unwrap_or_default()
            })
            .collect();
        let channel_keys: Vec<Vec<String>> = inputs
            .iter()
            .map(|input| {
                suppression_keys(&input.contact)
                    .iter()
                    .map(ContactKey::as_storage_key)
                    .collect()
            })
            .collect();
        // The first input of each contact claims its row with a fresh candidate id; every other
        // channel of every input is locked too, so an opt-out by any channel is seen.
        let mut claims: Vec<(String, Option<LeadId>)> = Vec::new();
        let mut claimed: HashSet<&str> = HashSet::new();
        for key in &contact_keys {
            if claimed.insert(key) {
                claims.push((key.clone(), Some(LeadId::new())));
            }
        }
        for key in channel_keys.iter().flatten() {
            if claimed.insert(key) {
                claims.push((key.clone(), None));
            }
        }
        let current = Store::claim_contacts(tx, &claims, now).await?;
        let do_not_contact: Vec<bool> = inputs
            .iter()
            .zip(&channel_keys)
            .map(|(input, keys)| {
                input.consent.basis == ConsentBasis::None
                    || keys
                        .iter()
                        .any(|k| current.get(k).is_some_and(|row| row.suppressed))
            })
            .collect();

        // Where each contact's inputs go: a lead created here, or an existing one.
        let mut target: HashMap<&str, (LeadId, bool)> = HashMap::new();
        for (key, candidate) in &claims {
            let Some(candidate) = candidate else { continue };
            let row = current.get(key);
            let existing = match row {
                Some(ContactRow {
                    lead_id: Some(lead_id),
                    first_received_at,
                    ..
                }) if lead_id != candidate => Some((*lead_id, *first_received_at)),
                _ => None,
            };
            // A lead-less row (made by an opt-out) is taken over like a missing one.
            let unclaimed = matches!(row, Some(ContactRow { lead_id: None, .. }));
            match existing {
                Some((lead_id, first_received_at))
                    if now.duration_since(first_received_at) <= playbook.duplicate_window() =>
                {
                    target.insert(key, (lead_id, false));
                }
                Some(_) => {
                    Store::repoint_contact(tx, key, *candidate, now).await?;
                    target.insert(key, (*candidate, true));
                }
                None => {
                    if unclaimed {
                        Store::repoint_contact(tx, key, *candidate, now).await?;
                    }
                    target.insert(key, (*candidate, true));
                }
            }
        }

        let mut new_leads: Vec<(Lead, usize)> = Vec::new();
        let mut touches: Vec<(LeadId, Touch, usize)> = Vec::new();
        let mut flagged: Vec<LeadId> = Vec::new();
        // Leads created here, by id: where they are in `new_leads`.
        let mut created: HashMap<LeadId, usize> = HashMap::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let (lead_id, is_new) = target[contact_keys[i].as_str()];
            if is_new && !created.contains_key(&lead_id) {
                created.insert(lead_id, new_leads.len());
                let lead = Lead {
                    id: lead_id,
                    completeness_score: completeness_score(&input, playbook),
                    icp_tier: icp_tier(&input, playbook),
                    input,
                    received_at: now,
                    do_not_contact: do_not_contact[i],
                    touches: Vec::new(),
                };
                new_leads.push((lead, i));
            } else {
                if do_not_contact[i] {
                    flagged.push(lead_id);
                }
                touches.push((
                    lead_id,
                    Touch {
                        id: Uuid::now_v7(),
                        received_at: now,
                        input,
                    },
                    i,
                ));
            }
        }
        // A merge answers with the lead as it will stand, touches and flag included: stored
        // leads are read before the writes (their contact rows are locked, so they cannot
        // change meanwhile), leads of this batch are taken as built.
        flagged.sort();
        flagged.dedup();
        let mut merged_leads: HashMap<LeadId, Lead> = HashMap::new();
        let mut stored_flagged = Vec::new();
        for lead_id in &flagged {
            match created.get(lead_id) {
                Some(&n) => new_leads[n].0.do_not_contact = true,
                None => stored_flagged.push(*lead_id),
            }
        }
        for (lead_id, touch, _) in &touches {
            if !merged_leads.contains_key(lead_id) {
                let lead = match created.get(lead_id) {
                    Some(&n) => new_leads[n].0.clone(),
                    None => Store::lead_in(tx, *lead_id)
                        .await?
                        .ok_or(IntakeError::LeadNotFound)?,
                };
                merged_leads.insert(*lead_id, lead);
            }
            if let Some(lead) = merged_leads.get_mut(lead_id) {
                lead.touches.push(touch.clone());
                lead.do_not_contact |= flagged.binary_search(lead_id).is_ok();
            }
        }
        for lead in merged_leads.values_mut() {
            lead.touches.sort_by_key(|t| (t.received_at, t.id));
        }

        let rows: Vec<(&Lead, &str)> = new_leads
            .iter()
            .map(|(l, i)| (l, contact_keys[*i].as_str()))
            .collect();
        Store::insert_leads(writes, &rows)?;
        let touch_rows: Vec<(LeadId, &Touch)> = touches.iter().map(|(id, t, _)| (*id, t)).collect();
        Store::insert_touches(writes, &touch_rows)?;
        Store::flag_leads_do_not_contact(writes, &stored_flagged);

        let mut out: Vec<Option<Accepted>> = (0..contact_keys.len()).map(|_| None).collect();
        for (lead, i) in new_leads {
            let event = pb::LeadAccepted {
                lead: Some(lead_to_proto(&lead)),
                ..Default::default()
            };
            let event = NewEvent::new(lead.id.to_string(), &event, now);
            out[i] = Some(Accepted {
                lead,
                merged: false,
                event,
            });
        }
        for (lead_id, touch, i) in touches {
            let lead = merged_leads
                .get(&lead_id)
                .cloned()
                .ok_or(IntakeError::LeadNotFound)?;
            let event = pb::LeadMerged {
                lead_id: lead_id.to_string(),
                touch: Some(touch_to_proto(&touch)),
                do_not_contact: lead.do_not_contact,
            };
            let event = NewEvent::new(lead_id.to_string(), &event, now);
            out[i] = Some(Accepted {
                lead,
                merged: true,
                event,
            });
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// A lead with its touches.
    pub async fn lead(&self, id: LeadId) -> Result<Lead, IntakeError> {
        self.store.lead(id).await?.ok_or(IntakeError::LeadNotFound)
    }

    /// Of `ids`, the known leads and whether each is do-not-contact as of now.
    pub async fn contactability(&self, ids: &[LeadId]) -> Result<Vec<(LeadId, bool)>, IntakeError> {
        Ok(self.store.contactability(ids).await?)
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
        let now = self.clock.now_micros();
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
        // What it failed before review, for the accepted lead's event.
        let failed_codes: Vec<String> = rejection.problems.iter().map(|p| p.code.clone()).collect();
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
                    let mut writes = Batch::default();
                    let mut accepted = self
                        .accept_all(
                            &mut tx,
                            &mut writes,
                            vec![rejection.input.clone()],
                            &playbook,
                            now,
                        )
                        .await?;
                    writes.execute(&mut tx).await?;
                    let Some(accepted) = accepted.pop() else {
                        return Err(IntakeError::LeadNotFound);
                    };
                    if accepted.merged {
                        events.push(accepted.event);
                    } else {
                        // The lead came from the review queue: say which submission it was.
                        let event = pb::LeadAccepted {
                            lead: Some(lead_to_proto(&accepted.lead)),
                            from_rejection_id: rejection.id.to_string(),
                            rejection_codes: failed_codes,
                        };
                        events.push(NewEvent::new(accepted.lead.id.to_string(), &event, now));
                    }
                    rejection.state = RejectionState::Accepted;
                    rejection.lead_id = Some(accepted.lead.id);
                    Some(if accepted.merged {
                        Submitted::Merged(accepted.lead)
                    } else {
                        Submitted::Accepted(accepted.lead)
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
        let (contact, keys) = contact_and_keys(email, phone)?;
        let now = self.clock.now_micros();
        let mut tx = self.store.db().begin().await?;
        // Mark the contact rows first: it locks them, so a concurrent submission of this
        // contact either commits before (and is flagged below) or sees the mark.
        Store::suppress_contacts(&mut tx, &keys).await?;
        let newly_suppressed = Store::suppress(&mut tx, &keys, reason, now).await?;
        let lead_ids = Store::flag_do_not_contact(&mut tx, &contact.email, &contact.phone).await?;
        if newly_suppressed {
            let event = pb::ContactOptedOut {
                email: contact.email.clone().into(),
                phone: contact.phone.clone().into(),
                lead_ids: lead_ids.iter().map(ToString::to_string).collect(),
                reason: reason.to_owned(),
            };
            // The aggregate is the contact; its id must not carry the address itself.
            let aggregate = opt_out_aggregate(&keys);
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

impl Intake {
    /// Erases a person's data from intake (tables, event log, idempotency records), records
    /// the erasure and announces it with ids only. See `EraseContact` in the proto.
    pub async fn erase_contact(
        &self,
        email: &str,
        phone: &str,
        reference: &str,
    ) -> Result<Erased, IntakeError> {
        let reference = reference.trim();
        if reference.is_empty() || reference.chars().count() > 128 {
            return Err(IntakeError::Invalid(vec![Problem::new(
                "reference",
                "REFERENCE_REQUIRED",
                "give the request's reference (e.g. a ticket id), at most 128 characters",
            )]));
        }
        let (contact, keys) = contact_and_keys(email, phone)?;
        let now = self.clock.now_micros();
        let backend = self.store.db().backend();
        let mut tx = self.store.db().begin().await?;
        // A submission of this person committing at the same moment is a new lead the person
        // sent after asking to be erased; it is not part of this erasure.
        let erased = Store::erase_contact(&mut tx, backend, &contact.email, &contact.phone).await?;
        let mut aggregates: Vec<String> = erased
            .lead_ids
            .iter()
            .map(ToString::to_string)
            .chain(erased.rejection_ids.iter().map(ToString::to_string))
            .collect();
        aggregates.push(opt_out_aggregate(&keys));
        let events_rewritten =
            runtime::erasure::rewrite_events(&mut tx, &aggregates, crate::convert::redact_event)
                .await?;
        runtime::erasure::forget_idempotent_responses(
            &mut tx,
            backend,
            SUBMIT_SCOPE,
            &erased.values.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await?;
        let erasure_id = Uuid::now_v7();
        Store::record_erasure(
            &mut tx,
            erasure_id,
            reference,
            &erased,
            events_rewritten,
            now,
        )
        .await?;
        let event = pb::ContactErased {
            erasure_id: erasure_id.to_string(),
            lead_ids: erased.lead_ids.iter().map(ToString::to_string).collect(),
        };
        self.log
            .append(
                &mut tx,
                &[NewEvent::new(erasure_id.to_string(), &event, now)],
            )
            .await?;
        self.log.commit(tx).await?;
        Ok(Erased {
            erasure_id,
            lead_ids: erased.lead_ids,
            rejection_ids: erased.rejection_ids,
            events_rewritten,
        })
    }
}

/// The aggregate of a contact's opt-out events: derived from its keys, so it never carries
/// the address itself.
fn opt_out_aggregate(keys: &[String]) -> String {
    format!(
        "contact:{}",
        hex::encode(&Sha256::digest(keys.join("|").as_bytes())[..12])
    )
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
/// The normalised contact an opt-out or erasure names, and its storage keys.
fn contact_and_keys(
    email: &str,
    phone: &str,
) -> Result<(crate::domain::Contact, Vec<String>), IntakeError> {
    let contact = normalize_contact_for_opt_out(email, phone)?;
    let keys = suppression_keys(&contact)
        .iter()
        .map(ContactKey::as_storage_key)
        .collect();
    Ok((contact, keys))
}

fn normalize_contact_for_opt_out(
    email: &str,
    phone: &str,
) -> Result<crate::domain::Contact, IntakeError> {
    let mut input = LeadInput::default();
    *input.contact.email = email.to_owned();
    *input.contact.phone = phone.to_owned();
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
