//! What each asset has achieved, per context: how many of its deliveries worked and how many
//! did not (see [`super::outcome`] for when a delivery works).
//!
//! The context is the lead's belief stage at delivery (the stage it was working toward) and
//! the fear checkpoint the delivery answered, or none: a security pack that settles security
//! objections may do nothing for a lead still learning the mechanism, and ranking should
//! know the difference. Counts are read as `Beta(successes + prior_successes, failures +
//! prior_failures)`; with the default prior of 1 and 1 that is `Beta(s + 1, f + 1)`, whose
//! mean is a new asset's 0.5 and moves toward the asset's real rate as deliveries settle.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::beta::sample_beta;
use super::{Checkpoint, Outcome, Stage};

/// The situation a delivery was made in: what effectiveness is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Context {
    /// The stage the lead was working toward: the first not yet installed (capability trust
    /// once all are).
    pub stage: Stage,
    /// The open objection's checkpoint the proof answered, if it answered one.
    pub checkpoint: Option<Checkpoint>,
}

/// An asset's record in one context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effectiveness {
    pub successes: u32,
    pub failures: u32,
}

/// The pseudo-counts every asset starts with (the playbook's `[proof.exploration]`): larger
/// ones make a new asset's first results count for less; a larger `failures` than
/// `successes` makes new assets prove themselves before they are tried much.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    pub successes: f64,
    pub failures: f64,
}

impl Default for Prior {
    fn default() -> Self {
        Self {
            successes: 1.0,
            failures: 1.0,
        }
    }
}

impl Effectiveness {
    /// Counts one settled delivery.
    pub fn record(&mut self, success: bool) {
        if success {
            self.successes = self.successes.saturating_add(1);
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// Settled deliveries counted.
    pub fn trials(&self) -> u32 {
        self.successes.saturating_add(self.failures)
    }

    /// The Beta shapes with the prior added.
    pub fn shapes(&self, prior: Prior) -> (f64, f64) {
        (
            f64::from(self.successes) + prior.successes,
            f64::from(self.failures) + prior.failures,
        )
    }

    /// The expected success rate.
    pub fn mean(&self, prior: Prior) -> f64 {
        let (a, b) = self.shapes(prior);
        a / (a + b)
    }

    /// One Thompson draw: a plausible success rate given what is known.
    pub fn sample(&self, prior: Prior, rng: &mut impl Rng) -> f64 {
        let (a, b) = self.shapes(prior);
        sample_beta(rng, a, b)
    }
}

/// Effectiveness kept in memory, keyed by asset and context: what tests, the simulation and
/// the all-in-one dev server can use where the service keeps rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scoreboard {
    table: BTreeMap<(String, Context), Effectiveness>,
}

impl Scoreboard {
    /// An asset's record in a context; all zero when it was never delivered in it.
    pub fn get(&self, asset: &str, stage: Stage, checkpoint: Option<Checkpoint>) -> Effectiveness {
        self.table
            .get(&(asset.to_owned(), Context { stage, checkpoint }))
            .copied()
            .unwrap_or_default()
    }

    /// Counts a settled delivery.
    pub fn record(&mut self, outcome: &Outcome) {
        self.table
            .entry((outcome.asset.clone(), outcome.context))
            .or_default()
            .record(outcome.success);
    }

    /// Every asset's records, for reports.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Context, Effectiveness)> {
        self.table
            .iter()
            .map(|((asset, context), e)| (asset.as_str(), *context, *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_a_beta_with_the_prior() {
        let mut e = Effectiveness::default();
        assert_eq!(e.mean(Prior::default()), 0.5);
        for success in [true, false, false, false] {
            e.record(success);
        }
        assert_eq!((e.successes, e.failures, e.trials()), (1, 3, 4));
        assert_eq!(e.shapes(Prior::default()), (2.0, 4.0));
        assert!((e.mean(Prior::default()) - 1.0 / 3.0).abs() < 1e-12);
        let sceptical = Prior {
            successes: 1.0,
            failures: 4.0,
        };
        assert_eq!(Effectiveness::default().mean(sceptical), 0.2);
    }

    #[test]
    fn the_scoreboard_counts_per_asset_and_context() {
        let mut board = Scoreboard::default();
        let outcome = |asset: &str, checkpoint, success| Outcome {
            delivery: 1,
            asset: asset.into(),
            delivered_at: "2025-03-03T09:00:00Z".parse().unwrap(),
            context: Context {
                stage: Stage::MechanismUnderstanding,
                checkpoint,
            },
            success,
            evidence: None,
            decided_at: "2025-03-04T09:00:00Z".parse().unwrap(),
        };
        board.record(&outcome("roi", Some(Checkpoint::Price), true));
        board.record(&outcome("roi", Some(Checkpoint::Price), false));
        board.record(&outcome("roi", None, true));
        let price = board.get(
            "roi",
            Stage::MechanismUnderstanding,
            Some(Checkpoint::Price),
        );
        assert_eq!((price.successes, price.failures), (1, 1));
        assert_eq!(
            board
                .get("roi", Stage::MechanismUnderstanding, None)
                .successes,
            1
        );
        assert_eq!(board.get("roi", Stage::CapabilityTrust, None).trials(), 0);
        assert_eq!(board.iter().count(), 2);
    }
}
