//! An enrolment: one lead following one cadence, then nurture, until it answers, opts out or
//! runs out of touches. Every operation takes the playbook in force and `now`, changes the
//! enrolment and returns the [`Change`]s to publish; the service stores the enrolment as JSON
//! and keeps one durable timer per enrolment at [`Enrollment::wake_at`], calling
//! [`Enrollment::on_due`] when it fires.
//!
//! The life of an enrolment:
//! - each step is due a delay after the previous one fired (the first: after enrolment) and
//!   becomes a task for the owner when due, unless the contact's frequency cap defers it;
//!   a task still open when the next one fires is marked missed;
//! - when a step is about to fire, the silence since the previous touch is read: after
//!   `unanswered_before_change` unanswered steps the cadence takes its next `on_silence`
//!   approach, and an email that was never opened, or opened and not answered, gets its
//!   own move; clicks, out-of-office replies and bounces are answered when they arrive;
//! - a reply or a meeting stops the cadence (positive, neutral and meetings hand the lead
//!   on); an unsubscribe or a remove-me reply is an opt-out: nothing fires after it, ever;
//! - a cadence that ends unanswered recycles the lead into nurture, a touch every interval,
//!   and the enrolment finishes after the last one;
//! - momentum decays with silence and escalates to the manager once when it falls below
//!   the threshold, at an instant [`Enrollment::wake_at`] knows in advance.
//!
//! A pause freezes momentum: silence the lead announced (out of office) or the owner chose
//! is not lost momentum.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cadence::{CadencePlan, TimeBasis};
use super::caps::earliest_allowed;
use super::change::{Change, StopReason};
use super::delay::next_working;
use super::engagement::{Recorded, read_email_silence};
use super::{
    Channel, Delay, Engagement, FollowupError, LeadFacts, Momentum, ReplySentiment, Silence,
    SilenceMove, Strategy, chosen_by, select_cadence,
};
use crate::playbook::FollowupPlaybook;

/// How many things `on_due` handles in one call at most; each normally schedules the next
/// one in the future, so the bound only guards against a malformed enrolment.
const MAX_ROUNDS: usize = 16;

/// A lead following a cadence. Self-contained: it carries the facts it was enrolled with and
/// its own copy of the cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Format version of the stored JSON; bumped (with a migration on read) when the shape
    /// changes incompatibly.
    pub version: u32,
    pub lead: Uuid,
    pub facts: LeadFacts,
    pub cadence: CadencePlan,
    /// The playbook rule that chose the cadence (or "default cadence"), for the audit trail.
    #[serde(default)]
    pub chosen_by: String,
    pub enrolled_at: Timestamp,
    pub status: Status,
    /// Every task fired, in order; task `n` is `tasks[n - 1]`.
    pub tasks: Vec<Task>,
    /// What happens next, while the cadence or nurture runs.
    pub next: Option<Upcoming>,
    /// Steps in a row that went out and drew no answer.
    pub unanswered: u32,
    /// How many of the cadence's `on_silence` approaches have been taken (0: none).
    pub alternative: usize,
    pub blocked: Vec<BlockedChannel>,
    pub engagements: Vec<Recorded>,
    pub momentum: Momentum,
    pub escalated_at: Option<Timestamp>,
    pub nurture_touches: u32,
    /// Steps that never fired, each with why: deferred into nurture, never dropped silently.
    pub unfired: Vec<Unfired>,
}

/// Where an enrolment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Following the cadence.
    Active,
    /// Nothing fires until `until` (automatically) or a resume.
    Paused {
        until: Option<Timestamp>,
        cause: PauseCause,
        since: Timestamp,
    },
    /// Stopped for good.
    Stopped { reason: StopReason, at: Timestamp },
    /// The cadence ended unanswered: a touch every nurture interval.
    Nurture,
    /// The last nurture touch went out.
    Finished,
}

/// Why a cadence is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PauseCause {
    /// Someone asked (the owner, a manager, the CRM).
    Requested { reason: String },
    /// The lead is out of office; resumes by itself at the return date.
    OutOfOffice,
}

/// Something an enrolment schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Item {
    /// Step `index` (0-based) of the cadence.
    Step { index: usize },
    /// The end of the cadence: the last step had its time to be answered.
    EndOfCadence,
    /// Nurture touch `touch` (1-based).
    Nurture { touch: u32 },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step { index } => write!(f, "step {}", index + 1),
            Self::EndOfCadence => f.write_str("end of cadence"),
            Self::Nurture { touch } => write!(f, "nurture touch {touch}"),
        }
    }
}

/// How a touch reaches the lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approach {
    pub channel: Channel,
    pub strategy: Strategy,
    pub template: String,
}

/// Why something was moved, deferred, redirected or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Cause {
    /// The contact had as many touches as the frequency cap allows in its window.
    FrequencyCap,
    /// The cadence used up its attempts on the channel.
    AttemptCap {
        channel: Channel,
    },
    /// The channel is blocked for this enrolment (hard bounce, wrong number).
    ChannelBlocked {
        channel: Channel,
    },
    /// The contact has no address or number for the channel.
    Unreachable {
        channel: Channel,
    },
    /// A kind of silence and its move.
    Silence {
        silence: Silence,
    },
    /// This many steps in a row went unanswered.
    Unanswered {
        steps: u32,
    },
    /// Every channel is capped, blocked or unreachable for the rest of the cadence.
    NoChannelLeft,
    /// The cadence ran its course with no answer.
    CadenceFinished,
    HardBounce,
    WrongNumber,
}

/// A step that waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    pub cause: Cause,
    pub from: Timestamp,
    pub until: Timestamp,
}

/// A change of approach for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub from: Approach,
    pub to: Approach,
    pub cause: Cause,
}

/// What happens next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upcoming {
    pub item: Item,
    /// When it is due now, after deferrals and bringing forward.
    pub due_at: Timestamp,
    /// When it was first scheduled for.
    pub planned_at: Timestamp,
    /// One-time overrides of the step's approach, from silence moves.
    pub channel: Option<Channel>,
    pub strategy: Option<Strategy>,
    pub redirects: Vec<Redirect>,
    pub deferrals: Vec<Deferral>,
    /// Whether the silence before this step was read already (a deferred step is not read
    /// twice).
    pub prepared: bool,
    /// Whether a click brought it forward already.
    pub brought_forward: bool,
}

impl Upcoming {
    fn new(item: Item, due_at: Timestamp) -> Self {
        Self {
            item,
            due_at,
            planned_at: due_at,
            channel: None,
            strategy: None,
            redirects: Vec::new(),
            deferrals: Vec::new(),
            prepared: false,
            brought_forward: false,
        }
    }
}

/// A step or nurture touch that became a task for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// 1 for the enrolment's first task, 2 for the next, ...
    pub task: u32,
    pub item: Item,
    pub owner: String,
    pub channel: Channel,
    pub strategy: Strategy,
    pub template: String,
    /// Set on a proof step: the asset to send, or that the proof service had none.
    pub proof: Option<ProofSlot>,
    /// When it was scheduled for, before deferrals.
    pub due_at: Timestamp,
    /// When it became a task.
    pub fired_at: Timestamp,
    /// The approach as the cadence had it, before silence moves and channel changes.
    pub planned: Approach,
    pub redirects: Vec<Redirect>,
    pub deferrals: Vec<Deferral>,
    pub outcome: Option<TaskOutcome>,
    pub completed_at: Option<Timestamp>,
    /// Still open when the next task fired (it may be completed late all the same).
    pub missed: bool,
    /// Withdrawn when the cadence stopped.
    pub cancelled: bool,
}

impl Task {
    /// Whether the owner still has it to do.
    pub fn is_open(&self) -> bool {
        self.outcome.is_none() && !self.missed && !self.cancelled
    }

    /// Whether the touch was made: attempts count toward the channel's cap.
    fn attempted(&self) -> bool {
        !self.cancelled && (self.outcome.is_some() || !self.missed)
    }
}

/// The proof a proof step carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProofSlot {
    /// The asset the proof service chose, with its note for the owner.
    Asset {
        asset_id: String,
        note: Option<String>,
    },
    /// The proof service had nothing (or did not answer): the cadence's default template.
    Unavailable,
}

/// What the caller got from the proof service for a proof step about to fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofPick {
    pub asset_id: String,
    pub note: Option<String>,
}

/// How the owner's task went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// An email, text or LinkedIn message was sent.
    Done,
    /// A call nobody picked up.
    NoAnswer,
    LeftVoicemail,
    /// A call that reached the lead: an answer (what they said is recorded as a reply).
    Connected,
    /// The number is not the lead's: calls and texts are blocked for this enrolment.
    WrongNumber,
}

impl TaskOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::NoAnswer => "no_answer",
            Self::LeftVoicemail => "left_voicemail",
            Self::Connected => "connected",
            Self::WrongNumber => "wrong_number",
        }
    }

    /// Whether the outcome can describe a task on `channel`.
    pub fn fits(self, channel: Channel) -> bool {
        match self {
            Self::Done => channel != Channel::Call,
            Self::NoAnswer | Self::LeftVoicemail | Self::Connected => channel == Channel::Call,
            Self::WrongNumber => matches!(channel, Channel::Call | Channel::Sms),
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel this enrolment never uses again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedChannel {
    pub channel: Channel,
    pub cause: Cause,
    pub at: Timestamp,
}

/// A step that never became a task, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfired {
    pub item: Item,
    pub approach: Approach,
    /// Its deferrals, the last one into nurture.
    pub deferrals: Vec<Deferral>,
}

/// What the plan view shows: the cadence, the tasks and their outcomes, what is next and
/// when, momentum and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub lead: Uuid,
    pub cadence: String,
    pub owner: String,
    pub status: Status,
    pub tasks: Vec<Task>,
    pub next: Option<Upcoming>,
    /// How the next item would go out if it fired now (none for the end of the cadence).
    pub next_approach: Option<Approach>,
    pub momentum: f64,
    pub escalated_at: Option<Timestamp>,
    pub nurture_touches: u32,
    pub unfired: Vec<Unfired>,
    pub wake_at: Option<Timestamp>,
}

impl Enrollment {
    /// The format [`Enrollment::version`] this code writes.
    pub const VERSION: u32 = 1;

    /// Enrols a lead in the cadence the playbook's rules choose for it.
    pub fn enroll(
        playbook: &FollowupPlaybook,
        facts: LeadFacts,
        now: Timestamp,
    ) -> Result<(Self, Vec<Change>), FollowupError> {
        let cadence = select_cadence(playbook, &facts).ok_or(FollowupError::NoCadence)?;
        let chosen_by = chosen_by(playbook, &facts);
        let (mut enrollment, changes) = Self::enroll_in(playbook, cadence.plan(), facts, now)?;
        enrollment.chosen_by = chosen_by;
        Ok((enrollment, changes))
    }

    /// Enrols a lead in a given cadence (an owner's explicit choice, or a test's).
    pub fn enroll_in(
        playbook: &FollowupPlaybook,
        cadence: CadencePlan,
        facts: LeadFacts,
        now: Timestamp,
    ) -> Result<(Self, Vec<Change>), FollowupError> {
        let Some(first) = cadence.steps.first() else {
            return Err(FollowupError::EmptyCadence(cadence.id));
        };
        let first_delay = first.delay;
        let mut enrollment = Self {
            version: Self::VERSION,
            lead: facts.lead,
            facts,
            cadence,
            chosen_by: String::new(),
            enrolled_at: now,
            status: Status::Active,
            tasks: Vec::new(),
            next: None,
            unanswered: 0,
            alternative: 0,
            blocked: Vec::new(),
            engagements: Vec::new(),
            momentum: Momentum::new(playbook.activated_weight(), now),
            escalated_at: None,
            nurture_touches: 0,
            unfired: Vec::new(),
        };
        let due = enrollment.after(playbook, first_delay, now);
        enrollment.next = Some(Upcoming::new(Item::Step { index: 0 }, due));
        let changes = vec![Change::Enrolled {
            cadence: enrollment.cadence.id.clone(),
            first_due: due,
        }];
        Ok((enrollment, changes))
    }

    pub fn owner(&self) -> &str {
        &self.facts.owner_id
    }

    /// Whether nothing can ever fire again.
    pub fn is_over(&self) -> bool {
        matches!(self.status, Status::Stopped { .. } | Status::Finished)
    }

    /// The single next instant anything needs to happen: the next step, the end of a pause,
    /// or the momentum crossing its threshold. `None` when nothing will (stopped, finished,
    /// or paused without an end). An instant in the past means "now".
    pub fn wake_at(&self, playbook: &FollowupPlaybook) -> Option<Timestamp> {
        match &self.status {
            Status::Stopped { .. } | Status::Finished => None,
            Status::Paused { until, .. } => *until,
            Status::Nurture => self.next.as_ref().map(|n| n.due_at),
            Status::Active => {
                let step = self.next.as_ref().map(|n| n.due_at);
                let crossing = self.momentum_crossing(playbook);
                match (step, crossing) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// The momentum score at `now`.
    pub fn momentum(&self, playbook: &FollowupPlaybook, now: Timestamp) -> f64 {
        let at = match &self.status {
            // frozen while paused
            Status::Paused { since, .. } => now.min(*since),
            _ => now,
        };
        self.momentum.at(at, playbook.momentum_half_life())
    }

    /// When momentum will fall below the threshold, while it can still escalate.
    fn momentum_crossing(&self, playbook: &FollowupPlaybook) -> Option<Timestamp> {
        if self.escalated_at.is_some() || self.status != Status::Active {
            return None;
        }
        self.momentum
            .crossing(playbook.momentum_threshold(), playbook.momentum_half_life())
    }

    /// Does whatever is due at `now`: ends a pause whose time has come, escalates lost
    /// momentum, fires the due step (or defers it), recycles a finished cadence into nurture,
    /// fires a nurture touch. `recent_touches` are the contact's touches (every channel, every
    /// enrolment, this one included) for the frequency cap; `proof` is what the proof service
    /// chose when the step about to fire is a proof step (see [`Enrollment::due_is_proof`]).
    /// Nothing ever fires for a stopped or finished enrolment.
    pub fn on_due(
        &mut self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
        recent_touches: &[Timestamp],
        mut proof: Option<ProofPick>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let before = changes.len();
            match &self.status {
                Status::Stopped { .. } | Status::Finished => break,
                Status::Paused {
                    until: Some(until), ..
                } if *until <= now => self.resume_at(playbook, now, &mut changes),
                Status::Paused { .. } => break,
                Status::Active | Status::Nurture => {}
            }
            if let Some(crossing) = self.momentum_crossing(playbook)
                && crossing <= now
            {
                self.escalated_at = Some(now);
                changes.push(Change::MomentumEscalated {
                    score: self.momentum(playbook, now),
                    threshold: playbook.momentum_threshold(),
                    owner: self.facts.owner_id.clone(),
                    manager: self.facts.manager_id.clone(),
                });
            }
            if let Some(next) = &self.next
                && next.due_at <= now
            {
                match next.item {
                    Item::Step { index } => self.fire_step(
                        playbook,
                        index,
                        now,
                        recent_touches,
                        &mut proof,
                        &mut changes,
                    ),
                    Item::EndOfCadence => {
                        self.recycle(playbook, Cause::CadenceFinished, now, &mut changes)
                    }
                    Item::Nurture { touch } => {
                        self.fire_nurture(playbook, touch, now, recent_touches, &mut changes)
                    }
                }
            }
            if changes.len() == before {
                break;
            }
        }
        changes
    }

    /// Whether the step due at `now` would fire as a proof step, so the caller knows to ask
    /// the proof service before calling [`Enrollment::on_due`].
    pub fn due_is_proof(
        &self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
        recent_touches: &[Timestamp],
    ) -> bool {
        let mut trial = self.clone();
        trial
            .on_due(playbook, now, recent_touches, None)
            .iter()
            .any(|c| matches!(c, Change::FollowUpDue { task, .. } if task.strategy == Strategy::Proof))
    }

    /// The owner finished task `task` (1-based) with `outcome`.
    pub fn complete_task(
        &mut self,
        playbook: &FollowupPlaybook,
        task: u32,
        outcome: TaskOutcome,
        now: Timestamp,
    ) -> Result<Vec<Change>, FollowupError> {
        let count = self.tasks.len() as u32;
        let entry = task
            .checked_sub(1)
            .and_then(|i| self.tasks.get_mut(i as usize))
            .ok_or(FollowupError::UnknownTask { task, tasks: count })?;
        if entry.cancelled {
            return Err(FollowupError::TaskCancelled { task });
        }
        if let Some(outcome) = entry.outcome {
            return Err(FollowupError::TaskAlreadyCompleted { task, outcome });
        }
        if !outcome.fits(entry.channel) {
            return Err(FollowupError::OutcomeNotForChannel {
                outcome,
                channel: entry.channel,
            });
        }
        entry.outcome = Some(outcome);
        entry.completed_at = Some(now);
        let mut changes = vec![Change::TaskCompleted { task, outcome }];
        match outcome {
            TaskOutcome::Connected => {
                // A conversation is an answer: the silence streak ends.
                self.unanswered = 0;
                self.momentum = self.momentum.add(
                    playbook.connected_call_weight(),
                    now,
                    playbook.momentum_half_life(),
                );
            }
            TaskOutcome::WrongNumber => {
                for channel in [Channel::Call, Channel::Sms] {
                    self.block(channel, Cause::WrongNumber, now, &mut changes);
                }
                self.stop_if_unreachable(playbook, now, &mut changes);
            }
            TaskOutcome::Done | TaskOutcome::NoAnswer | TaskOutcome::LeftVoicemail => {}
        }
        Ok(changes)
    }

    /// Records what the lead did and acts on it: replies and meetings stop the cadence,
    /// opt-outs stop everything, silence signals get their move.
    pub fn record_engagement(
        &mut self,
        playbook: &FollowupPlaybook,
        engagement: Engagement,
        now: Timestamp,
    ) -> Vec<Change> {
        self.engagements.push(Recorded {
            engagement: engagement.clone(),
            at: now,
        });
        let weight = playbook.weight(&engagement);
        if matches!(self.status, Status::Paused { .. }) {
            // Frozen at the pause: the engagement adds to the frozen score.
            self.momentum.score += weight;
        } else if weight > 0.0 {
            self.momentum = self
                .momentum
                .add(weight, now, playbook.momentum_half_life());
        }
        if engagement.is_opt_out() {
            return self.opt_out(now);
        }
        let mut changes = Vec::new();
        if matches!(self.status, Status::Stopped { .. }) {
            return changes;
        }
        let running = matches!(self.status, Status::Active | Status::Nurture);
        match engagement {
            Engagement::Reply { sentiment } => {
                let reason = match sentiment {
                    ReplySentiment::Positive => StopReason::PositiveReply,
                    ReplySentiment::Neutral => StopReason::NeutralReply,
                    ReplySentiment::Negative | ReplySentiment::RemoveMe => {
                        StopReason::NegativeReply
                    }
                };
                self.stop(reason, now, &mut changes);
            }
            Engagement::MeetingBooked => self.stop(StopReason::MeetingBooked, now, &mut changes),
            Engagement::Open | Engagement::SiteVisit | Engagement::Unsubscribe => {}
            Engagement::Click if running => {
                let silent = self.last_approach();
                self.answer_silence(playbook, Silence::Clicked, silent, None, now, &mut changes);
            }
            Engagement::OutOfOffice { until } if running => {
                let silent = self.last_approach();
                self.answer_silence(
                    playbook,
                    Silence::OutOfOffice,
                    silent,
                    until,
                    now,
                    &mut changes,
                );
            }
            Engagement::Bounce { channel, hard } => {
                if hard {
                    // Whatever the playbook's move, a hard bounce is never retried.
                    self.block(channel, Cause::HardBounce, now, &mut changes);
                }
                if running {
                    let silent = self.last_approach().map(|a| Approach { channel, ..a });
                    let silent = silent.or(Some(Approach {
                        channel,
                        strategy: Strategy::Value,
                        template: String::new(),
                    }));
                    self.answer_silence(
                        playbook,
                        Silence::Bounced,
                        silent,
                        None,
                        now,
                        &mut changes,
                    );
                }
                if hard {
                    self.stop_if_unreachable(playbook, now, &mut changes);
                }
            }
            Engagement::Click | Engagement::OutOfOffice { .. } => {}
        }
        changes
    }

    /// Pauses the cadence until `until` (or a resume) for `reason`.
    pub fn pause(
        &mut self,
        playbook: &FollowupPlaybook,
        until: Option<Timestamp>,
        reason: String,
        now: Timestamp,
    ) -> Result<Vec<Change>, FollowupError> {
        match &self.status {
            Status::Stopped { reason, .. } => {
                return Err(FollowupError::CadenceStopped { reason: *reason });
            }
            Status::Finished => return Err(FollowupError::Finished),
            Status::Paused { .. } => return Err(FollowupError::AlreadyPaused),
            Status::Active | Status::Nurture => {}
        }
        if until.is_some_and(|u| u <= now) {
            return Err(FollowupError::PauseEndsInThePast);
        }
        let mut changes = Vec::new();
        self.pause_for(
            playbook,
            until,
            PauseCause::Requested { reason },
            now,
            &mut changes,
        );
        Ok(changes)
    }

    /// Resumes a paused cadence; what is next is due its delay after `now`.
    pub fn resume(
        &mut self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
    ) -> Result<Vec<Change>, FollowupError> {
        match &self.status {
            Status::Paused { .. } => {}
            Status::Stopped { reason, .. } => {
                return Err(FollowupError::CadenceStopped { reason: *reason });
            }
            Status::Finished => return Err(FollowupError::Finished),
            Status::Active | Status::Nurture => return Err(FollowupError::NotPaused),
        }
        let mut changes = Vec::new();
        self.resume_at(playbook, now, &mut changes);
        Ok(changes)
    }

    /// Moves the lead and its open tasks to a new owner (and their manager and time zone).
    pub fn reassign(
        &mut self,
        owner: &str,
        manager: Option<&str>,
        owner_timezone: Option<&str>,
    ) -> Vec<Change> {
        let from = std::mem::replace(&mut self.facts.owner_id, owner.to_owned());
        self.facts.manager_id = manager.map(str::to_owned);
        self.facts.owner_timezone = owner_timezone.map(str::to_owned);
        let mut moved = Vec::new();
        for task in self.tasks.iter_mut().filter(|t| t.is_open()) {
            task.owner = owner.to_owned();
            moved.push(task.task);
        }
        if from == owner {
            return Vec::new();
        }
        vec![Change::TasksReassigned {
            from,
            to: owner.to_owned(),
            tasks: moved,
        }]
    }

    /// Forgets the person: how to reach them, and the proof service's notes on proof tasks
    /// (they quote what the lead said in an objection). What was sent, when and how it went
    /// stays: caps and reports count it.
    pub fn erase_personal_data(&mut self) {
        self.facts.erase_personal_data();
        for task in &mut self.tasks {
            if let Some(ProofSlot::Asset { note, .. }) = task.proof.as_mut() {
                *note = None;
            }
        }
    }

    /// The contact opted out: every pending step stops now and for good, open tasks are
    /// withdrawn, and the caller is told to suppress the contact. Idempotent.
    pub fn opt_out(&mut self, now: Timestamp) -> Vec<Change> {
        if matches!(
            self.status,
            Status::Stopped {
                reason: StopReason::OptedOut,
                ..
            }
        ) {
            return Vec::new();
        }
        let mut changes = Vec::new();
        self.stop(StopReason::OptedOut, now, &mut changes);
        changes.push(Change::OptOutRequired {
            email: self.facts.email.clone(),
            phone: self.facts.phone.clone(),
        });
        changes
    }

    /// The plan view at `now`.
    pub fn plan(&self, playbook: &FollowupPlaybook, now: Timestamp) -> Plan {
        let next_approach = self.next.as_ref().and_then(|n| match n.item {
            Item::Step { index } => Some(self.approach_for(index, n)),
            Item::Nurture { .. } => Some(self.nurture_approach(playbook, n)),
            Item::EndOfCadence => None,
        });
        Plan {
            lead: self.lead,
            cadence: self.cadence.id.clone(),
            owner: self.facts.owner_id.clone(),
            status: self.status.clone(),
            tasks: self.tasks.clone(),
            next: self.next.clone(),
            next_approach,
            momentum: self.momentum(playbook, now),
            escalated_at: self.escalated_at,
            nurture_touches: self.nurture_touches,
            unfired: self.unfired.clone(),
            wake_at: self.wake_at(playbook),
        }
    }

    // --- time ---

    /// The zone business time is counted in: per the cadence, the lead's (then the owner's)
    /// or the owner's, then the playbook's default. A zone that does not parse is skipped.
    fn zone(&self, playbook: &FollowupPlaybook) -> TimeZone {
        let parse =
            |zone: &Option<String>| zone.as_deref().and_then(|z| TimeZone::get(z.trim()).ok());
        let zone = match self.cadence.timezone {
            TimeBasis::Lead => {
                parse(&self.facts.lead_timezone).or_else(|| parse(&self.facts.owner_timezone))
            }
            TimeBasis::Owner => parse(&self.facts.owner_timezone),
        };
        zone.unwrap_or_else(|| playbook.timezone().clone())
    }

    fn after(&self, playbook: &FollowupPlaybook, delay: Delay, start: Timestamp) -> Timestamp {
        let zone = self.zone(playbook);
        delay.after(start, playbook.calendar(&zone))
    }

    fn next_working(&self, playbook: &FollowupPlaybook, at: Timestamp) -> Timestamp {
        let zone = self.zone(playbook);
        next_working(playbook.calendar(&zone), at)
    }

    /// The delay of a scheduled item, counted from its predecessor (or a resume).
    fn delay_of(&self, playbook: &FollowupPlaybook, item: Item) -> Delay {
        match item {
            Item::Step { index } => self
                .cadence
                .steps
                .get(index)
                .map_or(Delay::WallClock(jiff::SignedDuration::ZERO), |s| s.delay),
            Item::EndOfCadence => playbook.nurture_after_cadence(),
            Item::Nurture { .. } => playbook.nurture_interval(),
        }
    }

    // --- approaches and channels ---

    /// How step `index` goes out: as the cadence has it, with the `on_silence` approach taken
    /// (a break-up step keeps its angle: it is the deliberate last word), and the upcoming
    /// item's one-time overrides on top.
    fn approach_for(&self, index: usize, next: &Upcoming) -> Approach {
        let mut approach = self.base_approach(index);
        if let Some(channel) = next.channel {
            approach.channel = channel;
        }
        if let Some(strategy) = next.strategy {
            approach.strategy = strategy;
        }
        approach
    }

    /// Step `index` with the `on_silence` approach taken, without one-time overrides.
    fn base_approach(&self, index: usize) -> Approach {
        let Some(step) = self.cadence.steps.get(index) else {
            return Approach {
                channel: Channel::Email,
                strategy: Strategy::Value,
                template: String::new(),
            };
        };
        let mut approach = Approach {
            channel: step.channel,
            strategy: step.strategy,
            template: step.template.clone(),
        };
        if let Some(alt) = self
            .alternative
            .checked_sub(1)
            .and_then(|i| self.cadence.on_silence.get(i))
            && step.strategy != Strategy::BreakUp
        {
            if let Some(strategy) = alt.strategy {
                approach.strategy = strategy;
            }
            if let Some(channel) = alt.channel {
                approach.channel = channel;
            }
            if let Some(template) = &alt.template {
                approach.template = template.clone();
            }
        }
        approach
    }

    fn nurture_approach(&self, playbook: &FollowupPlaybook, next: &Upcoming) -> Approach {
        Approach {
            channel: next.channel.unwrap_or(playbook.nurture_channel()),
            strategy: next.strategy.unwrap_or(playbook.nurture_strategy()),
            template: playbook.nurture_template().to_owned(),
        }
    }

    /// The approach of the upcoming item, if it is a touch.
    fn upcoming_approach(&self, playbook: &FollowupPlaybook) -> Option<Approach> {
        let next = self.next.as_ref()?;
        match next.item {
            Item::Step { index } => Some(self.approach_for(index, next)),
            Item::Nurture { .. } => Some(self.nurture_approach(playbook, next)),
            Item::EndOfCadence => None,
        }
    }

    fn last_approach(&self) -> Option<Approach> {
        self.tasks.last().map(|t| Approach {
            channel: t.channel,
            strategy: t.strategy,
            template: t.template.clone(),
        })
    }

    fn is_blocked(&self, channel: Channel) -> bool {
        self.blocked.iter().any(|b| b.channel == channel)
    }

    /// Attempts on `channel` in the cadence (nurture touches do not count).
    fn attempts(&self, channel: Channel) -> u32 {
        self.tasks
            .iter()
            .filter(|t| {
                t.channel == channel && matches!(t.item, Item::Step { .. }) && t.attempted()
            })
            .count() as u32
    }

    /// Whether a touch may go out on `channel`; with `capped`, within the cadence's attempt
    /// cap too. The error is why not.
    fn usable(
        &self,
        playbook: &FollowupPlaybook,
        channel: Channel,
        capped: bool,
    ) -> Result<(), Cause> {
        if self.is_blocked(channel) {
            Err(Cause::ChannelBlocked { channel })
        } else if !self.facts.reachable_on(channel) {
            Err(Cause::Unreachable { channel })
        } else if capped && self.attempts(channel) >= playbook.attempt_cap(channel) {
            Err(Cause::AttemptCap { channel })
        } else {
            Ok(())
        }
    }

    /// The first usable channel other than `except`: the cadence's `on_silence` channels
    /// first (the operator's choice), then every channel in [`Channel::ALL`] order.
    fn other_channel(
        &self,
        playbook: &FollowupPlaybook,
        except: Channel,
        capped: bool,
    ) -> Option<Channel> {
        let preferred = self.cadence.on_silence.iter().filter_map(|a| a.channel);
        preferred
            .chain(Channel::ALL)
            .find(|c| *c != except && self.usable(playbook, *c, capped).is_ok())
    }

    /// Another angle than `except`: the cadence's `on_silence` angles first, then the next
    /// in the rotation.
    fn other_strategy(&self, except: Strategy) -> Strategy {
        let preferred = self.cadence.on_silence.iter().filter_map(|a| a.strategy);
        let start = Strategy::ROTATION
            .iter()
            .position(|s| *s == except)
            .map_or(0, |i| i + 1);
        let rotation = (0..Strategy::ROTATION.len())
            .map(|i| Strategy::ROTATION[(start + i) % Strategy::ROTATION.len()]);
        preferred
            .chain(rotation)
            .find(|s| *s != except && *s != Strategy::BreakUp)
            .unwrap_or(Strategy::CheckIn)
    }

    fn block(&mut self, channel: Channel, cause: Cause, now: Timestamp, changes: &mut Vec<Change>) {
        if self.is_blocked(channel) {
            return;
        }
        self.blocked.push(BlockedChannel {
            channel,
            cause,
            at: now,
        });
        changes.push(Change::ChannelBlocked { channel, cause });
    }

    /// Stops a running enrolment that has no channel left at all.
    fn stop_if_unreachable(
        &mut self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        if self.is_over() {
            return;
        }
        if Channel::ALL
            .iter()
            .all(|c| self.usable(playbook, *c, false).is_err())
        {
            self.stop(StopReason::Unreachable, now, changes);
        }
    }

    // --- silence ---

    /// Reads the silence before step `index` fires: the unanswered streak (which may take
    /// the next `on_silence` approach) and, after a sent email, whether it was opened.
    fn read_silence(
        &mut self,
        playbook: &FollowupPlaybook,
        index: usize,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let Some(previous) = self
            .tasks
            .iter()
            .rev()
            .find(|t| matches!(t.item, Item::Step { .. }))
            .cloned()
        else {
            return;
        };
        // A touch the owner made and the lead did not answer; an unmade one is the owner's
        // silence, not the lead's.
        if previous
            .outcome
            .is_some_and(|o| o != TaskOutcome::Connected)
        {
            self.unanswered += 1;
        }
        let streak = self.unanswered;
        if streak >= playbook.unanswered_before_change()
            && self.alternative < self.cadence.on_silence.len()
            && let Some(next) = self.next.clone()
        {
            let from = self.approach_for(index, &next);
            self.alternative += 1;
            self.unanswered = 0;
            let to = self.approach_for(index, &next);
            self.redirect(from, to, Cause::Unanswered { steps: streak }, changes);
        }
        if previous.channel.tracks_opens() && previous.outcome == Some(TaskOutcome::Done) {
            // A click was answered when it came; bounces and out-of-office too.
            match read_email_silence(&self.engagements, previous.fired_at, now) {
                Some(silence @ (Silence::NoOpen | Silence::OpenedNoReply)) => {
                    let silent = Approach {
                        channel: previous.channel,
                        strategy: previous.strategy,
                        template: previous.template.clone(),
                    };
                    self.answer_silence(playbook, silence, Some(silent), None, now, changes);
                }
                Some(Silence::Clicked | Silence::OutOfOffice | Silence::Bounced) | None => {}
            }
        }
    }

    /// Applies the playbook's move for `silence` to what is next. `silent` is the approach
    /// that met the silence; `until` the out-of-office return date.
    fn answer_silence(
        &mut self,
        playbook: &FollowupPlaybook,
        silence: Silence,
        silent: Option<Approach>,
        until: Option<Timestamp>,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let response = playbook.silence_move(silence);
        changes.push(Change::SilenceRead {
            silence,
            response,
            task: self.tasks.last().map(|t| t.task),
        });
        let cause = Cause::Silence { silence };
        let capped = matches!(self.next.as_ref().map(|n| n.item), Some(Item::Step { .. }));
        match response {
            SilenceMove::Continue => {}
            SilenceMove::SwitchChannel => {
                let (Some(silent), Some(from)) = (silent, self.upcoming_approach(playbook)) else {
                    return;
                };
                if from.channel != silent.channel {
                    return;
                }
                if let Some(channel) = self.other_channel(playbook, silent.channel, capped) {
                    self.override_next(from, Some(channel), None, cause, changes);
                }
            }
            SilenceMove::ChangeAngle => {
                let (Some(silent), Some(from)) = (silent, self.upcoming_approach(playbook)) else {
                    return;
                };
                if from.strategy != silent.strategy || from.strategy == Strategy::BreakUp {
                    return;
                }
                let strategy = self.other_strategy(silent.strategy);
                self.override_next(from, None, Some(strategy), cause, changes);
            }
            SilenceMove::CallNow => {
                let Some(from) = self.upcoming_approach(playbook) else {
                    return;
                };
                if self.next.as_ref().is_some_and(|n| n.brought_forward) {
                    return;
                }
                let soon = self.next_working(playbook, now);
                let call_ok = self.usable(playbook, Channel::Call, capped).is_ok();
                let channel = if call_ok { Channel::Call } else { from.channel };
                if channel != from.channel {
                    self.override_next(from, Some(channel), None, cause, changes);
                }
                if let Some(next) = self.next.as_mut() {
                    next.brought_forward = true;
                    if soon < next.due_at {
                        changes.push(Change::StepBroughtForward {
                            item: next.item,
                            from: next.due_at,
                            to: soon,
                            channel,
                        });
                        next.due_at = soon;
                    }
                }
            }
            SilenceMove::PauseUntilReturn => {
                let until = until.unwrap_or_else(|| {
                    self.after(playbook, playbook.out_of_office_without_date(), now)
                });
                if until > now {
                    self.pause_for(playbook, Some(until), PauseCause::OutOfOffice, now, changes);
                }
            }
        }
    }

    /// Overrides the upcoming touch's channel and/or angle for one time.
    fn override_next(
        &mut self,
        from: Approach,
        channel: Option<Channel>,
        strategy: Option<Strategy>,
        cause: Cause,
        changes: &mut Vec<Change>,
    ) {
        let Some(next) = self.next.as_mut() else {
            return;
        };
        let mut to = from.clone();
        if let Some(channel) = channel {
            next.channel = Some(channel);
            to.channel = channel;
        }
        if let Some(strategy) = strategy {
            next.strategy = Some(strategy);
            to.strategy = strategy;
        }
        self.redirect(from, to, cause, changes);
    }

    /// Records a change of approach on the upcoming item and emits it.
    fn redirect(&mut self, from: Approach, to: Approach, cause: Cause, changes: &mut Vec<Change>) {
        if from == to {
            return;
        }
        let Some(next) = self.next.as_mut() else {
            return;
        };
        next.redirects.push(Redirect {
            from: from.clone(),
            to: to.clone(),
            cause,
        });
        changes.push(Change::StrategyChanged {
            item: next.item,
            from,
            to,
            cause,
        });
    }

    // --- firing ---

    /// Defers the upcoming item when the frequency cap does not allow a touch at `now`;
    /// true when it did.
    fn defer_for_cap(
        &mut self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
        recent_touches: &[Timestamp],
        business: bool,
        changes: &mut Vec<Change>,
    ) -> bool {
        let allowed = earliest_allowed(
            recent_touches,
            playbook.frequency_touches(),
            playbook.frequency_window(),
            now,
        );
        if allowed <= now {
            return false;
        }
        // A business-time step stays in business hours after waiting.
        let until = if business {
            self.next_working(playbook, allowed)
        } else {
            allowed
        };
        let Some(next) = self.next.as_mut() else {
            return false;
        };
        let deferral = Deferral {
            cause: Cause::FrequencyCap,
            from: now,
            until,
        };
        next.deferrals.push(deferral);
        next.due_at = until;
        changes.push(Change::StepDeferred {
            item: next.item,
            cause: deferral.cause,
            from: now,
            until,
        });
        true
    }

    fn fire_step(
        &mut self,
        playbook: &FollowupPlaybook,
        index: usize,
        now: Timestamp,
        recent_touches: &[Timestamp],
        proof: &mut Option<ProofPick>,
        changes: &mut Vec<Change>,
    ) {
        let Some(step) = self.cadence.steps.get(index).cloned() else {
            // The stored cadence is shorter than the index (a hand-edited row): end it
            // rather than lose the lead.
            self.schedule(
                Item::EndOfCadence,
                playbook.nurture_after_cadence(),
                playbook,
                now,
            );
            return;
        };
        if !self.next.as_ref().is_some_and(|n| n.prepared) {
            self.read_silence(playbook, index, now, changes);
            if let Some(next) = self.next.as_mut() {
                next.prepared = true;
            }
            if !matches!(self.status, Status::Active) {
                return; // the silence move paused the cadence
            }
        }
        if self.defer_for_cap(
            playbook,
            now,
            recent_touches,
            step.delay.is_business(),
            changes,
        ) {
            return;
        }
        self.mark_missed(changes);
        let Some(next) = self.next.clone() else {
            return;
        };
        let mut approach = self.approach_for(index, &next);
        if let Err(cause) = self.usable(playbook, approach.channel, true) {
            match self.other_channel(playbook, approach.channel, true) {
                Some(channel) => {
                    let to = Approach {
                        channel,
                        ..approach.clone()
                    };
                    self.redirect(approach, to.clone(), cause, changes);
                    approach = to;
                }
                None => {
                    self.defer_into_nurture(playbook, approach, cause, now, changes);
                    return;
                }
            }
        }
        let slot = (approach.strategy == Strategy::Proof).then(|| match proof.take() {
            Some(pick) => ProofSlot::Asset {
                asset_id: pick.asset_id,
                note: pick.note,
            },
            None => ProofSlot::Unavailable,
        });
        if slot == Some(ProofSlot::Unavailable)
            && let Some(template) = &self.cadence.default_template
        {
            approach.template = template.clone();
        }
        let planned = Approach {
            channel: step.channel,
            strategy: step.strategy,
            template: step.template.clone(),
        };
        let next = self.next.take().unwrap_or(next);
        self.push_task(next, approach, planned, slot, now, changes);
        match self.cadence.steps.get(index + 1) {
            Some(following) => {
                let delay = following.delay;
                self.schedule(Item::Step { index: index + 1 }, delay, playbook, now);
            }
            None => self.schedule(
                Item::EndOfCadence,
                playbook.nurture_after_cadence(),
                playbook,
                now,
            ),
        }
    }

    /// No channel is left for the step: it goes to nurture with its deferrals, recorded.
    fn defer_into_nurture(
        &mut self,
        playbook: &FollowupPlaybook,
        approach: Approach,
        cause: Cause,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let Some(mut next) = self.next.take() else {
            return;
        };
        let first_touch = self.after(playbook, playbook.nurture_interval(), now);
        let cause = match cause {
            Cause::AttemptCap { .. } => cause,
            _ => Cause::NoChannelLeft,
        };
        let deferral = Deferral {
            cause,
            from: now,
            until: first_touch,
        };
        next.deferrals.push(deferral);
        changes.push(Change::StepDeferred {
            item: next.item,
            cause,
            from: now,
            until: first_touch,
        });
        self.unfired.push(Unfired {
            item: next.item,
            approach,
            deferrals: next.deferrals,
        });
        self.recycle(playbook, Cause::NoChannelLeft, now, changes);
    }

    /// The cadence is over without an answer: long-term nurture, unless no channel is left.
    fn recycle(
        &mut self,
        playbook: &FollowupPlaybook,
        cause: Cause,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        self.mark_missed(changes);
        self.next = None;
        let channel = playbook.nurture_channel();
        if self.usable(playbook, channel, false).is_err()
            && self.other_channel(playbook, channel, false).is_none()
        {
            self.stop(StopReason::Unreachable, now, changes);
            return;
        }
        self.status = Status::Nurture;
        self.schedule(
            Item::Nurture { touch: 1 },
            playbook.nurture_interval(),
            playbook,
            now,
        );
        let first_touch_at = self.next.as_ref().map_or(now, |n| n.due_at);
        changes.push(Change::RecycledToNurture {
            cause,
            touches: playbook.nurture_touches(),
            first_touch_at,
        });
    }

    fn fire_nurture(
        &mut self,
        playbook: &FollowupPlaybook,
        touch: u32,
        now: Timestamp,
        recent_touches: &[Timestamp],
        changes: &mut Vec<Change>,
    ) {
        let business = playbook.nurture_interval().is_business();
        if self.defer_for_cap(playbook, now, recent_touches, business, changes) {
            return;
        }
        self.mark_missed(changes);
        let Some(next) = self.next.clone() else {
            return;
        };
        let mut approach = self.nurture_approach(playbook, &next);
        let planned = Approach {
            channel: playbook.nurture_channel(),
            strategy: playbook.nurture_strategy(),
            template: playbook.nurture_template().to_owned(),
        };
        if let Err(cause) = self.usable(playbook, approach.channel, false) {
            let Some(channel) = self.other_channel(playbook, approach.channel, false) else {
                self.stop(StopReason::Unreachable, now, changes);
                return;
            };
            let to = Approach {
                channel,
                ..approach.clone()
            };
            self.redirect(approach, to.clone(), cause, changes);
            approach = to;
        }
        let next = self.next.take().unwrap_or(next);
        self.push_task(next, approach, planned, None, now, changes);
        self.nurture_touches += 1;
        if touch < playbook.nurture_touches() {
            self.schedule(
                Item::Nurture { touch: touch + 1 },
                playbook.nurture_interval(),
                playbook,
                now,
            );
        } else {
            self.status = Status::Finished;
            changes.push(Change::NurtureFinished {
                touches: self.nurture_touches,
            });
        }
    }

    fn push_task(
        &mut self,
        next: Upcoming,
        approach: Approach,
        planned: Approach,
        proof: Option<ProofSlot>,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let task = Task {
            task: self.tasks.len() as u32 + 1,
            item: next.item,
            owner: self.facts.owner_id.clone(),
            channel: approach.channel,
            strategy: approach.strategy,
            template: approach.template,
            proof,
            due_at: next.planned_at,
            fired_at: now,
            planned,
            redirects: next.redirects,
            deferrals: next.deferrals,
            outcome: None,
            completed_at: None,
            missed: false,
            cancelled: false,
        };
        self.tasks.push(task.clone());
        changes.push(Change::FollowUpDue {
            lead: self.lead,
            cadence: self.cadence.id.clone(),
            task,
        });
    }

    fn schedule(&mut self, item: Item, delay: Delay, playbook: &FollowupPlaybook, now: Timestamp) {
        let due = self.after(playbook, delay, now);
        self.next = Some(Upcoming::new(item, due));
    }

    fn mark_missed(&mut self, changes: &mut Vec<Change>) {
        for task in self.tasks.iter_mut().filter(|t| t.is_open()) {
            task.missed = true;
            changes.push(Change::TaskMissed {
                task: task.task,
                owner: task.owner.clone(),
            });
        }
    }

    // --- pause and stop ---

    fn pause_for(
        &mut self,
        playbook: &FollowupPlaybook,
        until: Option<Timestamp>,
        cause: PauseCause,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        // Freeze momentum at the pause; engagement during it adds to the frozen score.
        let score = self.momentum.at(now, playbook.momentum_half_life());
        self.momentum = Momentum::new(score, now.max(self.momentum.as_of));
        self.status = Status::Paused {
            until,
            cause: cause.clone(),
            since: now,
        };
        changes.push(Change::Paused { until, cause });
    }

    fn resume_at(
        &mut self,
        playbook: &FollowupPlaybook,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        let Status::Paused { since, .. } = self.status else {
            return;
        };
        // Momentum was frozen at the pause: carry the score over to now.
        let score = self.momentum.at(since, playbook.momentum_half_life());
        self.momentum = Momentum::new(score, now.max(since));
        let nurture = matches!(
            self.next.as_ref().map(|n| n.item),
            Some(Item::Nurture { .. })
        );
        self.status = if nurture {
            Status::Nurture
        } else {
            Status::Active
        };
        if let Some(item) = self.next.as_ref().map(|n| n.item) {
            let due = self.after(playbook, self.delay_of(playbook, item), now);
            if let Some(next) = self.next.as_mut() {
                next.due_at = due;
            }
        }
        changes.push(Change::Resumed {
            next_due: self.next.as_ref().map(|n| n.due_at),
        });
    }

    fn stop(&mut self, reason: StopReason, now: Timestamp, changes: &mut Vec<Change>) {
        let mut cancelled = Vec::new();
        for task in self.tasks.iter_mut().filter(|t| t.is_open()) {
            task.cancelled = true;
            cancelled.push(task.task);
        }
        if !cancelled.is_empty() {
            changes.push(Change::TasksCancelled { tasks: cancelled });
        }
        self.next = None;
        self.status = Status::Stopped { reason, at: now };
        changes.push(Change::CadenceStopped {
            reason,
            hand_off: reason.hands_off(),
        });
    }
}

#[cfg(test)]
mod tests;
