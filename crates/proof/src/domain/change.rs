//! The changes a belief state's operations emit: the domain events the service appends to its
//! log in the same transaction as the state, and publishes (`ProofRecommended`,
//! `ProofDelivered`, `BeliefAdvanced`, and the objection and hand-off events feedback reads
//! recurring objections and belief debt from).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{BeliefDebt, Checkpoint, Context, Evidence, Stage};

/// One thing that happened to a lead's belief state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Change {
    /// A stage was installed; `from` is the highest stage installed before.
    BeliefAdvanced {
        stage: Stage,
        from: Option<Stage>,
        evidence: Evidence,
        at: Timestamp,
    },
    ObjectionRaised {
        objection: u32,
        checkpoint: Checkpoint,
        /// The buyer's words: may name people; the service keeps it out of logs.
        verbatim: String,
        at: Timestamp,
    },
    /// Proof answering the objection was delivered.
    ObjectionAnswered {
        objection: u32,
        checkpoint: Checkpoint,
        asset: String,
        at: Timestamp,
    },
    /// The buyer said the concern is settled.
    ObjectionResolved {
        objection: u32,
        checkpoint: Checkpoint,
        at: Timestamp,
    },
    /// NextProof chose an asset (see [`super::Recommendation::change`]).
    ProofRecommended {
        asset: String,
        context: Context,
        reason: String,
    },
    ProofDelivered {
        delivery: u32,
        asset: String,
        at: Timestamp,
        context: Context,
        /// The asset had been delivered to this lead before.
        repeat: bool,
        /// The asset was inactive when delivered.
        inactive: bool,
        /// The objections it answered.
        answered: Vec<u32>,
    },
    /// The lead reached sales with this belief debt.
    HandedOff { at: Timestamp, debt: BeliefDebt },
}

impl Change {
    /// The event type the service publishes this change as.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::BeliefAdvanced { .. } => "BeliefAdvanced",
            Self::ObjectionRaised { .. } => "ObjectionRaised",
            Self::ObjectionAnswered { .. } => "ObjectionAnswered",
            Self::ObjectionResolved { .. } => "ObjectionResolved",
            Self::ProofRecommended { .. } => "ProofRecommended",
            Self::ProofDelivered { .. } => "ProofDelivered",
            Self::HandedOff { .. } => "BeliefDebtRecorded",
        }
    }
}
