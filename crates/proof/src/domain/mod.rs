//! Proof's domain: what proof knows about a lead's belief, and the rules that choose the proof
//! for where the lead is now. Pure and deterministic: no gRPC, no SQL, no clock (functions take
//! `now`), no I/O, and no hidden randomness (sampling takes the caller's `rng`).
//!
//! Proof is permission: it gives a buyer the confidence to go on at a fear checkpoint.
//! Delivered before the concern exists it is noise; after the buyer has decided it is too
//! late. Read in the order a lead meets the rules:
//! - [`asset`]: the catalog entries and how an asset fits a lead's segment, industry and
//!   persona;
//! - [`belief`]: a lead's belief state, the evidence that installs each stage, objections and
//!   deliveries, and the belief debt at hand-off;
//! - [`recommend`]: the next proof for a lead, with the reason and what was passed over;
//! - [`outcome`]: whether a delivery worked, decided once per delivery;
//! - [`effectiveness`] and [`beta`]: what each asset has achieved per context, and the
//!   Thompson sampling that ranks assets on it;
//! - [`change`]: the events the operations emit.

pub mod asset;
pub mod belief;
pub mod beta;
pub mod change;
pub mod effectiveness;
pub mod outcome;
pub mod recommend;

#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};

pub use asset::{Asset, AssetKind, Fit, Tag, check_upsert, merge_catalog};
pub use belief::{
    BeliefDebt, BeliefState, Delivery, Evidence, HandOff, InstalledStage, Objection, ObjectionDebt,
    ObjectionStatus, RecordedSignal, Sentiment, Signal,
};
pub use change::Change;
pub use effectiveness::{Context, Effectiveness, Prior, Scoreboard};
pub use outcome::{DeliveryOutcome, Outcome, OutcomeEvidence};
pub use recommend::{PassReason, PassedOver, Recommendation};

/// [`runtime::wire_enum!`] with this crate's error.
macro_rules! wire_enum {
    ($name:ident, $what:literal, [$($variant:ident => $text:literal),+ $(,)?]) => {
        runtime::wire_enum!($name, $what, $crate::domain::ProofError, [$($variant => $text),+]);
    };
}
pub(crate) use wire_enum;

/// The stages of belief a buyer goes through, in order: they see the problem, then how the
/// product solves it, then that this vendor can deliver it for them. A stage is *installed*
/// once evidence shows it (see [`belief`]); installing one implies the stages before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The buyer recognises the problem and that it is worth solving.
    ProblemAwareness,
    /// The buyer understands how the product solves it.
    MechanismUnderstanding,
    /// The buyer trusts this vendor to deliver it for them.
    CapabilityTrust,
}

wire_enum!(Stage, "stage", [
    ProblemAwareness => "problem_awareness",
    MechanismUnderstanding => "mechanism_understanding",
    CapabilityTrust => "capability_trust",
]);

impl Stage {
    /// The stage after this one; `None` after capability trust.
    pub fn next(self) -> Option<Stage> {
        match self {
            Self::ProblemAwareness => Some(Self::MechanismUnderstanding),
            Self::MechanismUnderstanding => Some(Self::CapabilityTrust),
            Self::CapabilityTrust => None,
        }
    }

    /// The stages before this one, earliest first.
    pub fn before(self) -> impl Iterator<Item = Stage> {
        Self::ALL.iter().copied().filter(move |s| *s < self)
    }
}

/// A fear checkpoint: the concern that stops a buyer from going on, which the right proof
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// "It costs too much" / "what do we get for it".
    Price,
    /// "We do not have the people or time to roll it out".
    ImplementationEffort,
    /// "What if it does not work for us".
    RiskOfFailure,
    /// "Security or compliance will not sign off".
    SecurityCompliance,
    /// "Moving off what we use now is too costly".
    SwitchingCost,
    /// "I cannot get my boss / the other teams on board".
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

/// Who the lead is, for matching assets' tags: free-form strings as activation and the CRM
/// send them, empty when unknown. They compare trimmed and case-insensitively, the way an
/// operator writes them in the playbook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadProfile {
    /// e.g. `enterprise`, `mid_market`.
    #[serde(default)]
    pub segment: String,
    /// e.g. `logistics`, `healthcare`.
    #[serde(default)]
    pub industry: String,
    /// e.g. `cfo`, `it_security`, `ops_lead`.
    #[serde(default)]
    pub persona: String,
}

impl LeadProfile {
    pub fn new(segment: &str, industry: &str, persona: &str) -> Self {
        Self {
            segment: segment.trim().to_owned(),
            industry: industry.trim().to_owned(),
            persona: persona.trim().to_owned(),
        }
    }

    /// The lead's value for a tag dimension.
    pub fn value(&self, tag: Tag) -> &str {
        match tag {
            Tag::Segment => &self.segment,
            Tag::Industry => &self.industry,
            Tag::Persona => &self.persona,
        }
    }
}

/// Whether two operator- or caller-written values are the same: trimmed, case-insensitive.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Why an operation was refused. Messages say what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("{what} {value:?} is not known; use one of {expected}")]
    UnknownValue {
        what: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "asset {0:?} is not in the catalog; add it with UpsertAsset or list the catalog with ListAssets"
    )]
    UnknownAsset(String),
    #[error("asset {id:?} is invalid: {why}")]
    InvalidAsset { id: String, why: String },
    #[error(
        "asset {0:?} is defined in the playbook; change it there (a run-time upsert cannot override it)"
    )]
    PlaybookAsset(String),
}
