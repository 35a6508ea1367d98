//! Whether a delivery worked, decided once per delivery so the service counts it toward the
//! asset's [`Effectiveness`](super::Effectiveness) exactly once.
//!
//! A delivery works when, within the playbook's `outcome_window` after it (strictly after the
//! delivery, up to and including the end of the window), the lead's belief advanced (any
//! stage installed), they replied positively or neutrally, or booked a meeting. It fails when
//! the window ends with none of those. Credit is shared: every delivery whose window holds the
//! evidence works, because a buyer who is won over by the second piece of proof was often
//! readied by the first.
//!
//! The evidence is read from the state's own history at settling time, so a delivery reported
//! late is judged on what happened after it all the same. The service calls
//! [`BeliefState::settle_outcomes`] after every operation on the state and when the timer at
//! [`BeliefState::next_outcome_due`] fires.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{BeliefState, Context, Sentiment, Signal, Stage};
use crate::playbook::ProofPlaybook;

/// Where a delivery's outcome stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Its window is still running and nothing positive happened yet.
    Pending,
    Success,
    /// The window ended with no positive outcome.
    Failure,
}

/// What made a delivery work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OutcomeEvidence {
    BeliefAdvanced { stage: Stage },
    Replied { sentiment: Sentiment },
    MeetingBooked,
}

/// A delivery's outcome, decided: what the service counts toward the asset's effectiveness
/// in `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The delivery's number.
    pub delivery: u32,
    pub asset: String,
    pub delivered_at: Timestamp,
    pub context: Context,
    pub success: bool,
    pub evidence: Option<OutcomeEvidence>,
    /// The evidence's time for a success, the end of the window for a failure.
    pub decided_at: Timestamp,
}

impl BeliefState {
    /// Decides the outcome of every pending delivery that can be decided at `now` and returns
    /// them, each once: a delivery that has evidence within its window works (even before the
    /// window ends), one whose window ended without fails.
    pub fn settle_outcomes(&mut self, now: Timestamp, playbook: &ProofPlaybook) -> Vec<Outcome> {
        let window = playbook.outcome_window();
        // Decided first, applied after: the evidence is read from the state being changed.
        let decisions: Vec<(usize, Option<OutcomeEvidence>, Timestamp)> = self
            .deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| d.outcome == DeliveryOutcome::Pending)
            .filter_map(|(i, d)| {
                let end = window_end(d.at, window);
                match self.first_evidence(d.at, end) {
                    Some((when, evidence)) => Some((i, Some(evidence), when)),
                    None if now >= end => Some((i, None, end)),
                    None => None,
                }
            })
            .collect();
        decisions
            .into_iter()
            .map(|(i, evidence, decided_at)| {
                let d = &mut self.deliveries[i];
                let success = evidence.is_some();
                d.outcome = if success {
                    DeliveryOutcome::Success
                } else {
                    DeliveryOutcome::Failure
                };
                d.outcome_at = Some(decided_at);
                d.evidence = evidence;
                Outcome {
                    delivery: d.number,
                    asset: d.asset.clone(),
                    delivered_at: d.at,
                    context: d.context,
                    success,
                    evidence,
                    decided_at,
                }
            })
            .collect()
    }

    /// When [`Self::settle_outcomes`] next has something to decide: the end of the earliest
    /// pending window (or the time of evidence not settled yet). `None` when nothing is
    /// pending.
    pub fn next_outcome_due(&self, playbook: &ProofPlaybook) -> Option<Timestamp> {
        let window = playbook.outcome_window();
        self.deliveries
            .iter()
            .filter(|d| d.outcome == DeliveryOutcome::Pending)
            .map(|d| {
                let end = window_end(d.at, window);
                self.first_evidence(d.at, end).map_or(end, |(when, _)| when)
            })
            .min()
    }

    /// The earliest positive evidence in `(after, until]`.
    fn first_evidence(
        &self,
        after: Timestamp,
        until: Timestamp,
    ) -> Option<(Timestamp, OutcomeEvidence)> {
        let within = |t: Timestamp| t > after && t <= until;
        let advances = self
            .installed
            .iter()
            .filter(|i| within(i.at))
            .map(|i| (i.at, OutcomeEvidence::BeliefAdvanced { stage: i.stage }));
        let responses = self
            .signals
            .iter()
            .filter(|s| within(s.at))
            .filter_map(|s| match &s.signal {
                Signal::Reply { sentiment } if *sentiment != Sentiment::Negative => Some((
                    s.at,
                    OutcomeEvidence::Replied {
                        sentiment: *sentiment,
                    },
                )),
                Signal::MeetingBooked => Some((s.at, OutcomeEvidence::MeetingBooked)),
                _ => None,
            });
        // Belief first at equal times: it is the stronger evidence, and the order is stable.
        advances.chain(responses).min_by_key(|(t, _)| *t)
    }
}

fn window_end(at: Timestamp, window: SignedDuration) -> Timestamp {
    at.checked_add(window).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{asset, at, day, playbook, state};
    use crate::domain::{Checkpoint, Stage};

    #[test]
    fn a_delivery_works_on_belief_a_reply_or_a_meeting_within_its_window() {
        // The test playbook's outcome window is 7 days.
        let pb = playbook();
        let mut s = state();
        let a = asset("a", Stage::ProblemAwareness, &[]);
        let b = asset("b", Stage::ProblemAwareness, &[]);
        let c = asset("c", Stage::ProblemAwareness, &[]);
        s.record_delivery(&a, day(1, "09:00")).unwrap();
        assert_eq!(s.next_outcome_due(&pb), Some(day(8, "09:00")));
        assert!(s.settle_outcomes(day(2, "09:00"), &pb).is_empty());

        // A negative reply is not a success.
        s.record_signal(
            Signal::Reply {
                sentiment: Sentiment::Negative,
            },
            day(2, "10:00"),
        );
        assert!(s.settle_outcomes(day(2, "10:00"), &pb).is_empty());

        // A neutral reply is, before the window ends.
        s.record_signal(
            Signal::Reply {
                sentiment: Sentiment::Neutral,
            },
            day(3, "10:00"),
        );
        let outcomes = s.settle_outcomes(day(3, "10:00"), &pb);
        assert_eq!(
            outcomes,
            [Outcome {
                delivery: 1,
                asset: "a".into(),
                delivered_at: day(1, "09:00"),
                context: Context {
                    stage: Stage::ProblemAwareness,
                    checkpoint: None
                },
                success: true,
                // the reply installed problem awareness at the same moment: belief first
                evidence: Some(OutcomeEvidence::BeliefAdvanced {
                    stage: Stage::ProblemAwareness
                }),
                decided_at: day(3, "10:00"),
            }]
        );
        // Decided once.
        assert!(s.settle_outcomes(day(30, "10:00"), &pb).is_empty());
        assert_eq!(s.deliveries[0].outcome, DeliveryOutcome::Success);

        // b: nothing positive within its window: a failure at the window's end.
        s.record_delivery(&b, day(4, "09:00")).unwrap();
        // c: a meeting booked on its last instant still counts.
        s.record_delivery(&c, day(10, "09:00")).unwrap();
        assert_eq!(s.next_outcome_due(&pb), Some(day(11, "09:00")));
        s.record_signal(Signal::MeetingBooked, day(17, "09:00"));
        let outcomes = s.settle_outcomes(day(20, "00:00"), &pb);
        let summary: Vec<_> = outcomes
            .iter()
            .map(|o| (o.asset.as_str(), o.success, o.evidence, o.decided_at))
            .collect();
        assert_eq!(
            summary,
            [
                ("b", false, None, day(11, "09:00")),
                (
                    "c",
                    true,
                    Some(OutcomeEvidence::MeetingBooked),
                    day(17, "09:00")
                ),
            ]
        );
        assert_eq!(s.deliveries[1].outcome_at, Some(day(11, "09:00")));
        assert_eq!(s.next_outcome_due(&pb), None);
    }

    #[test]
    fn credit_is_shared_and_late_reports_are_judged_on_what_followed() {
        let pb = playbook();
        let mut s = state();
        s.record_objection(Checkpoint::Price, "pricey", day(1, "08:00"));
        let a = asset("a", Stage::MechanismUnderstanding, &[Checkpoint::Price]);
        let b = asset("b", Stage::MechanismUnderstanding, &[]);
        s.record_delivery(&a, day(1, "09:00")).unwrap();
        s.record_signal(
            Signal::Note {
                shows: Some(Stage::MechanismUnderstanding),
            },
            day(3, "09:00"),
        );
        // b was delivered on day 2 but reported on day 4.
        s.record_delivery(&b, day(2, "09:00")).unwrap();
        let outcomes = s.settle_outcomes(day(4, "09:00"), &pb);
        let summary: Vec<_> = outcomes
            .iter()
            .map(|o| (o.asset.as_str(), o.success, o.context))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "a",
                    true,
                    Context {
                        stage: Stage::MechanismUnderstanding,
                        checkpoint: Some(Checkpoint::Price)
                    }
                ),
                // reported after the stage was installed, so its context reads capability trust
                (
                    "b",
                    true,
                    Context {
                        stage: Stage::CapabilityTrust,
                        checkpoint: None
                    }
                ),
            ]
        );
    }

    #[test]
    fn evidence_at_the_moment_of_delivery_does_not_count() {
        let pb = playbook();
        let mut s = state();
        s.record_delivery(&asset("a", Stage::ProblemAwareness, &[]), at("09:00"))
            .unwrap();
        s.record_signal(
            Signal::Reply {
                sentiment: Sentiment::Positive,
            },
            at("09:00"),
        );
        assert!(s.settle_outcomes(at("10:00"), &pb).is_empty());
        assert_eq!(s.deliveries[0].outcome, DeliveryOutcome::Pending);
    }
}
