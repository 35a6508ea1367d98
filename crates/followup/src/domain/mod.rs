//! Followup's domain: what followup knows about an activated lead, and the rules that pick
//! its cadence, turn the cadence's steps into tasks for its owner, read engagement and
//! silence, keep the contact from being over-pushed, track momentum and recycle a lead that
//! never answered into long-term nurture. Pure and deterministic: no gRPC, no SQL, no clock
//! (functions take `now`), no I/O.
//!
//! Read in the order a lead meets the rules:
//! - [`select`]: which cadence a lead is enrolled in, and [`cadence`]: the copy of it the
//!   enrolment follows;
//! - [`delay`]: when a step is due, in wall-clock time or in business hours and days of the
//!   lead's or the owner's time zone;
//! - [`enrollment`]: the enrolment itself, its operations and the [`Change`]s they emit;
//! - [`engagement`]: what the lead did, and how each kind of silence is read;
//! - [`caps`]: the frequency cap across all of a contact's enrolments and the attempt cap per
//!   channel;
//! - [`momentum`]: the decaying engagement score and when it will fall below the threshold.

pub mod cadence;
pub mod caps;
pub mod change;
pub mod delay;
pub mod engagement;
pub mod enrollment;
pub mod momentum;
pub mod select;

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use cadence::{Alternative, CadencePlan, StepPlan, TimeBasis};
pub use change::{Change, StopReason};
pub use delay::Delay;
pub use engagement::{Engagement, ReplySentiment, Silence, SilenceMove};
pub use enrollment::{
    Approach, BlockedChannel, Cause, Deferral, Enrollment, Item, PauseCause, Plan, ProofPick,
    ProofSlot, Redirect, Status, Task, TaskOutcome, Unfired, Upcoming,
};
pub use momentum::Momentum;
pub use select::{chosen_by, select_cadence};

/// What followup knows about a lead when it is enrolled: the facts activation's
/// `LeadActivated` carries, as the strings activation sends. Strings are compared the way an
/// operator writes them in the playbook (trimmed, case-insensitive), so a service upgrade that
/// adds an intent kind does not break enrolment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFacts {
    pub lead: Uuid,
    /// The owner working the lead; tasks are theirs.
    pub owner_id: String,
    /// Who lost momentum escalates to; none when the owner has no manager.
    pub manager_id: Option<String>,
    /// Intake's intent kind in snake_case, e.g. `demo_request`.
    pub intent_kind: String,
    /// The integration the lead came through, e.g. `website-demo-form`.
    pub source: String,
    /// Free-form segment, e.g. `enterprise`.
    pub segment: String,
    /// ICP tier: `A`, `B`, `C` or `outside`.
    pub icp_tier: String,
    /// IANA name of the lead's time zone, when known.
    pub lead_timezone: Option<String>,
    /// IANA name of the owner's time zone, when known.
    pub owner_timezone: Option<String>,
    pub has_email: bool,
    pub has_phone: bool,
    /// The contact's email: with the phone, the identity the frequency cap and an opt-out
    /// apply to. Never logged.
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl LeadFacts {
    /// Forgets how to reach the person, for an erasure; whether they were reachable (and so
    /// which channels the plan used) stays.
    pub fn erase_personal_data(&mut self) {
        self.email = None;
        self.phone = None;
    }

    /// Whether the owner can reach the contact on `channel` at all: calls and texts need a
    /// phone, email an address; LinkedIn needs nothing we hold (the owner finds the person).
    pub fn reachable_on(&self, channel: Channel) -> bool {
        match channel {
            Channel::Call | Channel::Sms => self.has_phone,
            Channel::Email => self.has_email,
            Channel::Linkedin => true,
        }
    }
}

/// How an owner reaches a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Call,
    Email,
    Sms,
    Linkedin,
}

impl Channel {
    /// Every channel, in the order a channel switch tries them: a live conversation first,
    /// then the channels that carry the most context.
    pub const ALL: [Channel; 4] = [Self::Call, Self::Email, Self::Linkedin, Self::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Linkedin => "linkedin",
        }
    }

    /// Whether opens and clicks are tracked, so that silence on it can be told apart.
    pub fn tracks_opens(self) -> bool {
        self == Self::Email
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The angle a touch takes: what it tries to make the lead believe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// What the lead gains.
    Value,
    /// Evidence from the proof service: a case study, ROI, a security document.
    Proof,
    /// A company like theirs and what happened to it.
    PeerStory,
    /// Why now: a deadline, a cost of waiting.
    Urgency,
    /// A light "is this still relevant?".
    CheckIn,
    /// The last touch: say we will stop, which often draws the answer the others did not.
    BreakUp,
}

impl Strategy {
    /// The angles an angle change rotates through, in order. A break-up is never chosen by a
    /// rotation: it is the deliberate last touch, not a new angle.
    pub const ROTATION: [Strategy; 5] = [
        Self::Value,
        Self::Proof,
        Self::PeerStory,
        Self::Urgency,
        Self::CheckIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Proof => "proof",
            Self::PeerStory => "peer_story",
            Self::Urgency => "urgency",
            Self::CheckIn => "check_in",
            Self::BreakUp => "break_up",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operation was refused. Messages say what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowupError {
    #[error("enrolment has no task {task}; its tasks are 1 to {tasks}")]
    UnknownTask { task: u32, tasks: u32 },
    #[error("task {task} was completed already (outcome {outcome})")]
    TaskAlreadyCompleted { task: u32, outcome: TaskOutcome },
    #[error("task {task} was cancelled when the cadence stopped; nothing is left to do")]
    TaskCancelled { task: u32 },
    #[error("outcome {outcome} does not apply to a {channel} task")]
    OutcomeNotForChannel {
        outcome: TaskOutcome,
        channel: Channel,
    },
    #[error("the cadence is paused already; resume it first to change the pause")]
    AlreadyPaused,
    #[error("the cadence is not paused")]
    NotPaused,
    #[error("the pause must end after now")]
    PauseEndsInThePast,
    #[error("the cadence has stopped ({reason}); enrol the lead again to follow up")]
    CadenceStopped { reason: StopReason },
    #[error("the cadence and its nurture have finished; enrol the lead again to follow up")]
    Finished,
    #[error("no cadence matches the lead and the playbook has no default cadence")]
    NoCadence,
    #[error("cadence {0:?} has no steps")]
    EmptyCadence(String),
}
