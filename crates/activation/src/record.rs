//! A lead's activation as the service keeps it: where it is, who holds it, its window, the
//! plan, and its history of owners and breaches.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::assign::Unassignable;
use crate::domain::first_action::FirstActionPlan;
use crate::domain::{LeadFacts, OwnerId, TeamId};
use crate::playbook::ActivationPlaybook;

/// Where a lead is in activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting in the team queue: nobody was eligible.
    Queued,
    /// Held by an owner who has not acted yet.
    Assigned,
    /// The owner took a relevant first action.
    Activated,
    /// Breached as often as the playbook allows: the manager owns it.
    Escalated,
    /// May not be contacted: no owner, no timer.
    DoNotContact,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Activated => "activated",
            Self::Escalated => "escalated",
            Self::DoNotContact => "do_not_contact",
        }
    }

    /// Whether the SLA clock still runs.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Queued | Self::Assigned)
    }
}

/// A lead's activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationRecord {
    pub lead: Uuid,
    pub state: State,
    pub team: TeamId,
    pub owner: Option<OwnerId>,
    /// The account or rule that chose the team.
    pub routed_by: String,
    pub sla_policy: String,
    /// When the lead reached activation: the SLA clock starts here.
    pub received_at: Timestamp,
    /// When the window in force started (arrival, or the last reassignment).
    pub window_started_at: Timestamp,
    pub assigned_at: Option<Timestamp>,
    /// The end of the window in force.
    pub deadline: Timestamp,
    /// Why the lead waits in the queue, when queued.
    pub waiting_cause: Option<Unassignable>,
    pub breaches: u32,
    pub reassignments: u32,
    /// Owners who held the lead before, oldest first.
    pub previous_owners: Vec<OwnerId>,
    pub activated_at: Option<Timestamp>,
    /// Activated within the first window, with no breach before.
    pub within_sla: bool,
    pub time_to_activation: Option<SignedDuration>,
    pub facts: LeadFacts,
    pub plan: FirstActionPlan,
    /// The current owner's time zone, as the playbook had it at assignment; followup
    /// schedules steps in the owner's day from it.
    #[serde(default)]
    pub owner_timezone: String,
    /// Who escalations about the current owner's handling of this lead go to.
    #[serde(default)]
    pub manager: Option<OwnerId>,
}

impl ActivationRecord {
    /// Hands the lead to `owner` now.
    pub fn assign(&mut self, playbook: &ActivationPlaybook, owner: OwnerId, now: Timestamp) {
        let details = playbook.owner(&owner);
        self.owner_timezone = details
            .and_then(|o| o.timezone().iana_name())
            .unwrap_or_default()
            .to_owned();
        self.manager = details.and_then(|o| playbook.manager_of(o)).cloned();
        self.state = State::Assigned;
        self.owner = Some(owner);
        self.assigned_at = Some(now);
    }
}
