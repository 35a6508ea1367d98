//! Proof's use cases, each one transaction holding the belief state, its outcome timer, the
//! effectiveness counts it settles and its events: start a lead's belief state from
//! activation's stream, take evidence from followup's (replies, meetings, hand-offs, proof
//! delivered on a follow-up step) and from people (objections, call notes), recommend the next
//! proof, and learn from each delivery's outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use prost::Message;
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::followup::v1 as fpb;
use rand::SeedableRng;
use rand::rngs::StdRng;
use runtime::consumer::{EventHandler, HandlerError};
use runtime::idempotency::{self, Claim};
use runtime::playbook::Playbook;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{DbError, EventLog, SharedClock, Tx};
use uuid::Uuid;

use crate::convert::change_to_event;
use crate::domain::{
    Asset, BeliefState, Change, Checkpoint, Context, Effectiveness, LeadProfile, ProofError,
    Recommendation, Sentiment, Signal, Stage, check_upsert, merge_catalog,
};
use crate::playbook::ProofPlaybook;
use crate::store::Store;

/// Idempotency scope of `NextProof`, keyed by the caller's transport key.
pub const NEXT_PROOF_SCOPE: &str = "NextProof";
/// How long a `NextProof` answer is kept for the caller's retries: far longer than any retry
/// takes, short enough that the records (one per call) stay few.
pub const NEXT_PROOF_KEEP: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Timer kind of a lead's next delivery outcome to settle.
pub const OUTCOME_TIMER: &str = "proof_outcome";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no belief state for this lead")]
    NotFound,
    #[error("the idempotency key was already used for another request")]
    IdempotencyConflict,
    #[error(transparent)]
    Refused(#[from] ProofError),
    #[error(transparent)]
    Storage(#[from] DbError),
}

/// Proof's application service.
#[derive(Debug, Clone)]
pub struct Proof {
    store: Store,
    log: EventLog,
    timers: Timers,
    playbook: Playbook<ProofPlaybook>,
    clock: SharedClock,
    /// Thompson sampling's randomness; seeded from the OS at start.
    rng: Arc<Mutex<StdRng>>,
}

impl Proof {
    pub fn new(
        store: Store,
        log: EventLog,
        timers: Timers,
        playbook: Playbook<ProofPlaybook>,
        clock: SharedClock,
    ) -> Self {
        Self::with_rng(store, log, timers, playbook, clock, StdRng::from_os_rng())
    }

    /// With a given random source (tests seed it).
    pub fn with_rng(
        store: Store,
        log: EventLog,
        timers: Timers,
        playbook: Playbook<ProofPlaybook>,
        clock: SharedClock,
        rng: StdRng,
    ) -> Self {
        Self {
            store,
            log,
            timers,
            playbook,
            clock,
            rng: Arc::new(Mutex::new(rng)),
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now_micros()
    }

    fn backend(&self) -> runtime::Backend {
        self.store.db().backend()
    }

    fn wake(&self) {
        self.log.wake();
        self.timers.wake();
    }

    /// The catalog: the playbook's assets, then those added at run time.
    pub async fn catalog(&self) -> Result<Vec<Asset>, DbError> {
        let playbook = self.playbook.current();
        Ok(merge_catalog(playbook.assets(), self.store.assets().await?))
    }

    /// The catalog with each asset's effectiveness per context.
    pub async fn assets(
        &self,
    ) -> Result<(Vec<Asset>, Vec<(String, Context, Effectiveness)>), DbError> {
        Ok((self.catalog().await?, self.store.effectiveness().await?))
    }

    /// Saves a state after settling the delivery outcomes now decidable (counted once, in the
    /// same transaction), keeps its outcome timer, and appends the events of `changes`.
    async fn persist(
        &self,
        tx: &mut Tx,
        state: &mut BeliefState,
        changes: &[Change],
        now: Timestamp,
    ) -> Result<(), DbError> {
        let playbook = self.playbook.current();
        let outcomes = state.settle_outcomes(now, &playbook);
        Store::record_outcomes(tx, &outcomes).await?;
        Store::save(tx, state).await?;
        let subject = state.lead.to_string();
        match state.next_outcome_due(&playbook) {
            Some(due_at) => {
                let timer = NewTimer {
                    kind: OUTCOME_TIMER.into(),
                    subject: subject.clone(),
                    due_at,
                    payload: Vec::new(),
                };
                Timers::schedule(tx, &timer).await?;
            }
            None => {
                Timers::cancel(tx, OUTCOME_TIMER, &subject).await?;
            }
        }
        let events: Vec<_> = changes
            .iter()
            .filter_map(|change| change_to_event(state.lead, state, change))
            .map(|event| event.to_event(&subject, now))
            .collect();
        self.log.append(tx, &events).await?;
        Ok(())
    }

    /// A lead's state for a change: the stored one, or a new one for a lead proof hears of
    /// first from followup.
    async fn load_or_new(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        profile: LeadProfile,
        now: Timestamp,
    ) -> Result<BeliefState, DbError> {
        Ok(Store::load_for_update(tx, self.backend(), lead)
            .await?
            .unwrap_or_else(|| BeliefState::new(lead, profile, now)))
    }

    /// Applies `signal` to a lead's state inside the caller's transaction.
    async fn signal_in(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        signal: Signal,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mut state = self
            .load_or_new(tx, lead, LeadProfile::default(), now)
            .await?;
        let changes = state.record_signal(signal, now);
        self.persist(tx, &mut state, &changes, now).await
    }

    // -----------------------------------------------------------------------------------
    // Upstream events
    // -----------------------------------------------------------------------------------

    /// Applies one event of activation's or followup's stream.
    pub async fn apply_upstream_event(
        &self,
        tx: &mut Tx,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(payload) = &event.payload else {
            return Ok(());
        };
        let now = self.now();
        let bytes = payload.value.as_slice();
        match payload.type_url.rsplit('/').next().unwrap_or_default() {
            "fairchance.activation.v1.LeadActivated" => {
                let Some(activation) = apb::LeadActivated::decode(bytes)?.activation else {
                    return Ok(());
                };
                let Ok(lead) = activation.lead_id.parse::<Uuid>() else {
                    return Ok(());
                };
                let profile = profile_of(activation.context.as_ref());
                let mut state = self.load_or_new(tx, lead, profile.clone(), now).await?;
                state.update_profile(&profile);
                let changes = state.record_signal(Signal::Activated, now);
                self.persist(tx, &mut state, &changes, now).await?;
            }
            "fairchance.activation.v1.LeadErased" => {
                let erased = apb::LeadErased::decode(bytes)?;
                if let Ok(lead) = erased.lead_id.parse::<Uuid>() {
                    self.lead_erased(tx, lead).await?;
                }
            }
            "fairchance.followup.v1.EngagementRecorded" => {
                let recorded = fpb::EngagementRecorded::decode(bytes)?;
                let Ok(lead) = recorded.lead_id.parse::<Uuid>() else {
                    return Ok(());
                };
                let signal = match fpb::EngagementKind::try_from(recorded.kind) {
                    Ok(fpb::EngagementKind::Reply) => {
                        match fpb::ReplySentiment::try_from(recorded.sentiment) {
                            Ok(fpb::ReplySentiment::Positive) => Some(Sentiment::Positive),
                            Ok(fpb::ReplySentiment::Neutral) => Some(Sentiment::Neutral),
                            Ok(fpb::ReplySentiment::Negative) => Some(Sentiment::Negative),
                            _ => None,
                        }
                        .map(|sentiment| Signal::Reply { sentiment })
                    }
                    Ok(fpb::EngagementKind::MeetingBooked) => Some(Signal::MeetingBooked),
                    _ => None,
                };
                if let Some(signal) = signal {
                    self.signal_in(tx, lead, signal, now).await?;
                }
            }
            "fairchance.followup.v1.CadenceStopped" => {
                let stopped = fpb::CadenceStopped::decode(bytes)?;
                let Ok(lead) = stopped.lead_id.parse::<Uuid>() else {
                    return Ok(());
                };
                // The reasons that hand the lead on to sales.
                if matches!(
                    stopped.reason.as_str(),
                    "positive_reply" | "neutral_reply" | "meeting_booked"
                ) {
                    self.signal_in(tx, lead, Signal::HandedOn, now).await?;
                }
            }
            "fairchance.followup.v1.TaskCompleted" => {
                let completed = fpb::TaskCompleted::decode(bytes)?;
                self.proof_step_done(tx, completed.task, now).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Erases what the person behind a lead said from proof: objections' verbatims in the
    /// belief state and in every stored event, and the quotes of them in recommendations'
    /// reasons. Taken from activation's `LeadErased`, which follows the lead's activation in
    /// that stream; objections are recorded by people, so one recorded after the erasure is
    /// new data, not a copy.
    async fn lead_erased(&self, tx: &mut Tx, lead: Uuid) -> Result<(), DbError> {
        let Some(mut state) = Store::load_for_update(tx, self.backend(), lead).await? else {
            return Ok(());
        };
        let quotes = state.erase_personal_data();
        Store::save(tx, &state).await?;
        runtime::erasure::rewrite_events(tx, &[lead.to_string()], |type_name, payload| {
            crate::convert::redact_event(type_name, payload, &quotes)
        })
        .await?;
        Ok(())
    }

    /// A follow-up proof step done: the asset it carried was delivered.
    async fn proof_step_done(
        &self,
        tx: &mut Tx,
        task: Option<fpb::Task>,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let Some(task) = task else { return Ok(()) };
        let Some(step) = task.step else { return Ok(()) };
        let delivered = matches!(
            fpb::TaskOutcome::try_from(step.outcome),
            Ok(fpb::TaskOutcome::Done | fpb::TaskOutcome::Connected)
        );
        if step.proof_asset_id.is_empty() || !delivered {
            return Ok(());
        }
        let Ok(lead) = task.lead_id.parse::<Uuid>() else {
            return Ok(());
        };
        let Some(asset) = self
            .catalog()
            .await?
            .into_iter()
            .find(|a| a.id == step.proof_asset_id)
        else {
            tracing::warn!(asset = %step.proof_asset_id, "delivered asset not in the catalog; not counted");
            return Ok(());
        };
        let at = step
            .completed_at
            .as_ref()
            .and_then(runtime::grpc::from_proto_timestamp)
            .unwrap_or(now);
        let mut state = self
            .load_or_new(tx, lead, LeadProfile::default(), now)
            .await?;
        let changes = state.record_delivery(&asset, at)?;
        self.persist(tx, &mut state, &changes, now).await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // API
    // -----------------------------------------------------------------------------------

    /// A lead's belief state.
    pub async fn get(&self, lead: Uuid) -> Result<BeliefState, ServiceError> {
        self.store.load(lead).await?.ok_or(ServiceError::NotFound)
    }

    /// Runs `op` on a lead's state in one transaction and persists what it changed.
    async fn change<F>(&self, lead: Uuid, create: bool, op: F) -> Result<BeliefState, ServiceError>
    where
        F: FnOnce(&mut BeliefState, Timestamp) -> Result<Vec<Change>, ServiceError> + Send,
    {
        let mut tx = self.store.db().begin().await?;
        let state = self.change_in(&mut tx, lead, create, op).await?;
        tx.commit().await.map_err(DbError::from)?;
        self.wake();
        Ok(state)
    }

    /// [`Proof::change`] inside the caller's transaction.
    async fn change_in<F>(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        create: bool,
        op: F,
    ) -> Result<BeliefState, ServiceError>
    where
        F: FnOnce(&mut BeliefState, Timestamp) -> Result<Vec<Change>, ServiceError> + Send,
    {
        let now = self.now();
        let mut state = match Store::load_for_update(tx, self.backend(), lead).await? {
            Some(state) => state,
            None if create => BeliefState::new(lead, LeadProfile::default(), now),
            None => return Err(ServiceError::NotFound),
        };
        let changes = op(&mut state, now)?;
        self.persist(tx, &mut state, &changes, now).await?;
        Ok(state)
    }

    /// The proof for where the lead is now; a recommendation is logged as an event.
    ///
    /// With an idempotency key (the caller's transport sends one per call, the same on each
    /// retry), a retry gets the first answer back and logs nothing again: Thompson sampling
    /// would otherwise pick afresh, and one step would count two recommendations.
    pub async fn next_proof(
        &self,
        lead: Uuid,
        idempotency_key: Option<&str>,
    ) -> Result<Recommendation, ServiceError> {
        let catalog = self.catalog().await?;
        let scores: HashMap<(String, Context), Effectiveness> = self
            .store
            .effectiveness()
            .await?
            .into_iter()
            .map(|(asset, context, e)| ((asset, context), e))
            .collect();
        let playbook = self.playbook.current();
        let mut tx = self.store.db().begin().await?;
        if let Some(key) = idempotency_key {
            let hash = idempotency::request_hash(lead.as_bytes());
            match idempotency::claim(&mut tx, NEXT_PROOF_SCOPE, key, &hash, self.now()).await? {
                Claim::New => {}
                Claim::Replay(answer) => {
                    return serde_json::from_slice(&answer)
                        .map_err(|e| ServiceError::Storage(DbError::corrupt(e)));
                }
                Claim::Conflict => return Err(ServiceError::IdempotencyConflict),
            }
        }
        let mut recommendation = None;
        self.change_in(&mut tx, lead, false, |state, now| {
            let lookup = |asset: &str, stage: Stage, checkpoint: Option<Checkpoint>| {
                scores
                    .get(&(asset.to_owned(), Context { stage, checkpoint }))
                    .copied()
                    .unwrap_or_default()
            };
            let mut rng = self
                .rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let chosen = state.next_proof(&catalog, lookup, &playbook, now, &mut *rng);
            let changes = chosen.change().into_iter().collect();
            recommendation = Some(chosen);
            Ok(changes)
        })
        .await?;
        let recommendation = recommendation.ok_or(ServiceError::NotFound)?;
        if let Some(key) = idempotency_key {
            let answer = serde_json::to_vec(&recommendation)
                .map_err(|e| ServiceError::Storage(DbError::corrupt(e)))?;
            idempotency::store(&mut tx, NEXT_PROOF_SCOPE, key, &answer).await?;
        }
        tx.commit().await.map_err(DbError::from)?;
        self.wake();
        Ok(recommendation)
    }

    pub async fn record_objection(
        &self,
        lead: Uuid,
        checkpoint: Checkpoint,
        verbatim: String,
        at: Option<Timestamp>,
    ) -> Result<BeliefState, ServiceError> {
        self.change(lead, true, |state, now| {
            Ok(state.record_objection(checkpoint, &verbatim, at.unwrap_or(now).min(now)))
        })
        .await
    }

    pub async fn record_signal(
        &self,
        lead: Uuid,
        signal: Signal,
        at: Option<Timestamp>,
    ) -> Result<BeliefState, ServiceError> {
        self.change(lead, true, |state, now| {
            Ok(state.record_signal(signal, at.unwrap_or(now).min(now)))
        })
        .await
    }

    /// Records a delivery of a catalog asset.
    pub async fn record_delivered(
        &self,
        lead: Uuid,
        asset_id: &str,
        at: Option<Timestamp>,
    ) -> Result<BeliefState, ServiceError> {
        let asset = self
            .catalog()
            .await?
            .into_iter()
            .find(|a| a.id == asset_id)
            .ok_or_else(|| ProofError::UnknownAsset(asset_id.to_owned()))?;
        self.change(lead, true, |state, now| {
            Ok(state.record_delivery(&asset, at.unwrap_or(now).min(now))?)
        })
        .await
    }

    /// The asset with this id in the catalog, for signals that name one.
    pub async fn asset(&self, asset_id: &str) -> Result<Asset, ServiceError> {
        self.catalog()
            .await?
            .into_iter()
            .find(|a| a.id == asset_id)
            .ok_or_else(|| ProofError::UnknownAsset(asset_id.to_owned()).into())
    }

    /// Adds or changes a run-time asset; true when new.
    pub async fn upsert_asset(&self, asset: &Asset) -> Result<bool, ServiceError> {
        check_upsert(asset, &self.playbook.current().assets())?;
        Ok(self.store.upsert_asset(asset).await?)
    }

    /// Settles what is due for one lead.
    async fn settle(&self, tx: &mut Tx, lead: Uuid, now: Timestamp) -> Result<(), DbError> {
        let Some(mut state) = Store::load_for_update(tx, self.backend(), lead).await? else {
            return Ok(());
        };
        self.persist(tx, &mut state, &[], now).await
    }
}

/// A lead's profile from its context packet's attributes (`segment`, `industry`,
/// `persona`), falling back to the job title for the persona.
fn profile_of(context: Option<&apb::ContextPacket>) -> LeadProfile {
    let Some(context) = context else {
        return LeadProfile::default();
    };
    let attribute = |key: &str| context.attributes.get(key).map_or("", String::as_str);
    let persona = match attribute("persona") {
        "" => context.title.as_str(),
        persona => persona,
    };
    LeadProfile::new(attribute("segment"), attribute("industry"), persona)
}

impl EventHandler for Proof {
    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        self.apply_upstream_event(tx, event).await
    }

    fn after_commit(&self) {
        self.wake();
    }
}

impl TimerHandler for Proof {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        match timer.kind.as_str() {
            OUTCOME_TIMER => self.settle(tx, timer.subject.parse()?, self.now()).await?,
            other => tracing::warn!(kind = other, "unknown timer kind; dropped"),
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.wake();
    }
}
