//! The changes an enrolment's operations emit: the domain events the service appends to its
//! log in the same transaction as the enrolment, and publishes (`FollowUpDue`,
//! `StrategyChanged`, `MomentumEscalated`, `CadenceStopped`, `RecycledToNurture`, ...), plus
//! the facts the service must act on (`OptOutRequired`: suppress the contact).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enrollment::{Approach, Cause, Item, PauseCause, Task, TaskOutcome};
use super::{Channel, Silence, SilenceMove};

/// One thing that happened to an enrolment.
// Changes live only from an operation to the event log, a handful at a time: boxing the task
// would cost every reader a dereference and save nothing worth having.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Change {
    /// The lead was enrolled; its first step is due at `first_due`.
    Enrolled {
        cadence: String,
        first_due: Timestamp,
    },
    /// A step (or nurture touch) became a task for the owner.
    FollowUpDue {
        lead: Uuid,
        cadence: String,
        task: Task,
    },
    /// A task was still open when the next one became due.
    TaskMissed {
        task: u32,
        owner: String,
    },
    TaskCompleted {
        task: u32,
        outcome: TaskOutcome,
    },
    /// Open tasks withdrawn because the cadence stopped: nobody should act on them.
    TasksCancelled {
        tasks: Vec<u32>,
    },
    /// Open tasks moved to a new owner.
    TasksReassigned {
        from: String,
        to: String,
        tasks: Vec<u32>,
    },
    /// A step waits, and why; it is not dropped.
    StepDeferred {
        item: Item,
        cause: Cause,
        from: Timestamp,
        until: Timestamp,
    },
    /// A click brought the next step forward.
    StepBroughtForward {
        item: Item,
        from: Timestamp,
        to: Timestamp,
        channel: Channel,
    },
    /// The approach (channel, angle or template) of the steps changed, and why.
    StrategyChanged {
        item: Item,
        from: Approach,
        to: Approach,
        cause: Cause,
    },
    /// A silence was read and answered with a move (which may then show as other changes).
    SilenceRead {
        silence: Silence,
        response: SilenceMove,
        /// The task the silence followed, when there was one.
        task: Option<u32>,
    },
    /// The channel is never used again in this enrolment.
    ChannelBlocked {
        channel: Channel,
        cause: Cause,
    },
    /// Momentum fell below the playbook threshold; the lead's manager should look.
    MomentumEscalated {
        score: f64,
        threshold: f64,
        owner: String,
        manager: Option<String>,
    },
    Paused {
        until: Option<Timestamp>,
        cause: PauseCause,
    },
    Resumed {
        next_due: Option<Timestamp>,
    },
    /// The cadence stopped for good; `hand_off` when the lead goes on to sales.
    CadenceStopped {
        reason: StopReason,
        hand_off: bool,
    },
    /// The contact opted out: the caller must suppress them everywhere.
    OptOutRequired {
        email: Option<String>,
        phone: Option<String>,
    },
    /// The cadence ended with no response (or had no channel left): long-term nurture.
    RecycledToNurture {
        cause: Cause,
        touches: u32,
        first_touch_at: Timestamp,
    },
    /// The last nurture touch went out; nothing more is scheduled.
    NurtureFinished {
        touches: u32,
    },
}

impl Change {
    /// The event type the service publishes this change as.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Enrolled { .. } => "LeadEnrolled",
            Self::FollowUpDue { .. } => "FollowUpDue",
            Self::TaskMissed { .. } => "TaskMissed",
            Self::TaskCompleted { .. } => "TaskCompleted",
            Self::TasksCancelled { .. } => "TasksCancelled",
            Self::TasksReassigned { .. } => "TasksReassigned",
            Self::StepDeferred { .. } => "StepDeferred",
            Self::StepBroughtForward { .. } => "StepBroughtForward",
            Self::StrategyChanged { .. } => "StrategyChanged",
            Self::SilenceRead { .. } => "SilenceRead",
            Self::ChannelBlocked { .. } => "ChannelBlocked",
            Self::MomentumEscalated { .. } => "MomentumEscalated",
            Self::Paused { .. } => "CadencePaused",
            Self::Resumed { .. } => "CadenceResumed",
            Self::CadenceStopped { .. } => "CadenceStopped",
            Self::OptOutRequired { .. } => "OptOutRequired",
            Self::RecycledToNurture { .. } => "RecycledToNurture",
            Self::NurtureFinished { .. } => "NurtureFinished",
        }
    }
}

/// Why a cadence stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    PositiveReply,
    NeutralReply,
    MeetingBooked,
    /// "Not interested": stop, without nurture (a lead that said no is not recycled into
    /// monthly touches) and without suppression (they did not opt out).
    NegativeReply,
    /// Unsubscribed or asked to be removed.
    OptedOut,
    /// No channel is left to reach the contact on (bounced, wrong number, no details).
    Unreachable,
}

impl StopReason {
    /// Whether the lead goes on to sales: a conversation has started.
    pub fn hands_off(self) -> bool {
        matches!(
            self,
            Self::PositiveReply | Self::NeutralReply | Self::MeetingBooked
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PositiveReply => "positive_reply",
            Self::NeutralReply => "neutral_reply",
            Self::MeetingBooked => "meeting_booked",
            Self::NegativeReply => "negative_reply",
            Self::OptedOut => "opted_out",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
