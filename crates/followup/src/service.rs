//! Followup's use cases, each one transaction holding the enrolment, its timer, its open
//! tasks and its events: enrol a lead from activation's stream, fire what is due, record
//! what the owner did and what the lead did, pause and resume, and stop everything for a
//! contact who opted out.
//!
//! Each enrolment keeps exactly one durable timer, at [`Enrollment::wake_at`]. Before a batch
//! of due timers fires, intake is asked which of their leads are do-not-contact as of now
//! (`CheckContactable`): an opt-out accepted anywhere before a step's due time means that step
//! never fires, even if its event has not reached followup yet. When intake cannot answer,
//! nothing fires until it can.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prost::Message;
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::followup::v1 as pb;
use proto::intake::v1 as ipb;
use proto::proof::v1 as ppb;
use runtime::client::{CallOptions, Client, Method};
use runtime::consumer::{EventHandler, HandlerError};
use runtime::db::Batch;
use runtime::grpc::to_proto_timestamp;
use runtime::metrics::prometheus_client::metrics::counter::Counter;
use runtime::metrics::prometheus_client::metrics::family::Family;
use runtime::playbook::Playbook;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{DbError, EventLog, NewEvent, SharedClock, Tx};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{
    change_text, change_to_event, engagement_to_proto, facts_from_activation, plan_to_proto,
};
use crate::domain::{Cause, Change, Engagement, Enrollment, FollowupError, ProofPick, TaskOutcome};
use crate::playbook::FollowupPlaybook;
use crate::store::{ContactKeys, Store, Writes, email_key, phone_key};

/// Timer kind of an enrolment's next wake-up (a step, a pause's end, a momentum check).
pub const WAKE_TIMER: &str = "followup_wake";
/// Timer kind of an opt-out recorded here that intake has not confirmed yet.
pub const OPT_OUT_TIMER: &str = "propagate_opt_out";
/// How long intake has to answer a contactability check or an opt-out.
const INTAKE_DEADLINE: Duration = Duration::from_secs(3);
/// How long proof has to pick an asset before the step goes out with its default template.
const PROOF_DEADLINE: Duration = Duration::from_secs(1);

/// Reads only: repeated freely.
const CHECK_CONTACTABLE: Method<ipb::CheckContactableRequest, ipb::CheckContactableResponse> =
    Method::idempotent("/fairchance.intake.v1.IntakeService/CheckContactable");
/// Suppressing a contact twice suppresses it once (intake announces it once).
const OPT_OUT: Method<ipb::OptOutRequest, ipb::OptOutResponse> =
    Method::idempotent("/fairchance.intake.v1.IntakeService/OptOut");
/// Proof keeps each answer under the call's idempotency key (named after the step, see
/// `ask_proof`), so a repeat gets the same asset back and logs no second recommendation.
const NEXT_PROOF: Method<ppb::NextProofRequest, ppb::NextProofResponse> =
    Method::idempotent("/fairchance.proof.v1.ProofService/NextProof");

/// Followup's instruments in the process registry (served by `runtime::metrics`). Labels
/// are playbook names and fixed lists only, nothing about the lead.
struct Metrics {
    /// By cadence and channel.
    steps_fired: Family<[(&'static str, String); 2], Counter>,
    /// By cause.
    deferrals: Family<[(&'static str, &'static str); 1], Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics {
        steps_fired: Family::default(),
        deferrals: Family::default(),
    };
    runtime::metrics::register(
        "followup_steps_fired",
        "Cadence steps that became tasks for their owner, by cadence and channel",
        metrics.steps_fired.clone(),
    );
    runtime::metrics::register(
        "followup_deferrals",
        "Steps deferred instead of fired, by cause (frequency_cap, ...)",
        metrics.deferrals.clone(),
    );
    metrics
});

/// The `cause` label of a deferral.
fn cause_label(cause: Cause) -> &'static str {
    match cause {
        Cause::FrequencyCap => "frequency_cap",
        Cause::AttemptCap { .. } => "attempt_cap",
        Cause::ChannelBlocked { .. } => "channel_blocked",
        Cause::Unreachable { .. } => "unreachable",
        Cause::Silence { .. } => "silence",
        Cause::Unanswered { .. } => "unanswered",
        Cause::NoChannelLeft => "no_channel_left",
        Cause::CadenceFinished => "cadence_finished",
        Cause::HardBounce => "hard_bounce",
        Cause::WrongNumber => "wrong_number",
    }
}

/// Counts what `changes` did, once the transaction holding them commits.
fn record_metrics(changes: &[Change]) {
    let mut fired = Vec::new();
    let mut deferred = Vec::new();
    for change in changes {
        match change {
            Change::FollowUpDue { cadence, task, .. } => {
                fired.push([
                    ("cadence", cadence.clone()),
                    ("channel", task.channel.as_str().to_owned()),
                ]);
            }
            Change::StepDeferred { cause, .. } => deferred.push([("cause", cause_label(*cause))]),
            _ => {}
        }
    }
    if fired.is_empty() && deferred.is_empty() {
        return;
    }
    runtime::metrics::on_commit(move || {
        for labels in &fired {
            METRICS.steps_fired.get_or_create(labels).inc();
        }
        for labels in &deferred {
            METRICS.deferrals.get_or_create(labels).inc();
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no follow-up plan for this lead")]
    NotFound,
    #[error("task belongs to {owner:?}, the lead's current owner")]
    NotOwner { owner: String },
    #[error(transparent)]
    Refused(#[from] FollowupError),
    #[error(transparent)]
    Storage(#[from] DbError),
}

/// A lead's next wake-up: when, and the trace context it continues.
type Wake = (Timestamp, BTreeMap<String, String>);

/// What one transaction's use cases write, gathered so that it goes out with one multi-row
/// statement per table.
#[derive(Default)]
struct Effects {
    rows: Writes,
    /// Each lead's wake-up timer, or `None` to cancel it.
    wakes: HashMap<String, Option<Wake>>,
    /// Events, each with the trace context current when its step fired.
    events: Vec<(NewEvent, BTreeMap<String, String>)>,
}

impl Effects {
    /// Writes everything gathered: one statement on PostgreSQL (see [`Batch`]), and forgets it.
    async fn write(&mut self, tx: &mut Tx, log: &EventLog) -> Result<(), DbError> {
        let mut schedule = Vec::new();
        let mut cancel = Vec::new();
        for (subject, wake) in self.wakes.drain() {
            match wake {
                Some((due_at, trace)) => schedule.push((
                    NewTimer {
                        kind: WAKE_TIMER.into(),
                        subject,
                        due_at,
                        payload: Vec::new(),
                    },
                    trace,
                )),
                None => cancel.push(subject),
            }
        }
        let mut batch = Batch::default();
        self.rows.push_into(&mut batch);
        Timers::schedule_into(&mut batch, &schedule);
        Timers::cancel_into(&mut batch, WAKE_TIMER, &cancel);
        log.append_traced_into(&mut batch, &self.events);
        batch.execute(tx).await?;
        drop(batch);
        self.rows.clear();
        self.events.clear();
        Ok(())
    }
}

/// The due timers of one transaction: their enrolments (locked), which of their contacts opted
/// out and their recent touches, loaded together before they fire, and what their steps
/// write, written together before the commit.
#[derive(Default)]
struct Dispatch {
    enrollments: HashMap<Uuid, (Enrollment, ContactKeys, Vec<u8>)>,
    opted_out: HashSet<String>,
    /// By contact key: touches since the frequency window began, oldest first, including the
    /// ones of steps fired earlier in the same transaction.
    touches: HashMap<String, Vec<Timestamp>>,
    effects: Effects,
}

/// Counts only: enrolments and events hold personal data.
impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("enrollments", &self.enrollments.len())
            .field("writes", &self.effects.rows)
            .field("events", &self.effects.events.len())
            .finish()
    }
}

impl Dispatch {
    /// Loads what the steps of `leads` need, locking their enrolments first so an opt-out
    /// being applied to one of them commits before its suppression is read.
    async fn load(
        tx: &mut Tx,
        backend: runtime::Backend,
        leads: &[Uuid],
        since: Timestamp,
    ) -> Result<Self, DbError> {
        let enrollments = Store::load_all_for_update(tx, backend, leads).await?;
        let keys: Vec<String> = enrollments
            .values()
            .flat_map(|(_, keys, _)| keys.all().map(str::to_owned))
            .collect();
        let contacts: Vec<String> = enrollments
            .values()
            .map(|(_, keys, _)| keys.contact.as_str().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        let (opted_out, touches) = if keys.is_empty() {
            Default::default()
        } else {
            Store::lock_contacts(tx, backend, &contacts).await?;
            (
                Store::opted_out_among(tx, &keys).await?,
                Store::touches_of(tx, &contacts, since).await?,
            )
        };
        Ok(Self {
            enrollments,
            opted_out,
            touches,
            effects: Effects::default(),
        })
    }
}

/// An opt-out to hand to intake, durable until intake took it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingOptOut {
    email: Option<String>,
    phone: Option<String>,
    reason: String,
}

/// Followup's application service.
#[derive(Debug, Clone)]
pub struct Followup {
    store: Store,
    log: EventLog,
    timers: Timers,
    playbook: Playbook<FollowupPlaybook>,
    clock: SharedClock,
    intake: Client,
    /// Where proof steps ask for their asset; none when no proof service is configured.
    proof: Option<Client>,
    /// Leads of the batch being fired that intake says are do-not-contact.
    do_not_contact: Arc<Mutex<HashSet<Uuid>>>,
    /// The timers of the transaction being fired (between `load` and `flush`). Like
    /// `do_not_contact`, it belongs to one scheduler: each gets its own [`Followup::scheduler`].
    dispatch: Arc<Mutex<Option<Dispatch>>>,
}

impl Followup {
    /// `intake` is where contactability is checked and opt-outs are forwarded; proof steps
    /// ask `proof` which asset to send. Clients connect lazily, so followup starts while the
    /// others are still coming up.
    pub fn new(
        store: Store,
        log: EventLog,
        timers: Timers,
        playbook: Playbook<FollowupPlaybook>,
        clock: SharedClock,
        intake: Client,
        proof: Option<Client>,
    ) -> Self {
        Self {
            store,
            log,
            timers,
            playbook,
            clock,
            intake,
            proof,
            do_not_contact: Arc::default(),
            dispatch: Arc::default(),
        }
    }

    /// The same service with its own state for firing timers, for one more scheduler (see
    /// [`Timers::spawn`]).
    pub fn scheduler(&self) -> Self {
        Self {
            do_not_contact: Arc::default(),
            dispatch: Arc::default(),
            ..self.clone()
        }
    }

    /// The proof service's pick for a lead's proof step; `None` (the step goes out with the
    /// cadence's default template and says so) when it has none or does not answer in time.
    ///
    /// `step` names the step in the call's idempotency key, the same on every attempt.
    async fn ask_proof(&self, lead: Uuid, step: &str) -> Option<ProofPick> {
        let proof = self.proof.as_ref()?;
        let answer = proof
            .unary_with(
                &NEXT_PROOF,
                ppb::NextProofRequest {
                    lead_id: lead.to_string(),
                },
                CallOptions::deadline(PROOF_DEADLINE).with_key(format!("followup:{lead}:{step}")),
            )
            .await;
        match answer {
            Ok(answer) => {
                let asset = answer
                    .asset
                    .filter(|_| answer.verdict == ppb::Verdict::Recommended as i32)?;
                Some(ProofPick {
                    asset_id: asset.asset_id,
                    note: Some(answer.reason).filter(|r| !r.is_empty()),
                })
            }
            Err(status) => {
                tracing::warn!(%lead, code = ?status.code(), "proof service did not answer; the step uses the default template");
                None
            }
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn playbook(&self) -> Arc<FollowupPlaybook> {
        self.playbook.current()
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

    /// Saves an enrolment, keeps its one timer at its next wake-up, records its touches and
    /// opt-outs, and appends the events of `changes`.
    async fn persist(
        &self,
        tx: &mut Tx,
        enrollment: &Enrollment,
        keys: &ContactKeys,
        context: &[u8],
        changes: &[Change],
        now: Timestamp,
    ) -> Result<(), DbError> {
        self.persist_with(tx, enrollment, keys, context, changes, Vec::new(), now)
            .await
    }

    /// [`Followup::persist`], with events of the service's own appended after the changes'.
    #[allow(clippy::too_many_arguments)]
    async fn persist_with(
        &self,
        tx: &mut Tx,
        enrollment: &Enrollment,
        keys: &ContactKeys,
        context: &[u8],
        changes: &[Change],
        extra: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mut effects = Effects::default();
        self.stage(
            tx,
            &mut effects,
            enrollment,
            keys,
            context,
            changes,
            extra,
            now,
        )
        .await?;
        effects.write(tx, &self.log).await
    }

    /// [`Followup::persist_with`], with the enrolment, its timer, its touches and its events
    /// added to `effects` to be written later (opt-outs, rare, are recorded at once).
    #[allow(clippy::too_many_arguments)]
    async fn stage(
        &self,
        tx: &mut Tx,
        effects: &mut Effects,
        enrollment: &Enrollment,
        keys: &ContactKeys,
        context: &[u8],
        changes: &[Change],
        extra: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let playbook = self.playbook.current();
        // Captured now, while the step's own span is current, not when the events and the
        // next wake-up are written.
        let trace = runtime::telemetry::current_trace_context();
        effects.rows.save(enrollment, keys, context, &trace)?;
        let subject = enrollment.lead.to_string();
        effects.wakes.insert(
            subject.clone(),
            enrollment
                .wake_at(&playbook)
                .map(|due_at| (due_at, trace.clone())),
        );
        let plan = plan_to_proto(enrollment, &enrollment.plan(&playbook, now));
        for change in changes {
            match change {
                Change::FollowUpDue { task, .. } if !keys.contact.is_empty() => {
                    effects
                        .rows
                        .add_touch(&keys.contact, enrollment.lead, task.fired_at);
                }
                Change::OptOutRequired { email, phone } => {
                    self.record_opt_out(tx, email.as_deref(), phone.as_deref(), "followup", now)
                        .await?;
                }
                _ => {}
            }
            if let Some(event) = change_to_event(enrollment, &plan, context, change) {
                effects
                    .events
                    .push((event.to_event(&subject, now), trace.clone()));
            }
        }
        effects
            .events
            .extend(extra.into_iter().map(|event| (event, trace.clone())));
        record_metrics(changes);
        Ok(())
    }

    /// Suppresses a contact here and schedules telling intake, so that every service stops.
    async fn record_opt_out(
        &self,
        tx: &mut Tx,
        email: Option<&str>,
        phone: Option<&str>,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let keys: Vec<String> = email
            .map(email_key)
            .into_iter()
            .chain(phone.map(phone_key))
            .collect();
        if Store::add_opt_out(tx, &keys, now, reason).await? {
            let pending = PendingOptOut {
                email: email.map(str::to_owned),
                phone: phone.map(str::to_owned),
                reason: format!("{reason} (recorded by followup)"),
            };
            let timer = NewTimer {
                kind: OPT_OUT_TIMER.into(),
                subject: keys.join(" "),
                due_at: now,
                payload: serde_json::to_vec(&pending).map_err(DbError::corrupt)?,
            };
            Timers::schedule(tx, &timer).await?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Upstream events
    // -----------------------------------------------------------------------------------

    /// Applies one event of activation's or intake's stream.
    pub async fn apply_upstream_event(
        &self,
        tx: &mut Tx,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(payload) = &event.payload else {
            return Ok(());
        };
        let now = self.now();
        match payload.type_url.rsplit('/').next().unwrap_or_default() {
            "fairchance.activation.v1.LeadActivated" => {
                let activated = apb::LeadActivated::decode(payload.value.as_slice())?;
                if let Some(activation) = activated.activation {
                    self.enroll(tx, &activation, now).await?;
                }
            }
            "fairchance.activation.v1.LeadReassigned" => {
                let moved = apb::LeadReassigned::decode(payload.value.as_slice())?;
                if let Some(activation) = moved.activation {
                    self.reassign(tx, &activation, now).await?;
                }
            }
            "fairchance.activation.v1.EscalationRaised" => {
                let raised = apb::EscalationRaised::decode(payload.value.as_slice())?;
                if let (true, Some(activation)) = (raised.manager_owns, raised.activation) {
                    self.reassign(tx, &activation, now).await?;
                }
            }
            "fairchance.intake.v1.ContactOptedOut" => {
                let opted = ipb::ContactOptedOut::decode(payload.value.as_slice())?;
                self.contact_opted_out(tx, &opted, now).await?;
            }
            "fairchance.activation.v1.LeadErased" => {
                let erased = apb::LeadErased::decode(payload.value.as_slice())?;
                if let Ok(lead) = erased.lead_id.parse::<Uuid>() {
                    self.lead_erased(tx, lead, now).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn enroll(
        &self,
        tx: &mut Tx,
        activation: &apb::Activation,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let Some(facts) = facts_from_activation(activation) else {
            tracing::warn!(lead = %activation.lead_id, "LeadActivated without a usable lead id; skipped");
            return Ok(());
        };
        let lead = facts.lead;
        if Store::load_for_update(tx, self.backend(), lead)
            .await?
            .is_some()
        {
            // Activated again (a re-engagement after a breach): the plan already runs.
            return Ok(());
        }
        let keys = ContactKeys::new(facts.email.as_deref(), facts.phone.as_deref());
        let context = activation
            .context
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let playbook = self.playbook.current();
        let (mut enrollment, mut changes) = match Enrollment::enroll(&playbook, facts, now) {
            Ok(enrolled) => enrolled,
            Err(error) => {
                // A playbook without a matching cadence is an operator's fix, not a reason to
                // block the stream: the lead is logged and skipped.
                tracing::warn!(%lead, %error, "lead not enrolled");
                return Ok(());
            }
        };
        if Store::is_opted_out(tx, &keys).await? {
            // Known already: stop at once, nothing to forward.
            changes.extend(
                enrollment
                    .opt_out(now)
                    .into_iter()
                    .filter(|c| !matches!(c, Change::OptOutRequired { .. })),
            );
        }
        self.persist(tx, &enrollment, &keys, &context, &changes, now)
            .await?;
        Ok(())
    }

    async fn reassign(
        &self,
        tx: &mut Tx,
        activation: &apb::Activation,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let Ok(lead) = activation.lead_id.parse::<Uuid>() else {
            return Ok(());
        };
        let Some((mut enrollment, keys, context)) =
            Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        if activation.owner_id.is_empty() || activation.owner_id == enrollment.owner() {
            return Ok(());
        }
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let changes = enrollment.reassign(
            &activation.owner_id,
            non_empty(&activation.manager_id).as_deref(),
            non_empty(&activation.owner_timezone).as_deref(),
        );
        self.persist(tx, &enrollment, &keys, &context, &changes, now)
            .await?;
        Ok(())
    }

    async fn contact_opted_out(
        &self,
        tx: &mut Tx,
        opted: &ipb::ContactOptedOut,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let email = non_empty(&opted.email);
        let phone = non_empty(&opted.phone);
        let keys: Vec<String> = email
            .as_deref()
            .map(email_key)
            .into_iter()
            .chain(phone.as_deref().map(phone_key))
            .collect();
        // Intake already knows: record it here without sending it back.
        Store::add_opt_out(tx, &keys, now, &opted.reason).await?;
        let mut leads = Store::leads_of_contact(tx, &keys).await?;
        for id in &opted.lead_ids {
            if let Ok(lead) = id.parse::<Uuid>()
                && !leads.contains(&lead)
            {
                leads.push(lead);
            }
        }
        for lead in leads {
            self.stop_for_opt_out(tx, lead, now).await?;
        }
        Ok(())
    }

    /// Erases the person behind a lead from followup: how to reach them and proof's notes
    /// leave the enrolment, their contact keys become a key of the lead's own (its caps still
    /// count its touches), the context packet and stored events lose them, and a running
    /// cadence stops as for an opt-out: nobody follows up a person who asked to be erased.
    ///
    /// Taken from activation's `LeadErased` rather than intake's `ContactErased`: it comes
    /// after the `LeadActivated` it erases in the same stream, so a lead can never be enrolled
    /// with its personal data after its erasure was applied.
    async fn lead_erased(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let Some((mut enrollment, _, context)) =
            Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        enrollment.erase_personal_data();
        let keys = ContactKeys {
            contact: format!("erased:{lead}").into(),
            phone: Default::default(),
        };
        let mut packet = apb::ContextPacket::decode(context.as_slice()).unwrap_or_default();
        packet.erase_personal_data();
        let context = packet.encode_to_vec();
        let changes: Vec<Change> = if enrollment.is_over() {
            Vec::new()
        } else {
            enrollment
                .opt_out(now)
                .into_iter()
                .filter(|c| !matches!(c, Change::OptOutRequired { .. }))
                .collect()
        };
        Store::rekey_erased(tx, lead, &keys).await?;
        self.persist(tx, &enrollment, &keys, &context, &changes, now)
            .await?;
        runtime::erasure::rewrite_events(tx, &[lead.to_string()], crate::convert::redact_event)
            .await?;
        Ok(())
    }

    /// Stops every pending step of a lead whose contact opted out.
    async fn stop_for_opt_out(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let Some((enrollment, keys, context)) =
            Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        let mut effects = Effects::default();
        self.stop_loaded(tx, &mut effects, enrollment, &keys, &context, now)
            .await?;
        effects.write(tx, &self.log).await
    }

    /// [`Followup::stop_for_opt_out`] of a loaded enrolment, staged in `effects`.
    async fn stop_loaded(
        &self,
        tx: &mut Tx,
        effects: &mut Effects,
        mut enrollment: Enrollment,
        keys: &ContactKeys,
        context: &[u8],
        now: Timestamp,
    ) -> Result<(), DbError> {
        if enrollment.is_over() {
            return Ok(());
        }
        // The suppression is already known (intake's event, or the check before firing):
        // nothing to forward.
        let changes: Vec<Change> = enrollment
            .opt_out(now)
            .into_iter()
            .filter(|c| !matches!(c, Change::OptOutRequired { .. }))
            .collect();
        self.stage(
            tx,
            effects,
            &enrollment,
            keys,
            context,
            &changes,
            Vec::new(),
            now,
        )
        .await
    }

    // -----------------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------------

    /// The start of the frequency cap's window for steps firing at `now`.
    fn touches_since(&self, now: Timestamp) -> Timestamp {
        now.checked_sub(self.playbook.current().frequency_window())
            .unwrap_or(Timestamp::MIN)
    }

    /// Whatever is due for one lead at `now`, woken by its timer due at `due_at`: reads what
    /// `dispatch` loaded for it and stages its writes there.
    async fn wake_lead(
        &self,
        tx: &mut Tx,
        dispatch: &mut Dispatch,
        lead: Uuid,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let do_not_contact = self
            .do_not_contact
            .lock()
            .map(|set| set.contains(&lead))
            .unwrap_or(true);
        let Some((mut enrollment, keys, context)) = dispatch.enrollments.remove(&lead) else {
            return Ok(());
        };
        if do_not_contact || keys.all().any(|k| dispatch.opted_out.contains(k)) {
            return self
                .stop_loaded(tx, &mut dispatch.effects, enrollment, &keys, &context, now)
                .await;
        }
        let playbook = self.playbook.current();
        let since = self.touches_since(now);
        let touches: Vec<Timestamp> = dispatch
            .touches
            .get(keys.contact.as_str())
            .map(|all| all.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default();
        let proof = if enrollment.due_is_proof(&playbook, now, &touches) {
            // The due time names the step: the same step fired again asks the same question.
            self.ask_proof(lead, &due_at.as_microsecond().to_string())
                .await
        } else {
            None
        };
        let changes = enrollment.on_due(&playbook, now, &touches, proof);
        self.stage(
            tx,
            &mut dispatch.effects,
            &enrollment,
            &keys,
            &context,
            &changes,
            Vec::new(),
            now,
        )
        .await?;
        // Another lead of the same contact firing later in this transaction counts these
        // touches against the cap.
        if !keys.contact.is_empty() {
            for change in &changes {
                if let Change::FollowUpDue { task, .. } = change {
                    dispatch
                        .touches
                        .entry(keys.contact.as_str().to_owned())
                        .or_default()
                        .push(task.fired_at);
                }
            }
        }
        Ok(())
    }

    /// Fires a lead's wake-up timer: within the transaction's [`Dispatch`] when `Timers` loaded
    /// one, alone otherwise.
    async fn fire_wake(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        let loaded = self
            .dispatch
            .lock()
            .map_err(|_| "timer dispatch poisoned")?
            .take();
        match loaded {
            Some(mut dispatch) => {
                self.wake_lead(tx, &mut dispatch, lead, due_at, now).await?;
                *self
                    .dispatch
                    .lock()
                    .map_err(|_| "timer dispatch poisoned")? = Some(dispatch);
            }
            None => {
                let mut dispatch =
                    Dispatch::load(tx, self.backend(), &[lead], self.touches_since(now)).await?;
                self.wake_lead(tx, &mut dispatch, lead, due_at, now).await?;
                dispatch.effects.write(tx, &self.log).await?;
            }
        }
        Ok(())
    }

    /// Forwards an opt-out recorded here to intake; an error retries it after the lease.
    async fn propagate_opt_out(&self, timer: &Timer) -> Result<(), HandlerError> {
        let pending: PendingOptOut = serde_json::from_slice(&timer.payload)?;
        // Keyed by the timer, the same key on every attempt and after a crash.
        self.intake
            .unary_with(
                &OPT_OUT,
                ipb::OptOutRequest {
                    email: pending.email.unwrap_or_default(),
                    phone: pending.phone.unwrap_or_default(),
                    reason: pending.reason,
                },
                CallOptions::deadline(INTAKE_DEADLINE)
                    .with_key(format!("followup:opt-out:{}", timer.timer_id)),
            )
            .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // API
    // -----------------------------------------------------------------------------------

    /// Forgets touches older than twice the frequency cap's window.
    pub async fn prune_touches(&self) -> Result<u64, DbError> {
        let window = self.playbook.current().frequency_window();
        let before = self.now().checked_sub(window * 2).unwrap_or(Timestamp::MIN);
        self.store.prune_touches(before).await
    }

    /// A lead's enrolment and context packet.
    pub async fn get(&self, lead: Uuid) -> Result<(Enrollment, Vec<u8>), ServiceError> {
        let (enrollment, _, context) =
            self.store.load(lead).await?.ok_or(ServiceError::NotFound)?;
        Ok((enrollment, context))
    }

    /// An owner's open tasks, oldest due first: (enrolment, task number, context).
    pub async fn due_tasks(
        &self,
        owner: &str,
        after: Option<crate::store::TaskKey>,
        limit: usize,
    ) -> Result<Vec<(crate::store::TaskKey, Enrollment, Vec<u8>)>, ServiceError> {
        let keys = self
            .store
            .open_tasks(owner, after, i64::try_from(limit).unwrap_or(i64::MAX))
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some((enrollment, _, context)) = self.store.load(key.lead).await? {
                out.push((key, enrollment, context));
            }
        }
        Ok(out)
    }

    /// Runs `op` on a lead's enrolment in one transaction and persists what it changed, with
    /// the events `extra` builds from the result.
    async fn change<F, E>(
        &self,
        lead: Uuid,
        op: F,
        extra: E,
    ) -> Result<(Enrollment, Vec<Change>), ServiceError>
    where
        F: FnOnce(
                &mut Enrollment,
                &FollowupPlaybook,
                Timestamp,
            ) -> Result<Vec<Change>, ServiceError>
            + Send,
        E: FnOnce(&Enrollment, &[Change], Timestamp) -> Vec<NewEvent> + Send,
    {
        // Metrics recorded on the way are published only if the transaction commits.
        runtime::metrics::transactional(async {
            let mut tx = self.store.db().begin().await?;
            let (mut enrollment, keys, context) =
                Store::load_for_update(&mut tx, self.backend(), lead)
                    .await?
                    .ok_or(ServiceError::NotFound)?;
            // Made on a caller's behalf: what it appends and reschedules continues the lead's
            // own trace, linked to the caller's span.
            let span = tracing::info_span!("lead.change", lead_id = %lead);
            runtime::telemetry::continue_trace(&span, &Store::lead_trace(&mut tx, lead).await?);
            let now = self.now();
            let playbook = self.playbook.current();
            let changes = op(&mut enrollment, &playbook, now)?;
            let extra = extra(&enrollment, &changes, now);
            self.persist_with(&mut tx, &enrollment, &keys, &context, &changes, extra, now)
                .instrument(span)
                .await?;
            tx.commit().await.map_err(DbError::from)?;
            self.wake();
            Ok((enrollment, changes))
        })
        .await
    }

    pub async fn complete_task(
        &self,
        lead: Uuid,
        task: u32,
        owner: &str,
        outcome: TaskOutcome,
        at: Option<Timestamp>,
    ) -> Result<Enrollment, ServiceError> {
        let (enrollment, _) = self
            .change(
                lead,
                |e, playbook, now| {
                    if e.owner() != owner {
                        return Err(ServiceError::NotOwner {
                            owner: e.owner().to_owned(),
                        });
                    }
                    Ok(e.complete_task(playbook, task, outcome, at.unwrap_or(now).min(now))?)
                },
                no_events,
            )
            .await?;
        Ok(enrollment)
    }

    /// Records a buyer signal; returns the enrolment and what the signal changed, in words.
    pub async fn record_engagement(
        &self,
        lead: Uuid,
        engagement: Engagement,
        at: Option<Timestamp>,
    ) -> Result<(Enrollment, String), ServiceError> {
        let (kind, sentiment) = engagement_to_proto(&engagement);
        let (enrollment, changes) = self
            .change(
                lead,
                |e, playbook, now| {
                    Ok(e.record_engagement(playbook, engagement, at.unwrap_or(now).min(now)))
                },
                |e, changes, now| {
                    let event = pb::EngagementRecorded {
                        lead_id: e.lead.to_string(),
                        kind: kind as i32,
                        sentiment: sentiment as i32,
                        occurred_at: Some(to_proto_timestamp(at.unwrap_or(now).min(now))),
                        effect: effect_of(changes),
                    };
                    vec![NewEvent::new(e.lead.to_string(), &event, now)]
                },
            )
            .await?;
        Ok((enrollment, effect_of(&changes)))
    }

    pub async fn pause(
        &self,
        lead: Uuid,
        until: Option<Timestamp>,
        reason: String,
    ) -> Result<Enrollment, ServiceError> {
        let (enrollment, _) = self
            .change(
                lead,
                |e, playbook, now| Ok(e.pause(playbook, until, reason, now)?),
                no_events,
            )
            .await?;
        Ok(enrollment)
    }

    pub async fn resume(&self, lead: Uuid) -> Result<Enrollment, ServiceError> {
        let (enrollment, _) = self
            .change(
                lead,
                |e, playbook, now| Ok(e.resume(playbook, now)?),
                no_events,
            )
            .await?;
        Ok(enrollment)
    }
}

fn no_events(_: &Enrollment, _: &[Change], _: Timestamp) -> Vec<NewEvent> {
    Vec::new()
}

/// What a list of changes did, in words; "no change to the plan" when nothing visible.
fn effect_of(changes: &[Change]) -> String {
    let parts: Vec<String> = changes.iter().filter_map(change_text).collect();
    if parts.is_empty() {
        "recorded; no change to the plan".into()
    } else {
        parts.join("; ")
    }
}

impl EventHandler for Followup {
    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        self.apply_upstream_event(tx, event).await
    }

    fn after_commit(&self) {
        self.wake();
    }
}

impl TimerHandler for Followup {
    /// A transaction's steps are loaded and written a table at a time, and their enrolments
    /// locked in id order: a dozen round trips per transaction however many steps it fires.
    const COMMIT_EVERY: usize = 128;

    async fn prepare(&self, batch: &[Timer]) -> Result<(), HandlerError> {
        let leads: Vec<String> = batch
            .iter()
            .filter(|t| t.kind == WAKE_TIMER)
            .map(|t| t.subject.clone())
            .collect();
        let mut found = HashSet::new();
        if !leads.is_empty() {
            let answer = self
                .intake
                .unary_with(
                    &CHECK_CONTACTABLE,
                    ipb::CheckContactableRequest { lead_ids: leads },
                    CallOptions::deadline(INTAKE_DEADLINE),
                )
                .await?;
            found.extend(
                answer
                    .do_not_contact_lead_ids
                    .iter()
                    .filter_map(|id| id.parse::<Uuid>().ok()),
            );
        }
        *self
            .do_not_contact
            .lock()
            .map_err(|_| "contactability cache poisoned")? = found;
        Ok(())
    }

    async fn load(&self, tx: &mut Tx, timers: &[Timer]) -> Result<(), HandlerError> {
        let leads: Vec<Uuid> = timers
            .iter()
            .filter(|t| t.kind == WAKE_TIMER)
            .filter_map(|t| t.subject.parse().ok())
            .collect();
        let dispatch = if leads.is_empty() {
            Dispatch::default()
        } else {
            let since = self.touches_since(self.now());
            Dispatch::load(tx, self.backend(), &leads, since).await?
        };
        *self
            .dispatch
            .lock()
            .map_err(|_| "timer dispatch poisoned")? = Some(dispatch);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx) -> Result<(), HandlerError> {
        let loaded = self
            .dispatch
            .lock()
            .map_err(|_| "timer dispatch poisoned")?
            .take();
        if let Some(mut dispatch) = loaded {
            dispatch.effects.write(tx, &self.log).await?;
        }
        Ok(())
    }

    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        let now = self.now();
        match timer.kind.as_str() {
            WAKE_TIMER => {
                self.fire_wake(tx, timer.subject.parse()?, timer.due_at, now)
                    .await?
            }
            OPT_OUT_TIMER => self.propagate_opt_out(timer).await?,
            other => tracing::warn!(kind = other, "unknown timer kind; dropped"),
        }
        Ok(())
    }

    /// Wakes the subscribers only: the timers this transaction scheduled are looked at by the
    /// scheduler that fired it, which reads the next due time before it sleeps again. Waking
    /// this process's other schedulers too would have each race for nothing after every step.
    fn after_commit(&self) {
        self.log.wake();
    }
}
