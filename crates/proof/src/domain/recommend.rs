//! NextProof: the asset for where a lead is now, with the reason in words and every asset
//! passed over with why, or "wait until" when proof went out too recently, or "nothing fits"
//! with the reason rather than noise.
//!
//! The rules, in the order they apply:
//! 1. **Gates**, per asset: it must be active; it must fit the lead's segment, industry and
//!    persona (see [`super::asset`]); and its stage may be at most the lead's
//!    [frontier](BeliefState::frontier), the stage after the highest installed (stage
//!    gating: no mechanism proof before problem awareness, no capability proof before the
//!    mechanism is understood). An open objection relaxes the stage gate once problem
//!    awareness is installed: a buyer who asks about security now gets the security proof
//!    now, whatever stage it was written for, because the concern exists.
//! 2. **Focus**: the oldest open objection that some gated-in asset answers comes first;
//!    for it, an asset is a candidate if it answers the checkpoint and was not delivered to
//!    this lead since the objection was raised (one sent before the concern existed was
//!    noise then and is worth sending now). With no such objection, the candidates are the
//!    gated-in assets never delivered to this lead that build the frontier stage, or, when
//!    there are none, those that reinforce an installed stage.
//! 3. **Spacing**: when the last delivery was less than the playbook's `spacing` ago, the
//!    answer is to wait until then, unless the focus is an objection raised after that
//!    delivery: the buyer asked, so the answer is not noise.
//! 4. **Ranking** among the candidates: Thompson sampling. Each candidate's record in the
//!    lead's context ([`Context`]: the frontier stage and the focus checkpoint) is read as a
//!    Beta distribution with the playbook's prior; one draw per candidate, kept within
//!    `max_deviation` of its mean, plus `tag_bonus` per matching tag; the highest wins (the
//!    earlier in the catalog on a tie). New assets get tried because their prior is wide,
//!    weak ones fade because their draws rarely win.

use std::fmt;

use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{
    Asset, BeliefState, Change, Checkpoint, Context, Effectiveness, Fit, Objection, Stage, Tag,
};
use crate::playbook::ProofPlaybook;

/// NextProof's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Recommendation {
    /// Send this.
    Asset {
        asset: Asset,
        /// Why, in words, for the owner.
        reason: String,
        /// What its outcome will count toward.
        context: Context,
        /// Every other asset in the catalog, each with why it was not chosen.
        passed_over: Vec<PassedOver>,
    },
    /// Proof went out too recently; ask again at `until`.
    Wait { until: Timestamp, reason: String },
    /// No asset fits the lead now.
    Nothing {
        reason: String,
        passed_over: Vec<PassedOver>,
    },
}

/// An asset NextProof did not choose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassedOver {
    pub asset: String,
    pub why: PassReason,
}

/// Why an asset was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PassReason {
    Inactive,
    /// Already delivered to this lead.
    AlreadyDelivered {
        at: Timestamp,
    },
    /// It is for other leads.
    TagMismatch {
        tag: Tag,
        wanted: Vec<String>,
        lead: String,
    },
    /// It serves a stage beyond the lead's frontier.
    StageGated {
        stage: Stage,
        frontier: Stage,
    },
    /// It fits, but an open objection comes first and it does not answer it.
    NotForObjection {
        checkpoint: Checkpoint,
    },
    /// It fits, but serves a stage already installed while proof for the frontier fits too.
    StageInstalled {
        stage: Stage,
        frontier: Stage,
    },
    /// A candidate that scored lower than the chosen one.
    RankedLower {
        score: f64,
        chosen: f64,
    },
}

impl PassReason {
    /// A stable code for the wire and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::AlreadyDelivered { .. } => "already_delivered",
            Self::TagMismatch { .. } => "tag_mismatch",
            Self::StageGated { .. } => "stage_gated",
            Self::NotForObjection { .. } => "not_for_objection",
            Self::StageInstalled { .. } => "stage_installed",
            Self::RankedLower { .. } => "ranked_lower",
        }
    }
}

impl fmt::Display for PassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inactive => f.write_str("inactive"),
            Self::AlreadyDelivered { at } => write!(f, "already delivered to this lead at {at}"),
            Self::TagMismatch { tag, wanted, lead } => {
                let fit = Fit::Mismatch {
                    tag: *tag,
                    wanted: wanted.clone(),
                    lead: lead.clone(),
                };
                write!(f, "{fit}")
            }
            Self::StageGated { stage, frontier } => write!(
                f,
                "serves {stage}, beyond {frontier}, the stage this lead is working toward"
            ),
            Self::NotForObjection { checkpoint } => write!(
                f,
                "does not answer the open {checkpoint} objection, which comes first"
            ),
            Self::StageInstalled { stage, frontier } => write!(
                f,
                "serves {stage}, already installed; proof for {frontier} comes first"
            ),
            Self::RankedLower { score, chosen } => {
                write!(f, "ranked lower: scored {score:.2} against {chosen:.2}")
            }
        }
    }
}

impl Recommendation {
    /// The `ProofRecommended` change for a chosen asset.
    pub fn change(&self) -> Option<Change> {
        match self {
            Self::Asset {
                asset,
                reason,
                context,
                ..
            } => Some(Change::ProofRecommended {
                asset: asset.id.clone(),
                context: *context,
                reason: reason.clone(),
            }),
            Self::Wait { .. } | Self::Nothing { .. } => None,
        }
    }
}

/// What the candidates are for.
enum Focus<'a> {
    Objection(&'a Objection),
    Frontier,
    /// Nothing fits the frontier: proof for an installed stage.
    Reinforce,
}

/// A candidate's draw.
struct Scored {
    index: usize,
    score: f64,
    record: Effectiveness,
}

impl BeliefState {
    /// The proof for this lead now (see the module docs). `catalog` is every asset, active or
    /// not (inactive ones are reported as passed over); `effectiveness` gives an asset's
    /// record in a context; `rng` is the only source of randomness.
    pub fn next_proof(
        &self,
        catalog: &[Asset],
        effectiveness: impl Fn(&str, Stage, Option<Checkpoint>) -> Effectiveness,
        playbook: &ProofPlaybook,
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> Recommendation {
        let frontier = self.frontier();
        let gates: Vec<Result<u32, PassReason>> =
            catalog.iter().map(|a| self.gate(a, frontier)).collect();
        let passes = |i: usize| gates[i].is_ok();
        let indices = || (0..catalog.len()).filter(|&i| passes(i));
        // The concern exists once it is raised: with problem awareness installed, proof that
        // answers it may come from any stage.
        let objection_frontier = if self.is_installed(Stage::ProblemAwareness) {
            Stage::CapabilityTrust
        } else {
            frontier
        };
        let objection_gates: Vec<Result<u32, PassReason>> = catalog
            .iter()
            .map(|a| self.gate(a, objection_frontier))
            .collect();

        // The oldest open objection something answers; the ones before it nothing answers.
        let mut unanswerable: Vec<&Objection> = Vec::new();
        let mut focus = None;
        for objection in self.open_objections() {
            let candidates: Vec<usize> = (0..catalog.len())
                .filter(|&i| objection_gates[i].is_ok())
                .filter(|&i| catalog[i].answers(objection.checkpoint))
                .filter(|&i| {
                    self.delivered_at(&catalog[i].id)
                        .is_none_or(|at| at < objection.raised_at)
                })
                .collect();
            if candidates.is_empty() {
                unanswerable.push(objection);
            } else {
                focus = Some((Focus::Objection(objection), candidates));
                break;
            }
        }
        let (focus, candidates) = focus.unwrap_or_else(|| {
            let fresh: Vec<usize> = indices()
                .filter(|&i| self.delivered_at(&catalog[i].id).is_none())
                .collect();
            let at_frontier: Vec<usize> = fresh
                .iter()
                .copied()
                .filter(|&i| catalog[i].stage == frontier)
                .collect();
            if at_frontier.is_empty() {
                (Focus::Reinforce, fresh)
            } else {
                (Focus::Frontier, at_frontier)
            }
        });

        let focus_gates = match &focus {
            Focus::Objection(_) => &objection_gates,
            Focus::Frontier | Focus::Reinforce => &gates,
        };
        let why_not = |i: usize| -> PassReason {
            if let Err(reason) = &focus_gates[i] {
                return reason.clone();
            }
            let asset = &catalog[i];
            if let Some(at) = self.delivered_at(&asset.id) {
                return PassReason::AlreadyDelivered { at };
            }
            match &focus {
                Focus::Objection(o) => PassReason::NotForObjection {
                    checkpoint: o.checkpoint,
                },
                Focus::Frontier | Focus::Reinforce => PassReason::StageInstalled {
                    stage: asset.stage,
                    frontier,
                },
            }
        };

        if candidates.is_empty() {
            let passed_over: Vec<PassedOver> = catalog
                .iter()
                .enumerate()
                .map(|(i, a)| PassedOver {
                    asset: a.id.clone(),
                    why: why_not(i),
                })
                .collect();
            return Recommendation::Nothing {
                reason: self.nothing_reason(&passed_over, &unanswerable, frontier),
                passed_over,
            };
        }

        if let Some(last) = self.last_delivery() {
            let until = last
                .at
                .checked_add(playbook.spacing())
                .unwrap_or(Timestamp::MAX);
            let asked_since = matches!(&focus, Focus::Objection(o) if o.raised_at > last.at);
            if now < until && !asked_since {
                return Recommendation::Wait {
                    until,
                    reason: format!(
                        "the last proof ({}) went out at {}; proof to one lead is spaced {:#} \
                         apart, so the next can go at {until}",
                        last.asset,
                        last.at,
                        playbook.spacing()
                    ),
                };
            }
        }

        let context = Context {
            stage: frontier,
            checkpoint: match &focus {
                Focus::Objection(o) => Some(o.checkpoint),
                Focus::Frontier | Focus::Reinforce => None,
            },
        };
        let prior = playbook.prior();
        let scored: Vec<Scored> = candidates
            .iter()
            .map(|&index| {
                let asset = &catalog[index];
                let record = effectiveness(&asset.id, context.stage, context.checkpoint);
                let mean = record.mean(prior);
                let bound = playbook.max_deviation();
                let draw = record.sample(prior, rng).clamp(mean - bound, mean + bound);
                let matched = focus_gates[index].as_ref().copied().unwrap_or(0);
                Scored {
                    index,
                    score: draw + playbook.tag_bonus() * f64::from(matched),
                    record,
                }
            })
            .collect();
        let best = scored.iter().fold(
            &scored[0],
            |best, s| if s.score > best.score { s } else { best },
        );

        let passed_over = catalog
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != best.index)
            .map(|(i, a)| PassedOver {
                asset: a.id.clone(),
                why: match scored.iter().find(|s| s.index == i) {
                    Some(s) => PassReason::RankedLower {
                        score: s.score,
                        chosen: best.score,
                    },
                    None => why_not(i),
                },
            })
            .collect();
        let asset = &catalog[best.index];
        let matched = focus_gates[best.index].as_ref().copied().unwrap_or(0);
        let reason = self.chosen_reason(asset, &focus, &unanswerable, matched, best, scored.len());
        Recommendation::Asset {
            asset: asset.clone(),
            reason,
            context,
            passed_over,
        }
    }

    /// The gates that do not depend on the focus: active, fits the lead, within the frontier.
    /// `Ok` carries how many of the lead's tags it names.
    fn gate(&self, asset: &Asset, frontier: Stage) -> Result<u32, PassReason> {
        if !asset.active {
            return Err(PassReason::Inactive);
        }
        let matched = match asset.fit(&self.profile) {
            Fit::Fits { matched } => matched,
            Fit::Mismatch { tag, wanted, lead } => {
                return Err(PassReason::TagMismatch { tag, wanted, lead });
            }
        };
        if asset.stage > frontier {
            return Err(PassReason::StageGated {
                stage: asset.stage,
                frontier,
            });
        }
        Ok(matched)
    }

    fn installed_words(&self) -> String {
        match self.stage() {
            None => "nothing installed yet".to_owned(),
            Some(stage) => format!("{stage} installed"),
        }
    }

    fn chosen_reason(
        &self,
        asset: &Asset,
        focus: &Focus<'_>,
        unanswerable: &[&Objection],
        matched: u32,
        best: &Scored,
        candidates: usize,
    ) -> String {
        let frontier = self.frontier();
        let mut parts = Vec::new();
        match focus {
            Focus::Objection(o) => {
                let mut part = format!(
                    "answers the open {} objection raised at {} (\"{}\")",
                    o.checkpoint,
                    o.raised_at,
                    o.quote()
                );
                if self.delivered_at(&asset.id).is_some() {
                    part.push_str(", sent again: it went out before the concern was raised");
                }
                parts.push(part);
            }
            Focus::Frontier => parts.push(format!(
                "builds {frontier}, the stage this lead is working toward ({})",
                self.installed_words()
            )),
            Focus::Reinforce => parts.push(format!(
                "no proof for {frontier} fits this lead yet; reinforces {}, already installed",
                asset.stage
            )),
        }
        if !unanswerable.is_empty() {
            let checkpoints: Vec<&str> =
                unanswerable.iter().map(|o| o.checkpoint.as_str()).collect();
            parts.push(format!(
                "no eligible proof answers the earlier open {} objection{} yet",
                checkpoints.join(", "),
                if checkpoints.len() > 1 { "s" } else { "" }
            ));
        }
        parts.push(
            Fit::Fits { matched }
                .to_string()
                .replace("fits every lead", "untagged, fits every lead"),
        );
        let record = if best.record.trials() == 0 {
            "not yet tried in this context".to_owned()
        } else {
            format!(
                "{} of {} deliveries in this context worked",
                best.record.successes,
                best.record.trials()
            )
        };
        parts.push(if candidates == 1 {
            format!("the only candidate ({record})")
        } else {
            format!(
                "ranked first of {candidates} at {:.2} ({record})",
                best.score
            )
        });
        parts.join("; ")
    }

    fn nothing_reason(
        &self,
        passed_over: &[PassedOver],
        unanswerable: &[&Objection],
        frontier: Stage,
    ) -> String {
        if passed_over.is_empty() {
            return "the catalog has no assets; add them to the playbook's [[proof.assets]] or \
                    with UpsertAsset"
                .to_owned();
        }
        let count = |code: &str| passed_over.iter().filter(|p| p.why.code() == code).count();
        let mut parts = Vec::new();
        for (code, words) in [
            ("already_delivered", "already delivered"),
            (
                "stage_gated",
                &*format!(
                    "serve a stage beyond {frontier} ({})",
                    self.installed_words()
                ),
            ),
            ("tag_mismatch", "for other segments, industries or personas"),
            ("inactive", "inactive"),
        ] {
            let n = count(code);
            if n > 0 {
                parts.push(format!("{n} {words}"));
            }
        }
        let mut reason = format!(
            "no proof fits this lead now: of {} assets, {}",
            passed_over.len(),
            parts.join(", ")
        );
        if !unanswerable.is_empty() {
            let checkpoints: Vec<&str> =
                unanswerable.iter().map(|o| o.checkpoint.as_str()).collect();
            reason.push_str(&format!(
                "; nothing eligible answers the open {} objection{}",
                checkpoints.join(", "),
                if checkpoints.len() > 1 { "s" } else { "" }
            ));
        }
        reason
    }
}

#[cfg(test)]
mod tests;
