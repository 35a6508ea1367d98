//! A cadence as an enrolment follows it: its steps, whose time zone counts, and the angles to
//! fall back on when the lead stays silent.
//!
//! An enrolment keeps its own copy, taken from the playbook when the lead is enrolled, so a
//! playbook reload that edits or removes a cadence never changes a lead's plan half-way
//! through (the reload applies to leads enrolled after it). Policies that are not part of a
//! cadence (caps, momentum, silence moves, nurture) are read from the playbook in force.

use serde::{Deserialize, Serialize};

use super::{Channel, Delay, Strategy};

/// Whose time zone a cadence counts business time in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeBasis {
    /// The lead's, falling back to the owner's, then the playbook's default: touches land in
    /// the lead's working day.
    #[default]
    Lead,
    /// The owner's, falling back to the playbook's default: tasks land in the owner's day.
    Owner,
}

/// A cadence: ordered steps and what to change to when the lead stays silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CadencePlan {
    pub id: String,
    pub timezone: TimeBasis,
    /// Template used by a proof step when the proof service has no asset for the lead.
    pub default_template: Option<String>,
    pub steps: Vec<StepPlan>,
    /// Approaches to switch to, in order, each time the lead leaves the configured number of
    /// steps in a row unanswered.
    pub on_silence: Vec<Alternative>,
}

/// One step of a cadence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPlan {
    /// After the previous step fired (the first step: after enrolment).
    pub delay: Delay,
    pub channel: Channel,
    pub strategy: Strategy,
    pub template: String,
}

/// A different angle and/or channel for the rest of the cadence; what is not given stays as
/// each step has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    pub strategy: Option<Strategy>,
    pub channel: Option<Channel>,
    pub template: Option<String>,
}
