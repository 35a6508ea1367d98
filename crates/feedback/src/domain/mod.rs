//! Feedback's domain: what actually happened to every lead, and what it tells marketing.
//! Pure and deterministic: no gRPC, no SQL, no clock (functions take `now`), no I/O.
//!
//! Marketing should optimise on outcomes, not opinions, and only a lead the system worked
//! properly can be blamed on targeting. Read in the order the data flows:
//! - [`observation`]: the plain input the service decodes every upstream event into;
//! - [`fact`]: the projections those observations build, one [`LeadFact`] per lead and one
//!   [`RejectionFact`] per submission rejected into review;
//! - [`verdict`](mod@verdict): did the system give a lead a fair chance, and so who is to
//!   blame for a lost one: targeting or the system;
//! - [`report`](mod@report): the per source / campaign / channel report and the funnel;
//! - [`figures`]: a fact flattened into the numbers and flags reports aggregate;
//! - [`timeline`](mod@timeline): one lead's history, in order, with its preserved context.

pub mod fact;
pub mod figures;
pub mod observation;
pub mod report;
pub mod timeline;
pub mod verdict;

#[cfg(test)]
pub(crate) mod replay;
#[cfg(test)]
pub(crate) mod testing;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

pub use fact::{
    BeliefDebt, Breach, DoNotContact, FollowUpEnd, LeadFact, ObjectionRecord, OutcomeRecord,
    Projection, ProofDelivery, RejectionFact, Review, TouchRecord,
};
pub use figures::LeadFigures;
pub use observation::{Observation, Rejected, Subject};
pub use report::{
    AttributionCounts, Average, BeliefDebtSummary, Filter, Funnel, FunnelStage, FunnelStep,
    GroupBy, GroupReport, Period, Report, Share, VerdictCounts, funnel, funnel_of_counts,
    nearest_rank, nearest_rank_of, report,
};
pub use timeline::{Timeline, TimelineEntry, timeline};
pub use verdict::{Attribution, FairChanceRule, Shortfall, Verdict, attribute, verdict};

/// [`runtime::wire_enum!`] with this crate's error.
macro_rules! wire_enum {
    ($name:ident, $what:literal, [$($variant:ident => $text:literal),+ $(,)?]) => {
        runtime::wire_enum!($name, $what, $crate::domain::FeedbackError, [$($variant => $text),+]);
    };
}
pub(crate) use wire_enum;

/// Intake's ICP-fit tier of a lead.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IcpTier {
    /// Not scored.
    #[default]
    Unscored,
    A,
    B,
    C,
    /// Matches no ICP tier.
    Outside,
}

wire_enum!(IcpTier, "icp tier", [
    Unscored => "unscored",
    A => "a",
    B => "b",
    C => "c",
    Outside => "outside",
]);

/// Why activation failed or breached, in activation's fixed taxonomy.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    #[default]
    Unspecified,
    RoutingDelay,
    NoOwnerWorking,
    AllOwnersAtCapacity,
    OwnerUnavailable,
    OwnerLate,
}

wire_enum!(FailureCause, "failure cause", [
    Unspecified => "unspecified",
    RoutingDelay => "routing_delay",
    NoOwnerWorking => "no_owner_working",
    AllOwnersAtCapacity => "all_owners_at_capacity",
    OwnerUnavailable => "owner_unavailable",
    OwnerLate => "owner_late",
]);

/// The channel a follow-up touch uses (not the marketing channel the lead came from, which
/// is free text on the lead).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TouchChannel {
    #[default]
    Unspecified,
    Call,
    Email,
    Sms,
    Linkedin,
}

wire_enum!(TouchChannel, "touch channel", [
    Unspecified => "unspecified",
    Call => "call",
    Email => "email",
    Sms => "sms",
    Linkedin => "linkedin",
]);

/// The angle a follow-up touch takes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Unspecified,
    Value,
    Proof,
    PeerStory,
    Urgency,
    BreakUp,
    CheckIn,
}

wire_enum!(Strategy, "strategy", [
    Unspecified => "unspecified",
    Value => "value",
    Proof => "proof",
    PeerStory => "peer_story",
    Urgency => "urgency",
    BreakUp => "break_up",
    CheckIn => "check_in",
]);

/// What came of a follow-up task the owner completed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    #[default]
    Unspecified,
    Done,
    NoAnswer,
    LeftVoicemail,
    Connected,
    WrongNumber,
}

wire_enum!(TaskOutcome, "task outcome", [
    Unspecified => "unspecified",
    Done => "done",
    NoAnswer => "no_answer",
    LeftVoicemail => "left_voicemail",
    Connected => "connected",
    WrongNumber => "wrong_number",
]);

/// A buyer signal followup recorded. A reply's sentiment is part of its kind, so counts by
/// kind say how replies read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngagementKind {
    ReplyPositive,
    /// Neither yes nor no: a question, "send me more".
    ReplyNeutral,
    ReplyNegative,
    /// A "remove me from your list" reply: an opt-out, not a response.
    ReplyRemoveMe,
    MeetingBooked,
    Open,
    Click,
    SiteVisit,
    OutOfOffice,
    Bounce,
    /// An unsubscribe: an opt-out.
    Unsubscribe,
}

wire_enum!(EngagementKind, "engagement kind", [
    ReplyPositive => "reply_positive",
    ReplyNeutral => "reply_neutral",
    ReplyNegative => "reply_negative",
    ReplyRemoveMe => "reply_remove_me",
    MeetingBooked => "meeting_booked",
    Open => "open",
    Click => "click",
    SiteVisit => "site_visit",
    OutOfOffice => "out_of_office",
    Bounce => "bounce",
    Unsubscribe => "unsubscribe",
]);

impl EngagementKind {
    /// Whether the buyer answered: a positive, neutral or negative reply, or a meeting. An
    /// open, a click or a visit is interest, not an answer; a remove-me is an opt-out.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            Self::ReplyPositive | Self::ReplyNeutral | Self::ReplyNegative | Self::MeetingBooked
        )
    }

    /// Whether it means the contact may not be contacted again.
    pub fn is_opt_out(self) -> bool {
        matches!(self, Self::ReplyRemoveMe | Self::Unsubscribe)
    }
}

/// A fear checkpoint: the concern that stops a buyer from going on, which proof answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    Price,
    ImplementationEffort,
    RiskOfFailure,
    SecurityCompliance,
    SwitchingCost,
    InternalBuyIn,
}

wire_enum!(Checkpoint, "checkpoint", [
    Price => "price",
    ImplementationEffort => "implementation_effort",
    RiskOfFailure => "risk_of_failure",
    SecurityCompliance => "security_compliance",
    SwitchingCost => "switching_cost",
    InternalBuyIn => "internal_buy_in",
]);

/// A stage of the buyer's belief, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeliefStage {
    ProblemAwareness,
    MechanismUnderstanding,
    CapabilityTrust,
}

wire_enum!(BeliefStage, "belief stage", [
    ProblemAwareness => "problem_awareness",
    MechanismUnderstanding => "mechanism_understanding",
    CapabilityTrust => "capability_trust",
]);

/// Where the CRM says a lead got to. Meeting, opportunity and won are progress, in that
/// order; lost and disqualified end the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStage {
    Meeting,
    Opportunity,
    Won,
    Lost,
    Disqualified,
}

wire_enum!(OutcomeStage, "outcome stage", [
    Meeting => "meeting",
    Opportunity => "opportunity",
    Won => "won",
    Lost => "lost",
    Disqualified => "disqualified",
]);

impl OutcomeStage {
    /// Whether the lead's story is over: won, lost or disqualified.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Won | Self::Lost | Self::Disqualified)
    }

    /// Whether it is a negative end: lost or disqualified.
    pub fn is_loss(self) -> bool {
        matches!(self, Self::Lost | Self::Disqualified)
    }

    /// Whether the lead reached at least a meeting.
    pub fn is_progress(self) -> bool {
        matches!(self, Self::Meeting | Self::Opportunity | Self::Won)
    }
}

/// Why the CRM says a lead was lost or disqualified. The first four are about who the lead
/// is (targeting); the playbook's `targeting_reasons` says which count as targeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeReason {
    /// Outside the ideal customer profile.
    NotIcp,
    NoBudget,
    NoAuthority,
    NoNeed,
    /// The lead never answered: silence is data about follow-up, never about targeting.
    NoResponse,
    Competitor,
    Timing,
    Other,
}

wire_enum!(OutcomeReason, "outcome reason", [
    NotIcp => "not_icp",
    NoBudget => "no_budget",
    NoAuthority => "no_authority",
    NoNeed => "no_need",
    NoResponse => "no_response",
    Competitor => "competitor",
    Timing => "timing",
    Other => "other",
]);

/// How far an outcome's time may run ahead of our clock: CRMs' clocks drift.
const OUTCOME_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// Checks an outcome the CRM records (RecordOutcome) before it becomes an
/// [`Observation::OutcomeRecorded`]: a loss says why (attribution needs it), progress has no
/// reason, and it did not happen in the future.
pub fn check_outcome(
    stage: OutcomeStage,
    reason: Option<OutcomeReason>,
    at: Timestamp,
    now: Timestamp,
) -> Result<(), FeedbackError> {
    match (stage.is_loss(), reason) {
        (true, None) => return Err(FeedbackError::MissingReason(stage)),
        (false, Some(reason)) => return Err(FeedbackError::UnexpectedReason { stage, reason }),
        _ => {}
    }
    if at.duration_since(now) > OUTCOME_CLOCK_SKEW {
        return Err(FeedbackError::FutureOutcome { at, now });
    }
    Ok(())
}

/// A duration in words a marketer reads: `3d 4h`, `2h 5m`, `40s`.
pub fn human(d: SignedDuration) -> String {
    let sign = if d.is_negative() { "-" } else { "" };
    let secs = d.as_secs().unsigned_abs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let text = match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    };
    format!("{sign}{text}")
}

/// Why an operation was refused. Messages say what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("{what} {value:?} is not known; use one of {expected}")]
    UnknownValue {
        what: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "a {0} outcome needs a reason (not_icp, no_budget, no_authority, no_need, no_response, competitor, timing or other)"
    )]
    MissingReason(OutcomeStage),
    #[error(
        "a {stage} outcome takes no reason, but {reason} was given; reasons are for lost and disqualified leads"
    )]
    UnexpectedReason {
        stage: OutcomeStage,
        reason: OutcomeReason,
    },
    #[error("the outcome time {at} is in the future (now is {now})")]
    FutureOutcome { at: Timestamp, now: Timestamp },
    #[error("the period must end after it starts, but it runs from {from} to {to}")]
    EmptyPeriod { from: Timestamp, to: Timestamp },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::day;

    #[test]
    fn wire_values_round_trip_and_unknown_ones_list_the_choices() {
        for reason in OutcomeReason::ALL {
            assert_eq!(reason.as_str().parse::<OutcomeReason>(), Ok(*reason));
        }
        assert_eq!(
            " Not_ICP ".parse::<OutcomeReason>(),
            Ok(OutcomeReason::NotIcp)
        );
        let err = "budget".parse::<OutcomeReason>().unwrap_err().to_string();
        assert!(
            err.starts_with(
                "outcome reason \"budget\" is not known; use one of not_icp, no_budget"
            ),
            "{err}"
        );
        // serde and the wire agree
        assert_eq!(
            serde_json::to_string(&EngagementKind::ReplyRemoveMe).unwrap(),
            "\"reply_remove_me\""
        );
    }

    #[test]
    fn outcomes_are_checked() {
        let now = day(10, "12:00");
        assert_eq!(
            check_outcome(OutcomeStage::Lost, None, now, now),
            Err(FeedbackError::MissingReason(OutcomeStage::Lost))
        );
        assert!(matches!(
            check_outcome(OutcomeStage::Won, Some(OutcomeReason::Timing), now, now),
            Err(FeedbackError::UnexpectedReason { .. })
        ));
        assert!(check_outcome(OutcomeStage::Meeting, None, day(10, "12:05"), now).is_ok());
        assert!(matches!(
            check_outcome(OutcomeStage::Meeting, None, day(10, "12:06"), now),
            Err(FeedbackError::FutureOutcome { .. })
        ));
        assert!(
            check_outcome(
                OutcomeStage::Disqualified,
                Some(OutcomeReason::NotIcp),
                day(1, "00:00"),
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn durations_read_like_words() {
        assert_eq!(human(SignedDuration::from_secs(40)), "40s");
        assert_eq!(human(SignedDuration::from_mins(125)), "2h 5m");
        assert_eq!(human(SignedDuration::from_hours(3)), "3h");
        assert_eq!(human(SignedDuration::from_hours(76)), "3d 4h");
        assert_eq!(human(SignedDuration::from_hours(240)), "10d");
        assert_eq!(human(SignedDuration::from_mins(-90)), "-1h 30m");
    }
}
