//! Fixtures for the domain's tests: a small playbook with round numbers, a lead, assets and
//! timestamps that read like a calendar.

use jiff::Timestamp;
use runtime::playbook::parse;
use uuid::Uuid;

use super::{Asset, AssetKind, BeliefState, Checkpoint, LeadProfile, Stage};
use crate::playbook::ProofPlaybook;

/// Deliveries at least 2 days apart, outcomes within 7 days, the default exploration.
pub const PLAYBOOK: &str = r#"[proof]
spacing = "2d"
outcome_window = "7d"
tag_bonus = 0.1
"#;

pub fn playbook() -> ProofPlaybook {
    parse("p.toml", PLAYBOOK).unwrap_or_else(|e| panic!("{e}"))
}

/// `hh:mm` UTC on Monday 3 March 2025.
pub fn at(hh_mm: &str) -> Timestamp {
    day(3, hh_mm)
}

/// `hh:mm` UTC on day `d` of March 2025 (the 3rd is a Monday).
pub fn day(d: u32, hh_mm: &str) -> Timestamp {
    format!("2025-03-{d:02}T{hh_mm}:00Z")
        .parse()
        .unwrap_or_else(|e| panic!("{d} {hh_mm}: {e}"))
}

/// A lead with no profile, created at the start of the test week.
pub fn state() -> BeliefState {
    BeliefState::new(Uuid::from_u128(7), LeadProfile::default(), day(1, "00:00"))
}

/// An active, untagged case study titled like its id.
pub fn asset(id: &str, stage: Stage, checkpoints: &[Checkpoint]) -> Asset {
    Asset {
        id: id.into(),
        title: id.into(),
        kind: AssetKind::CaseStudy,
        stage,
        checkpoints: checkpoints.to_vec(),
        segments: Vec::new(),
        industries: Vec::new(),
        personas: Vec::new(),
        url: None,
        active: true,
    }
}
