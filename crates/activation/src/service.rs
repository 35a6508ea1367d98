//! Activation's use cases, each one transaction holding the state change, its timers and its
//! events: take a lead from intake's stream, assign it (or queue it and alert at once),
//! record the first action, breach at the deadline (escalate, reassign, or hand to the
//! manager), and the run-time facts owners and accounts change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use jiff::{SignedDuration, Timestamp};
use prost::{Message, Name};
use proto::activation::v1 as pb;
use proto::events::v1::Event;
use proto::intake::v1 as ipb;
use runtime::consumer::{EventHandler, HandlerError};
use runtime::metrics::prometheus_client::metrics::counter::Counter;
use runtime::metrics::prometheus_client::metrics::family::Family;
use runtime::metrics::prometheus_client::metrics::histogram::Histogram;
use runtime::metrics::prometheus_client::registry::Unit;
use runtime::playbook::Playbook;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{DbError, EventLog, NewEvent, SharedClock, Tx};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{activation_to_proto, cause_to_proto, channel_to_proto, duration_to_proto};
use crate::domain::assign::{OwnerState, PickContext, RoundRobin, Unassignable, assign};
use crate::domain::breach::{
    BreachCause, BreachFacts, Escalation, breach_cause, escalation_manager, on_breach,
};
use crate::domain::first_action::{
    FirstAction, Irrelevant, SlaClock, check_first_action, plan_first_action, talking_points,
};
use crate::domain::routing::{Route, RouteReason, route};
use crate::domain::sla::{deadline, sla_policy};
use crate::domain::{LeadFacts, OwnerId, TeamId};
use crate::intake_events::{BadEvent, from_accepted, touch_line};
use crate::playbook::ActivationPlaybook;
use crate::record::{ActivationRecord, State};
use crate::store::Store;

/// Timer kind of a lead's SLA deadline.
pub const SLA_TIMER: &str = "sla_deadline";
/// Timer kind of a queued lead's next assignment attempt.
pub const RETRY_TIMER: &str = "assign_retry";
/// How often a queued lead is offered to its team again.
const RETRY_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// Labels of activation's metrics: the SLA policy (a playbook name) and an outcome or cause
/// from a fixed list. Nothing about the lead or its owner.
type MetricLabels = [(&'static str, String); 2];

/// Activation's instruments in the process registry (served by `runtime::metrics`).
struct Metrics {
    time_to_activation: Family<MetricLabels, Histogram, fn() -> Histogram>,
    sla_breaches: Family<MetricLabels, Counter>,
}

/// Time to activation buckets, in seconds: 30 s to a week (SLA windows run from minutes for
/// hot leads to days over a weekend).
fn activation_histogram() -> Histogram {
    Histogram::new([
        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
        172800.0, 604800.0,
    ])
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics {
        time_to_activation: Family::new_with_constructor(activation_histogram),
        sla_breaches: Family::default(),
    };
    runtime::metrics::register_with_unit(
        "activation_time_to_activation",
        "Time from a lead's arrival to its first relevant action, by SLA policy and whether it was within the SLA",
        Unit::Seconds,
        metrics.time_to_activation.clone(),
    );
    runtime::metrics::register(
        "activation_sla_breaches",
        "SLA deadlines missed, by SLA policy and cause",
        metrics.sla_breaches.clone(),
    );
    metrics
});

/// The `cause` label of a breach.
fn cause_label(cause: BreachCause) -> &'static str {
    match cause {
        BreachCause::RoutingDelay => "routing_delay",
        BreachCause::NoOwnerWorking => "no_owner_working",
        BreachCause::AllOwnersAtCapacity => "all_owners_at_capacity",
        BreachCause::OwnerUnavailable => "owner_unavailable",
        BreachCause::OwnerLate => "owner_late",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("no activation for this lead")]
    NotFound,
    #[error("the first action does not activate the lead: {0}")]
    Irrelevant(#[from] Irrelevant),
    #[error("the lead is {0}, not waiting for a first action")]
    NotOpen(&'static str),
    #[error("unknown owner {0:?}: not in the playbook")]
    UnknownOwner(String),
    #[error("unusable intake event: {0}")]
    BadEvent(#[from] BadEvent),
    #[error(transparent)]
    Storage(#[from] DbError),
}

/// Activation's application service.
#[derive(Debug, Clone)]
pub struct Activation {
    store: Store,
    log: EventLog,
    timers: Timers,
    playbook: Playbook<ActivationPlaybook>,
    clock: SharedClock,
    /// What the consumer's transaction loaded for the leads it accepts (see [`AcceptBatch`]);
    /// only the consumer, which runs one transaction at a time, touches it.
    batch: Arc<Mutex<Option<AcceptBatch>>>,
}

/// What the leads a transaction of intake's events accepts all need, read once for the batch
/// instead of once per lead: which of them already have an activation, the account domains,
/// the owners' load and availability, and each team's rotation (locked on first use, as
/// [`Store::round_robin`] does, and written once in `flush`). The owners' load is kept in step
/// with the assignments the batch makes, as the trigger on `activations` keeps the table.
///
/// Only `LeadAccepted` uses it: any other event of the batch (a merge, an opt-out, an
/// erasure) may change what it holds, so it writes the rotations back and drops it first, and
/// the rest of the batch reads as a single event does.
#[derive(Debug, Default)]
struct AcceptBatch {
    /// Leads whose activation was looked up for the batch (by the event's aggregate id),
    /// and of those, the ones that have one: stored, or accepted earlier in the batch. A lead
    /// not looked up is read as a single event reads it.
    checked: HashSet<Uuid>,
    known: HashSet<Uuid>,
    accounts: BTreeMap<String, OwnerId>,
    owners: BTreeMap<OwnerId, OwnerState>,
    /// Each team's rotation, and whether the batch changed it.
    rotations: HashMap<TeamId, (RoundRobin, bool)>,
}

/// Builds an event from the activation as it stands after the change.
type MakeEvent = Box<dyn Fn(pb::Activation) -> NewEvent + Send>;

/// Events of one change, in order; each gets the final snapshot when the change is saved.
#[derive(Default)]
struct Emitted(Vec<MakeEvent>);

impl Activation {
    pub fn new(
        store: Store,
        log: EventLog,
        timers: Timers,
        playbook: Playbook<ActivationPlaybook>,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            log,
            timers,
            playbook,
            clock,
            batch: Arc::default(),
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn playbook(&self) -> Arc<ActivationPlaybook> {
        self.playbook.current()
    }

    fn backend(&self) -> runtime::Backend {
        self.store.db().backend()
    }

    /// Wakes this process's subscribers and timer scheduler after a commit.
    fn wake(&self) {
        self.log.wake();
        self.timers.wake();
    }

    /// The span a change to `lead` made on someone else's behalf (a caller's RPC, another
    /// lead's merge) runs in: it continues the lead's own trace, linked to the caller's span,
    /// so the events it appends and the timers it sets stay in the trace that follows the lead.
    async fn lead_span(
        tx: &mut Tx,
        lead: Uuid,
        change: &'static str,
    ) -> Result<tracing::Span, DbError> {
        let trace = Store::lead_trace(tx, lead).await?;
        let span = tracing::info_span!("lead.change", lead_id = %lead, change);
        runtime::telemetry::continue_trace(&span, &trace);
        Ok(span)
    }

    /// Saves a record, appends its events (each built from the final snapshot) and keeps its
    /// SLA timer in step with its state.
    async fn persist(
        &self,
        tx: &mut Tx,
        record: &ActivationRecord,
        context: &[u8],
        events: Emitted,
        now: Timestamp,
    ) -> Result<(), DbError> {
        // Kept only when the record is created, in the span its LeadAccepted is consumed in.
        let trace = runtime::telemetry::current_trace_context();
        Store::save(tx, record, context, &trace).await?;
        let subject = record.lead.to_string();
        if record.state.is_open() {
            let timer = NewTimer {
                kind: SLA_TIMER.into(),
                subject: subject.clone(),
                due_at: record.deadline,
                payload: Vec::new(),
            };
            Timers::schedule(tx, &timer).await?;
        } else {
            Timers::cancel(tx, SLA_TIMER, &subject).await?;
        }
        // Only a lead that was queued can have a retry pending.
        if record.state != State::Queued && record.waiting_cause.is_some() {
            Timers::cancel(tx, RETRY_TIMER, &subject).await?;
        }
        let snapshot = activation_to_proto(record, context, now);
        let events: Vec<NewEvent> = events
            .0
            .into_iter()
            .map(|make| make(snapshot.clone()))
            .collect();
        self.log.append(tx, &events).await
    }

    // -----------------------------------------------------------------------------------
    // Intake's events
    // -----------------------------------------------------------------------------------

    /// Applies one of intake's events inside the consumer's transaction.
    pub async fn apply_intake_event(
        &self,
        tx: &mut Tx,
        event: &Event,
    ) -> Result<(), ActivationError> {
        self.apply_in_batch(tx, event, &mut None).await
    }

    /// [`Activation::apply_intake_event`] with what the transaction loaded for its batch
    /// (see [`AcceptBatch`]), if anything; any event but `LeadAccepted` writes it back and drops it.
    async fn apply_in_batch(
        &self,
        tx: &mut Tx,
        event: &Event,
        batch: &mut Option<AcceptBatch>,
    ) -> Result<(), ActivationError> {
        let Some(payload) = &event.payload else {
            return Ok(());
        };
        let name = payload.type_url.rsplit('/').next().unwrap_or_default();
        let now = self.clock.now_micros();
        if name == ipb::LeadAccepted::full_name() {
            let accepted = ipb::LeadAccepted::decode(payload.value.as_slice())
                .map_err(|_| BadEvent::MissingLead)?;
            let (facts, packet) = from_accepted(&accepted)?;
            return self.accept(tx, facts, packet, now, batch.as_mut()).await;
        }
        let changes_state = [
            ipb::LeadMerged::full_name(),
            ipb::ContactOptedOut::full_name(),
            ipb::ContactErased::full_name(),
        ]
        .iter()
        .any(|n| n == name);
        if changes_state && let Some(loaded) = batch.take() {
            Self::flush_batch(tx, loaded).await?;
        }
        if name == ipb::LeadMerged::full_name() {
            let merged = ipb::LeadMerged::decode(payload.value.as_slice())
                .map_err(|_| BadEvent::MissingLead)?;
            self.merged(tx, &merged, now).await
        } else if name == ipb::ContactOptedOut::full_name() {
            let opted = ipb::ContactOptedOut::decode(payload.value.as_slice())
                .map_err(|_| BadEvent::MissingLead)?;
            self.opted_out(tx, &opted, now).await
        } else if name == ipb::ContactErased::full_name() {
            let erased = ipb::ContactErased::decode(payload.value.as_slice())
                .map_err(|_| BadEvent::MissingLead)?;
            self.erased(tx, &erased, now).await
        } else {
            Ok(())
        }
    }

    async fn accept(
        &self,
        tx: &mut Tx,
        facts: LeadFacts,
        packet: pb::ContextPacket,
        now: Timestamp,
        mut batch: Option<&mut AcceptBatch>,
    ) -> Result<(), ActivationError> {
        let known = match batch.as_deref_mut() {
            Some(batch) if batch.checked.contains(&facts.lead) => !batch.known.insert(facts.lead),
            _ => {
                let stored = Store::load_for_update(tx, self.backend(), facts.lead)
                    .await?
                    .is_some();
                if let Some(batch) = batch.as_deref_mut() {
                    batch.checked.insert(facts.lead);
                    batch.known.insert(facts.lead);
                }
                stored
            }
        };
        if known {
            return Ok(());
        }
        let playbook = self.playbook.current();
        let route = match batch.as_deref() {
            Some(batch) => route(&facts, &playbook, &batch.accounts),
            None => route(&facts, &playbook, &Store::accounts(tx).await?),
        };
        let policy = sla_policy(&facts, &playbook);
        let due = match playbook.team(&route.team) {
            Some(team) => deadline(now, policy, team.calendar()),
            None => now + policy.window().wall_clock(),
        };
        let mut record = ActivationRecord {
            lead: facts.lead,
            state: State::Queued,
            team: route.team.clone(),
            owner: None,
            routed_by: routed_by(&route.reason),
            sla_policy: policy.name().to_owned(),
            received_at: now,
            window_started_at: now,
            assigned_at: None,
            deadline: due,
            waiting_cause: None,
            breaches: 0,
            reassignments: 0,
            previous_owners: Vec::new(),
            activated_at: None,
            within_sla: false,
            time_to_activation: None,
            plan: plan_first_action(&facts, &playbook),
            facts,
            owner_timezone: String::new(),
            manager: None,
        };
        let context = packet.encode_to_vec();
        let mut events = Emitted::default();
        if !record.facts.is_contactable() {
            record.state = State::DoNotContact;
            events.0.push(do_not_contact_event(None, "no_consent", now));
            self.persist(tx, &record, &context, events, now).await?;
            return Ok(());
        }
        match self
            .pick(
                tx,
                &playbook,
                &route,
                &record.previous_owners,
                now,
                batch.as_deref_mut(),
            )
            .await?
        {
            Ok(owner) => {
                // The trigger on `activations` counts it when the record is saved.
                if let Some(state) = batch.as_mut().and_then(|b| b.owners.get_mut(&owner)) {
                    state.open_unactivated = state.open_unactivated.saturating_add(1);
                }
                record.assign(&playbook, owner, now);
            }
            Err(cause) => {
                record.waiting_cause = Some(cause);
                // Nobody can take it: alert now rather than let it wait silently.
                let manager = escalation_manager(&playbook, None, &record.team).cloned();
                events.0.push(escalation(
                    &record.team,
                    manager,
                    BreachCause::from(cause),
                    false,
                    now,
                ));
                self.schedule_retry(tx, &record, now).await?;
            }
        }
        events.0.push(Box::new(move |a| assigned_event(a, now)));
        self.persist(tx, &record, &context, events, now).await?;
        Ok(())
    }

    async fn merged(
        &self,
        tx: &mut Tx,
        merged: &ipb::LeadMerged,
        now: Timestamp,
    ) -> Result<(), ActivationError> {
        let Ok(lead) = merged.lead_id.parse::<Uuid>() else {
            return Ok(());
        };
        let Some((mut record, context)) = Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        let mut packet = pb::ContextPacket::decode(context.as_slice()).unwrap_or_default();
        if let Some(touch) = &merged.touch {
            packet.touches.push(touch_line(touch));
        }
        let mut events = Emitted::default();
        if merged.do_not_contact && record.state.is_open() {
            record.state = State::DoNotContact;
            events
                .0
                .push(do_not_contact_event(record.owner.clone(), "opted_out", now));
        }
        // A re-engagement goes back to whoever holds the lead, with the new context.
        if record.owner.is_some() && record.state != State::DoNotContact {
            events.0.push(Box::new(move |a| assigned_event(a, now)));
        }
        let span = Self::lead_span(tx, lead, "merged").await?;
        self.persist(tx, &record, &packet.encode_to_vec(), events, now)
            .instrument(span)
            .await?;
        Ok(())
    }

    async fn opted_out(
        &self,
        tx: &mut Tx,
        opted: &ipb::ContactOptedOut,
        now: Timestamp,
    ) -> Result<(), ActivationError> {
        for id in &opted.lead_ids {
            let Ok(lead) = id.parse::<Uuid>() else {
                continue;
            };
            let Some((mut record, context)) =
                Store::load_for_update(tx, self.backend(), lead).await?
            else {
                continue;
            };
            if record.state.is_open() {
                record.state = State::DoNotContact;
                let mut events = Emitted::default();
                events
                    .0
                    .push(do_not_contact_event(record.owner.clone(), "opted_out", now));
                self.persist(tx, &record, &context, events, now).await?;
            }
        }
        Ok(())
    }

    /// Erases the person behind these leads from activation: what they wrote leaves the facts,
    /// the plan's talking points and the context packet, in the table and in every stored
    /// event; an open lead is closed as do-not-contact (nobody works an erased person).
    /// `LeadErased` then tells followup and proof, behind every event they may have copied.
    async fn erased(
        &self,
        tx: &mut Tx,
        erased: &ipb::ContactErased,
        now: Timestamp,
    ) -> Result<(), ActivationError> {
        for id in &erased.lead_ids {
            let Ok(lead) = id.parse::<Uuid>() else {
                continue;
            };
            let Some((mut record, context)) =
                Store::load_for_update(tx, self.backend(), lead).await?
            else {
                continue;
            };
            record.facts.erase_personal_data();
            record.plan.talking_points = talking_points(&record.facts);
            let mut packet = pb::ContextPacket::decode(context.as_slice()).unwrap_or_default();
            packet.erase_personal_data();
            let context = packet.encode_to_vec();
            let mut events = Emitted::default();
            if record.state.is_open() {
                record.state = State::DoNotContact;
                events
                    .0
                    .push(do_not_contact_event(record.owner.clone(), "erased", now));
            }
            events.0.push(erased_event(erased.erasure_id.clone(), now));
            self.persist(tx, &record, &context, events, now).await?;
            let points = record.plan.talking_points.clone();
            runtime::erasure::rewrite_events(tx, std::slice::from_ref(id), |type_name, payload| {
                crate::convert::redact_event(type_name, payload, &points)
            })
            .await?;
        }
        Ok(())
    }

    /// Picks an owner in the route's team (the account owner first), keeping the rotation.
    async fn pick(
        &self,
        tx: &mut Tx,
        playbook: &ActivationPlaybook,
        route: &Route,
        tried: &[OwnerId],
        now: Timestamp,
        batch: Option<&mut AcceptBatch>,
    ) -> Result<Result<OwnerId, Unassignable>, DbError> {
        let mut candidates: Vec<OwnerId> = playbook
            .team_owners(&route.team)
            .map(|o| o.id().clone())
            .collect();
        if let Some(owner) = &route.owner
            && !candidates.contains(owner)
        {
            candidates.push(owner.clone());
        }
        let Some(batch) = batch else {
            let states = Store::owner_states(tx, &candidates).await?;
            let rotation = Store::round_robin(tx, &route.team).await?;
            let ctx = PickContext {
                now,
                states: &states,
                tried,
            };
            return Ok(match assign(playbook, route, &ctx, &rotation) {
                Ok(pick) => {
                    if pick.round_robin != rotation {
                        Store::save_round_robin(tx, &route.team, &pick.round_robin).await?;
                    }
                    Ok(pick.owner)
                }
                Err(cause) => Err(cause),
            });
        };
        // An owner the batch did not load (an account's owner outside the playbook's teams).
        let missing: Vec<OwnerId> = candidates
            .iter()
            .filter(|o| !batch.owners.contains_key(*o))
            .cloned()
            .collect();
        if !missing.is_empty() {
            batch
                .owners
                .extend(Store::owner_states(tx, &missing).await?);
        }
        if !batch.rotations.contains_key(&route.team) {
            let rotation = Store::round_robin(tx, &route.team).await?;
            batch
                .rotations
                .insert(route.team.clone(), (rotation, false));
        }
        let (rotation, changed) = batch
            .rotations
            .get_mut(&route.team)
            .ok_or_else(|| DbError::corrupt(std::io::Error::other("rotation not loaded")))?;
        let ctx = PickContext {
            now,
            states: &batch.owners,
            tried,
        };
        Ok(match assign(playbook, route, &ctx, rotation) {
            Ok(pick) => {
                if pick.round_robin != *rotation {
                    *rotation = pick.round_robin;
                    *changed = true;
                }
                Ok(pick.owner)
            }
            Err(cause) => Err(cause),
        })
    }

    /// Loads an [`AcceptBatch`] for the `LeadAccepted` events among `events`.
    async fn load_batch(&self, tx: &mut Tx, events: &[Event]) -> Result<AcceptBatch, DbError> {
        let leads: Vec<Uuid> = events
            .iter()
            .filter(|e| {
                e.payload.as_ref().is_some_and(|p| {
                    p.type_url.rsplit('/').next() == Some(&ipb::LeadAccepted::full_name())
                })
            })
            .filter_map(|e| e.aggregate_id.parse().ok())
            .collect();
        if leads.is_empty() {
            return Ok(AcceptBatch::default());
        }
        let playbook = self.playbook.current();
        let accounts = Store::accounts(tx).await?;
        let mut owners: Vec<OwnerId> = playbook.owners().iter().map(|o| o.id().clone()).collect();
        owners.extend(accounts.values().cloned());
        owners.sort();
        owners.dedup();
        Ok(AcceptBatch {
            known: Store::existing(tx, &leads).await?,
            checked: leads.into_iter().collect(),
            owners: Store::owner_states(tx, &owners).await?,
            accounts,
            rotations: HashMap::new(),
        })
    }

    /// Writes the rotations a batch changed.
    async fn flush_batch(tx: &mut Tx, batch: AcceptBatch) -> Result<(), DbError> {
        for (team, (rotation, changed)) in &batch.rotations {
            if *changed {
                Store::save_round_robin(tx, team, rotation).await?;
            }
        }
        Ok(())
    }

    async fn schedule_retry(
        &self,
        tx: &mut Tx,
        record: &ActivationRecord,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let timer = NewTimer {
            kind: RETRY_TIMER.into(),
            subject: record.lead.to_string(),
            due_at: now + RETRY_EVERY,
            payload: Vec::new(),
        };
        Timers::schedule(tx, &timer).await
    }

    // -----------------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------------

    /// A queued lead is offered to its team again; the time it waited counts against its SLA.
    async fn retry(&self, tx: &mut Tx, lead: Uuid, now: Timestamp) -> Result<(), ActivationError> {
        let Some((mut record, context)) = Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        if record.state != State::Queued {
            return Ok(());
        }
        let playbook = self.playbook.current();
        let route = rotation(&record.team);
        let mut events = Emitted::default();
        match self
            .pick(tx, &playbook, &route, &record.previous_owners, now, None)
            .await?
        {
            Ok(owner) => {
                record.assign(&playbook, owner, now);
                events.0.push(Box::new(move |a| assigned_event(a, now)));
            }
            Err(cause) => {
                record.waiting_cause = Some(cause);
                if now + RETRY_EVERY < record.deadline {
                    self.schedule_retry(tx, &record, now).await?;
                }
            }
        }
        self.persist(tx, &record, &context, events, now).await?;
        Ok(())
    }

    /// The deadline passed without activation: a system incident. Records the breach and its
    /// cause, alerts the manager, and reassigns with a fresh window until the playbook's limit,
    /// after which the manager owns the lead.
    async fn breach(&self, tx: &mut Tx, lead: Uuid, now: Timestamp) -> Result<(), ActivationError> {
        let Some((mut record, context)) = Store::load_for_update(tx, self.backend(), lead).await?
        else {
            return Ok(());
        };
        if !record.state.is_open() {
            return Ok(());
        }
        let playbook = self.playbook.current();
        let owner_state = match &record.owner {
            Some(owner) => Store::owner_states(tx, std::slice::from_ref(owner))
                .await?
                .remove(owner)
                .unwrap_or_default(),
            None => Default::default(),
        };
        let cause = breach_cause(
            &BreachFacts {
                started_at: record.window_started_at,
                deadline: record.deadline,
                assigned: record.owner.clone().zip(record.assigned_at),
                queue_cause: record.waiting_cause,
                owner_state,
            },
            &playbook,
        );
        record.breaches += 1;
        // Counted when the timer's transaction commits: a fire that rolls back is retried.
        let labels: MetricLabels = [
            ("sla_policy", record.sla_policy.clone()),
            ("cause", cause_label(cause).to_owned()),
        ];
        runtime::metrics::on_commit(move || {
            METRICS.sla_breaches.get_or_create(&labels).inc();
        });
        let (breached_owner, missed, number) =
            (record.owner.clone(), record.deadline, record.breaches);
        let team = record.team.clone();
        let mut events = Emitted::default();
        events.0.push(Box::new(move |a| {
            let lead_id = a.lead_id.clone();
            let event = pb::SlaBreached {
                lead_id: lead_id.clone(),
                team_id: team.to_string(),
                owner_id: breached_owner
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                deadline: Some(runtime::grpc::to_proto_timestamp(missed)),
                cause: cause_to_proto(cause) as i32,
                breach_number: number,
                activation: Some(a),
            };
            NewEvent::new(lead_id, &event, now)
        }));
        let manager = escalation_manager(&playbook, record.owner.as_ref(), &record.team).cloned();
        if let Some(owner) = record.owner.take() {
            record.previous_owners.push(owner);
        }
        let reassigned = match on_breach(
            record.reassignments,
            playbook.escalation().max_reassignments(),
        ) {
            Escalation::Reassign => {
                let route = rotation(&record.team);
                self.pick(tx, &playbook, &route, &record.previous_owners, now, None)
                    .await?
                    .ok()
            }
            Escalation::ManagerOwns => None,
        };
        match reassigned {
            Some(owner) => {
                let policy = sla_policy(&record.facts, &playbook);
                record.deadline = match playbook.team(&record.team) {
                    Some(team) => deadline(now, policy, team.calendar()),
                    None => now + policy.window().wall_clock(),
                };
                record.assign(&playbook, owner.clone(), now);
                record.window_started_at = now;
                record.waiting_cause = None;
                record.reassignments += 1;
                events
                    .0
                    .push(escalation(&record.team, manager, cause, false, now));
                let from = record
                    .previous_owners
                    .last()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let due = record.deadline;
                events.0.push(Box::new(move |a| {
                    let lead_id = a.lead_id.clone();
                    let event = pb::LeadReassigned {
                        lead_id: lead_id.clone(),
                        from_owner_id: from.clone(),
                        to_owner_id: owner.to_string(),
                        deadline: Some(runtime::grpc::to_proto_timestamp(due)),
                        cause: cause_to_proto(cause) as i32,
                        activation: Some(a),
                    };
                    NewEvent::new(lead_id, &event, now)
                }));
            }
            None => {
                record.state = State::Escalated;
                record.owner_timezone = manager
                    .as_ref()
                    .and_then(|m| playbook.owner(m))
                    .and_then(|o| o.timezone().iana_name())
                    .unwrap_or_default()
                    .to_owned();
                record.owner = manager.clone();
                record.assigned_at = Some(now);
                events
                    .0
                    .push(escalation(&record.team, manager, cause, true, now));
            }
        }
        self.persist(tx, &record, &context, events, now).await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // API
    // -----------------------------------------------------------------------------------

    /// A lead's activation and context packet.
    pub async fn get(&self, lead: Uuid) -> Result<(ActivationRecord, Vec<u8>), ActivationError> {
        self.store
            .load(lead)
            .await?
            .ok_or(ActivationError::NotFound)
    }

    /// An owner's open leads by deadline.
    pub async fn queue(
        &self,
        owner: &OwnerId,
        after: Option<(Timestamp, Uuid)>,
        limit: usize,
    ) -> Result<Vec<(ActivationRecord, Vec<u8>)>, ActivationError> {
        if self.playbook.current().owner(owner).is_none() {
            return Err(ActivationError::UnknownOwner(owner.to_string()));
        }
        Ok(self
            .store
            .queue(owner, after, i64::try_from(limit).unwrap_or(i64::MAX))
            .await?)
    }

    /// Records a first action; it activates the lead only if it is relevant.
    pub async fn record_first_action(
        &self,
        lead: Uuid,
        action: FirstAction,
    ) -> Result<(ActivationRecord, Vec<u8>), ActivationError> {
        let now = self.clock.now_micros();
        let mut tx = self.store.db().begin().await?;
        let (mut record, context) = Store::load_for_update(&mut tx, self.backend(), lead)
            .await?
            .ok_or(ActivationError::NotFound)?;
        if !matches!(record.state, State::Assigned | State::Escalated) {
            return Err(ActivationError::NotOpen(record.state.as_str()));
        }
        let clock = SlaClock {
            started_at: record.received_at,
            deadline: record.deadline,
        };
        let outcome = check_first_action(&record.plan, record.owner.as_ref(), &clock, &action)?;
        record.state = State::Activated;
        record.activated_at = Some(action.at);
        // Within SLA means within the first window: a lead that breached before was failed.
        record.within_sla = outcome.within_sla && record.breaches == 0;
        record.time_to_activation = Some(outcome.time_to_activation);
        let (owner, channel, at) = (action.owner.clone(), action.channel, action.at);
        let (within, took) = (record.within_sla, outcome.time_to_activation);
        let mut events = Emitted::default();
        events.0.push(Box::new(move |a| {
            let lead_id = a.lead_id.clone();
            let event = pb::LeadActivated {
                lead_id: lead_id.clone(),
                owner_id: owner.to_string(),
                channel: channel_to_proto(channel) as i32,
                activated_at: Some(runtime::grpc::to_proto_timestamp(at)),
                within_sla: within,
                time_to_activation: Some(duration_to_proto(took)),
                activation: Some(a),
            };
            NewEvent::new(lead_id, &event, now)
        }));
        let span = Self::lead_span(&mut tx, lead, "first_action").await?;
        self.persist(&mut tx, &record, &context, events, now)
            .instrument(span)
            .await?;
        tx.commit().await.map_err(DbError::from)?;
        self.wake();
        METRICS
            .time_to_activation
            .get_or_create(&[
                ("sla_policy", record.sla_policy.clone()),
                ("within_sla", within.to_string()),
            ])
            .observe(took.as_secs_f64().max(0.0));
        Ok((record, context))
    }

    /// Marks an owner out of office until `until` (or back, with `None` or a past time). The
    /// owner's open leads move to other owners of the team, or to the queue.
    pub async fn set_availability(
        &self,
        owner: &OwnerId,
        until: Option<Timestamp>,
        reason: &str,
    ) -> Result<Vec<Uuid>, ActivationError> {
        let playbook = self.playbook.current();
        if playbook.owner(owner).is_none() {
            return Err(ActivationError::UnknownOwner(owner.to_string()));
        }
        let now = self.clock.now_micros();
        let until = until.filter(|u| *u > now);
        let mut tx = self.store.db().begin().await?;
        Store::set_availability(&mut tx, owner, until, reason).await?;
        let mut moved = Vec::new();
        if until.is_some() {
            for lead in Store::open_leads_of(&mut tx, owner).await? {
                if let Some((mut record, context)) =
                    Store::load_for_update(&mut tx, self.backend(), lead).await?
                {
                    let span = Self::lead_span(&mut tx, lead, "owner_unavailable").await?;
                    record.previous_owners.push(owner.clone());
                    let route = rotation(&record.team);
                    let mut events = Emitted::default();
                    match self
                        .pick(
                            &mut tx,
                            &playbook,
                            &route,
                            &record.previous_owners,
                            now,
                            None,
                        )
                        .await?
                    {
                        Ok(next) => {
                            record.owner = Some(next.clone());
                            record.assigned_at = Some(now);
                            let (from, due) = (owner.to_string(), record.deadline);
                            events.0.push(Box::new(move |a| {
                                let lead_id = a.lead_id.clone();
                                let event = pb::LeadReassigned {
                                    lead_id: lead_id.clone(),
                                    from_owner_id: from.clone(),
                                    to_owner_id: next.to_string(),
                                    deadline: Some(runtime::grpc::to_proto_timestamp(due)),
                                    cause: pb::FailureCause::OwnerUnavailable as i32,
                                    activation: Some(a),
                                };
                                NewEvent::new(lead_id, &event, now)
                            }));
                        }
                        Err(cause) => {
                            record.state = State::Queued;
                            record.owner = None;
                            record.waiting_cause = Some(cause);
                            self.schedule_retry(&mut tx, &record, now)
                                .instrument(span.clone())
                                .await?;
                        }
                    }
                    self.persist(&mut tx, &record, &context, events, now)
                        .instrument(span)
                        .await?;
                    moved.push(lead);
                }
            }
        }
        tx.commit().await.map_err(DbError::from)?;
        self.wake();
        Ok(moved)
    }

    /// Adds or changes an account; true when it is new.
    pub async fn upsert_account(
        &self,
        account: &str,
        name: &str,
        owner: &OwnerId,
        domains: &[String],
    ) -> Result<bool, ActivationError> {
        if self.playbook.current().owner(owner).is_none() {
            return Err(ActivationError::UnknownOwner(owner.to_string()));
        }
        let mut tx = self.store.db().begin().await?;
        let created = Store::upsert_account(&mut tx, account, name, owner, domains).await?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(created)
    }
}

/// The team's own rotation, for leads that leave their first owner (no account owner again).
fn rotation(team: &TeamId) -> Route {
    Route {
        team: team.clone(),
        owner: None,
        reason: RouteReason::Default,
    }
}

fn routed_by(reason: &RouteReason) -> String {
    match reason {
        RouteReason::Account { domain } => format!("account {domain}"),
        RouteReason::Rule { name, .. } => format!("route {name}"),
        RouteReason::Default => "default team".into(),
    }
}

fn assigned_event(activation: pb::Activation, now: Timestamp) -> NewEvent {
    let lead_id = activation.lead_id.clone();
    NewEvent::new(
        lead_id,
        &pb::LeadAssigned {
            activation: Some(activation),
        },
        now,
    )
}

/// A lead leaving activation because it may not be contacted.
fn do_not_contact_event(owner: Option<OwnerId>, reason: &'static str, now: Timestamp) -> MakeEvent {
    Box::new(move |a| {
        let lead_id = a.lead_id.clone();
        let event = pb::LeadDoNotContact {
            lead_id: lead_id.clone(),
            owner_id: owner.as_ref().map(ToString::to_string).unwrap_or_default(),
            reason: reason.into(),
            activation: Some(a),
        };
        NewEvent::new(lead_id, &event, now)
    })
}

/// Tells the services downstream that this lead's personal data is gone from activation.
fn erased_event(erasure_id: String, now: Timestamp) -> MakeEvent {
    Box::new(move |a| {
        let event = pb::LeadErased {
            lead_id: a.lead_id.clone(),
            erasure_id: erasure_id.clone(),
        };
        NewEvent::new(a.lead_id, &event, now)
    })
}

/// The manager alert: a breach, or a lead nobody could take.
fn escalation(
    team: &TeamId,
    manager: Option<OwnerId>,
    cause: BreachCause,
    manager_owns: bool,
    now: Timestamp,
) -> MakeEvent {
    let team = team.clone();
    Box::new(move |a| {
        let lead_id = a.lead_id.clone();
        let event = pb::EscalationRaised {
            lead_id: lead_id.clone(),
            manager_id: manager
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            team_id: team.to_string(),
            cause: cause_to_proto(cause) as i32,
            manager_owns,
            activation: Some(a),
        };
        NewEvent::new(lead_id, &event, now)
    })
}

impl Activation {
    fn batch_slot(&self) -> Result<std::sync::MutexGuard<'_, Option<AcceptBatch>>, HandlerError> {
        self.batch
            .lock()
            .map_err(|_| HandlerError::from("activation batch poisoned"))
    }
}

impl EventHandler for Activation {
    async fn load(&self, tx: &mut Tx, events: &[Event]) -> Result<(), HandlerError> {
        // Whatever a failed batch left is dropped with it.
        self.batch_slot()?.take();
        let loaded = self.load_batch(tx, events).await?;
        *self.batch_slot()? = Some(loaded);
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        let mut batch = self.batch_slot()?.take();
        let applied = self.apply_in_batch(tx, event, &mut batch).await;
        *self.batch_slot()? = batch;
        applied.map_err(HandlerError::from)
    }

    async fn flush(&self, tx: &mut Tx) -> Result<(), HandlerError> {
        let batch = self.batch_slot()?.take();
        if let Some(batch) = batch {
            Self::flush_batch(tx, batch).await?;
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.wake();
    }
}

impl TimerHandler for Activation {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        let lead: Uuid = timer.subject.parse()?;
        let now = self.clock.now_micros();
        match timer.kind.as_str() {
            SLA_TIMER => self.breach(tx, lead, now).await?,
            RETRY_TIMER => self.retry(tx, lead, now).await?,
            other => tracing::warn!(kind = other, "unknown timer kind; dropped"),
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.wake();
    }
}
