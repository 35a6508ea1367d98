//! What feedback learns from the other services: one [`Observation`] per fact-bearing event,
//! with only what the facts need. The service decodes each upstream protobuf event (and its
//! own RecordOutcome calls) into one, so the projections never see a wire type.
//!
//! Times: an observation's `at` is the event's own time where it has one (`received_at`,
//! `activated_at`, `fired_at`, `delivered_at`, ...) and otherwise the envelope's
//! `occurred_at`; each variant says which. Events from different services arrive in no
//! particular order relative to each other (feedback follows five streams), so the facts are
//! built to give the same result whatever the order: they keep times, not "so far" counters.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    BeliefStage, Checkpoint, EngagementKind, FailureCause, IcpTier, OutcomeReason, OutcomeStage,
    Strategy, TaskOutcome, TouchChannel,
};

/// One fact-bearing event, decoded. Every variant but [`Observation::LeadRejected`] and
/// [`Observation::ContactOptedOut`] is about one lead, named by `lead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "observation")]
pub enum Observation {
    // --- intake ---
    /// A new lead (intake `LeadAccepted`; `received_at` is the lead's).
    LeadAccepted {
        lead: Uuid,
        /// The playbook source, e.g. `website-demo-form`.
        source: String,
        campaign: String,
        /// The marketing channel, e.g. `paid_search`.
        channel: String,
        received_at: Timestamp,
        icp_tier: IcpTier,
        /// No consent, or the contact opted out before: nobody may contact it.
        do_not_contact: bool,
        /// Set when the lead is a rejected submission accepted on review. Intake's event does
        /// not say so; the service fills it when it can tell (else `None`).
        review: Option<super::Review>,
    },
    /// A submission failed data-quality rules and went to review: there is no lead (intake
    /// `LeadRejected`).
    LeadRejected(Rejected),
    /// A later submission of the same contact was merged into the lead: a re-engagement
    /// (intake `LeadMerged`; `at` is the touch's `received_at`).
    LeadMerged {
        lead: Uuid,
        at: Timestamp,
        do_not_contact: bool,
    },
    /// A contact opted out; these are its leads (intake `ContactOptedOut`; `at` is the
    /// envelope's time).
    ContactOptedOut { leads: Vec<Uuid>, at: Timestamp },

    // --- activation ---
    /// The lead got an owner (activation `LeadAssigned`; `owner` is empty while it waits in
    /// a queue; `at` is the activation's `assigned_at`, or the envelope's time when queued).
    LeadAssigned {
        lead: Uuid,
        owner: String,
        at: Timestamp,
    },
    /// The owner's first action (activation `LeadActivated`).
    LeadActivated {
        lead: Uuid,
        owner: String,
        at: Timestamp,
        within_sla: bool,
        time_to_activation: SignedDuration,
    },
    /// The lead was not activated by its deadline (activation `SlaBreached`; `at` is the
    /// deadline that passed).
    SlaBreached {
        lead: Uuid,
        at: Timestamp,
        cause: FailureCause,
    },
    /// A manager was alerted (activation `EscalationRaised`; envelope time).
    EscalationRaised {
        lead: Uuid,
        at: Timestamp,
        cause: FailureCause,
    },
    /// The lead moved to another owner (activation `LeadReassigned`; envelope time).
    LeadReassigned {
        lead: Uuid,
        to_owner: String,
        at: Timestamp,
        cause: FailureCause,
    },
    /// The lead may not be contacted (activation `LeadDoNotContact`; envelope time; `reason`
    /// is `opted_out` or `no_consent`).
    LeadDoNotContact {
        lead: Uuid,
        at: Timestamp,
        reason: String,
    },

    // --- followup ---
    /// The lead was enrolled in a cadence (followup `LeadEnrolled`; the plan's
    /// `enrolled_at`).
    LeadEnrolled {
        lead: Uuid,
        cadence: String,
        at: Timestamp,
    },
    /// A follow-up touch came due as a task for the owner (followup `FollowUpDue`; the
    /// step's `fired_at`).
    FollowUpDue {
        lead: Uuid,
        channel: TouchChannel,
        strategy: Strategy,
        at: Timestamp,
    },
    /// The owner completed a task (followup `TaskCompleted`; the step's `completed_at`).
    TaskCompleted {
        lead: Uuid,
        outcome: TaskOutcome,
        at: Timestamp,
    },
    /// The cadence changed its angle or channel after silence (followup `StrategyChanged`;
    /// envelope time).
    StrategyChanged {
        lead: Uuid,
        to: Strategy,
        at: Timestamp,
    },
    /// A buyer signal (followup `EngagementRecorded`; its `occurred_at`).
    EngagementRecorded {
        lead: Uuid,
        kind: EngagementKind,
        at: Timestamp,
    },
    /// Momentum fell below the threshold and a manager was alerted (followup
    /// `MomentumEscalated`; envelope time).
    MomentumEscalated { lead: Uuid, at: Timestamp },
    /// The cadence stopped (followup `CadenceStopped`; envelope time; `reason` is
    /// `positive_reply`, `neutral_reply`, `meeting_booked`, `negative_reply`, `opted_out` or
    /// `unreachable`).
    CadenceStopped {
        lead: Uuid,
        reason: String,
        at: Timestamp,
    },
    /// The cadence ended without a response; long-term nurture follows (followup
    /// `RecycledToNurture`; envelope time).
    RecycledToNurture {
        lead: Uuid,
        reason: String,
        at: Timestamp,
    },

    // --- proof ---
    /// Proof was delivered (proof `ProofDelivered`); `answers` are the checkpoints of the open
    /// objections it answers.
    ProofDelivered {
        lead: Uuid,
        asset: String,
        at: Timestamp,
        answers: Vec<Checkpoint>,
    },
    /// The buyer raised an objection (proof `ObjectionRaised`; the objection's `raised_at`).
    ObjectionRaised {
        lead: Uuid,
        checkpoint: Checkpoint,
        at: Timestamp,
    },
    /// What the lead reached sales without (proof `BeliefDebtRecorded`; the debt's
    /// `computed_at`).
    BeliefDebtRecorded {
        lead: Uuid,
        at: Timestamp,
        missing_stages: Vec<BeliefStage>,
        unanswered_objections: Vec<Checkpoint>,
    },
    /// Evidence installed a new belief stage (proof `BeliefAdvanced`; envelope time).
    BeliefAdvanced {
        lead: Uuid,
        to: BeliefStage,
        at: Timestamp,
    },

    // --- feedback's own API ---
    /// Where the CRM says the lead got to (RecordOutcome, checked with
    /// [`check_outcome`](super::check_outcome)).
    OutcomeRecorded {
        lead: Uuid,
        stage: OutcomeStage,
        reason: Option<OutcomeReason>,
        at: Timestamp,
    },
}

/// A submission rejected into review: it has no lead, only the rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub rejection: Uuid,
    pub source: String,
    pub campaign: String,
    pub channel: String,
    pub received_at: Timestamp,
    /// The failed rules' codes, e.g. `missing_required_field`, `invalid_email`, one per
    /// problem (a code may repeat).
    pub reasons: Vec<String>,
}

/// Which projection an observation updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Lead(Uuid),
    /// Each of these leads (a contact's opt-out).
    Leads(&'a [Uuid]),
    Rejection(Uuid),
}

impl Observation {
    /// The projection(s) to load and update.
    pub fn subject(&self) -> Subject<'_> {
        match self {
            Self::LeadRejected(r) => Subject::Rejection(r.rejection),
            Self::ContactOptedOut { leads, .. } => Subject::Leads(leads),
            Self::LeadAccepted { lead, .. }
            | Self::LeadMerged { lead, .. }
            | Self::LeadAssigned { lead, .. }
            | Self::LeadActivated { lead, .. }
            | Self::SlaBreached { lead, .. }
            | Self::EscalationRaised { lead, .. }
            | Self::LeadReassigned { lead, .. }
            | Self::LeadDoNotContact { lead, .. }
            | Self::LeadEnrolled { lead, .. }
            | Self::FollowUpDue { lead, .. }
            | Self::TaskCompleted { lead, .. }
            | Self::StrategyChanged { lead, .. }
            | Self::EngagementRecorded { lead, .. }
            | Self::MomentumEscalated { lead, .. }
            | Self::CadenceStopped { lead, .. }
            | Self::RecycledToNurture { lead, .. }
            | Self::ProofDelivered { lead, .. }
            | Self::ObjectionRaised { lead, .. }
            | Self::BeliefDebtRecorded { lead, .. }
            | Self::BeliefAdvanced { lead, .. }
            | Self::OutcomeRecorded { lead, .. } => Subject::Lead(*lead),
        }
    }

    /// Whether it concerns `lead`.
    pub fn concerns(&self, lead: Uuid) -> bool {
        match self.subject() {
            Subject::Lead(id) => id == lead,
            Subject::Leads(ids) => ids.contains(&lead),
            Subject::Rejection(_) => false,
        }
    }

    /// The variant's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LeadAccepted { .. } => "lead_accepted",
            Self::LeadRejected(_) => "lead_rejected",
            Self::LeadMerged { .. } => "lead_merged",
            Self::ContactOptedOut { .. } => "contact_opted_out",
            Self::LeadAssigned { .. } => "lead_assigned",
            Self::LeadActivated { .. } => "lead_activated",
            Self::SlaBreached { .. } => "sla_breached",
            Self::EscalationRaised { .. } => "escalation_raised",
            Self::LeadReassigned { .. } => "lead_reassigned",
            Self::LeadDoNotContact { .. } => "lead_do_not_contact",
            Self::LeadEnrolled { .. } => "lead_enrolled",
            Self::FollowUpDue { .. } => "follow_up_due",
            Self::TaskCompleted { .. } => "task_completed",
            Self::StrategyChanged { .. } => "strategy_changed",
            Self::EngagementRecorded { .. } => "engagement_recorded",
            Self::MomentumEscalated { .. } => "momentum_escalated",
            Self::CadenceStopped { .. } => "cadence_stopped",
            Self::RecycledToNurture { .. } => "recycled_to_nurture",
            Self::ProofDelivered { .. } => "proof_delivered",
            Self::ObjectionRaised { .. } => "objection_raised",
            Self::BeliefDebtRecorded { .. } => "belief_debt_recorded",
            Self::BeliefAdvanced { .. } => "belief_advanced",
            Self::OutcomeRecorded { .. } => "outcome_recorded",
        }
    }
}
