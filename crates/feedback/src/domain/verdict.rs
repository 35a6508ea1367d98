//! The verdict the product is named after: did the system give this lead a fair chance? And
//! from it, who is to blame for a lost lead: targeting, or the system.
//!
//! A lead had a fair chance when (each part can be turned off in `[feedback.fair_chance]`):
//! 1. it was activated within its SLA (`require_within_sla`; when off, activated at all);
//! 2. it was followed up with persistence: at least `min_touches` follow-up touches spread
//!    over at least `min_days` from the first touch to the last, unless the buyer answered
//!    (`engaged_earlier_counts`): a reply of any sentiment, a meeting, or an opt-out ends the
//!    need to persist, whenever it came, because a buyer who has answered needs no more
//!    chasing;
//! 3. every objection it raised got proof answering it (`proof_for_objections`): a delivery
//!    at or after the objection that proof says answered its checkpoint.
//!
//! A lead's story may still be running. A shortfall that cannot be repaired any more
//! (activated late, never activated once the SLA breached or the lead ended, too few touches
//! once follow-up ended, an objection without proof once the lead ended) makes the verdict
//! [`Verdict::NotFair`] at once; one that can still be repaired leaves it
//! [`Verdict::Undetermined`]. A lead that was do-not-contact before it could be activated
//! was never the system's to work, and stays undetermined for good.
//!
//! Attribution then splits every lost or disqualified lead three ways: *lead quality* when it
//! had a fair chance and the CRM's reason is a targeting reason (not in the ICP, no budget,
//! no authority, no need); *system failure* when it never had a fair chance, whatever the CRM
//! says; and *undetermined* otherwise (a fair chance lost to a competitor, to timing or to
//! silence says nothing about targeting).

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, LeadFact, OutcomeReason, human};

/// How long after activation (or arrival) a lead followup has not enrolled counts as still
/// being set up, at the least: the enrolment event may simply not have arrived yet.
const ENROLMENT_GRACE: SignedDuration = SignedDuration::from_hours(24);

/// The fair-chance rule, as the playbook's `[feedback.fair_chance]` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FairChanceRule {
    pub require_within_sla: bool,
    pub min_touches: u32,
    /// From the first touch to the last.
    pub min_span: SignedDuration,
    pub engaged_earlier_counts: bool,
    pub proof_for_objections: bool,
}

impl Default for FairChanceRule {
    fn default() -> Self {
        Self {
            require_within_sla: true,
            min_touches: 6,
            min_span: SignedDuration::from_hours(10 * 24),
            engaged_earlier_counts: true,
            proof_for_objections: true,
        }
    }
}

/// One way the system fell short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Shortfall {
    NeverActivated {
        breaches: u32,
    },
    ActivatedLate {
        time_to_activation: Option<SignedDuration>,
        breaches: u32,
    },
    TooFewTouches {
        touches: u32,
        required: u32,
    },
    TooShort {
        span: SignedDuration,
        required: SignedDuration,
    },
    ObjectionWithoutProof {
        checkpoint: Checkpoint,
        raised_at: Timestamp,
    },
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breached = |f: &mut fmt::Formatter<'_>, n: u32| match n {
            0 => Ok(()),
            1 => f.write_str(" (SLA breached once)"),
            n => write!(f, " (SLA breached {n} times)"),
        };
        match self {
            Self::NeverActivated { breaches } => {
                f.write_str("never activated: no owner acted on it")?;
                breached(f, *breaches)
            }
            Self::ActivatedLate {
                time_to_activation,
                breaches,
            } => {
                f.write_str("activated late")?;
                if let Some(t) = time_to_activation {
                    write!(f, ", {} after it arrived", human(*t))?;
                }
                f.write_str(", outside its SLA")?;
                breached(f, *breaches)
            }
            Self::TooFewTouches { touches, required } => write!(
                f,
                "too few touches: followed up {touches} times, {required} required"
            ),
            Self::TooShort { span, required } => write!(
                f,
                "follow-up too short: {} from first to last touch, {} required",
                human(*span),
                human(*required)
            ),
            Self::ObjectionWithoutProof {
                checkpoint,
                raised_at,
            } => write!(
                f,
                "objection without proof: {checkpoint} raised at {raised_at} was never answered with proof"
            ),
        }
    }
}

/// Whether the system gave a lead a fair chance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    Fair,
    /// What fell short for good, in the order of the rule.
    NotFair {
        reasons: Vec<Shortfall>,
    },
    /// Not decided (yet), and why.
    Undetermined {
        why: String,
    },
}

impl Verdict {
    pub fn is_fair(&self) -> bool {
        matches!(self, Self::Fair)
    }

    pub fn is_not_fair(&self) -> bool {
        matches!(self, Self::NotFair { .. })
    }

    /// The verdict's name, as the wire writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Fair => "fair",
            Self::NotFair { .. } => "not_fair",
            Self::Undetermined { .. } => "undetermined",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fair => f.write_str("had a fair chance"),
            Self::NotFair { reasons } => {
                f.write_str("did not have a fair chance: ")?;
                f.write_str(&join(reasons))
            }
            Self::Undetermined { why } => write!(f, "undetermined: {why}"),
        }
    }
}

fn join(reasons: &[Shortfall]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The verdict on `fact` as of `now`.
pub fn verdict(fact: &LeadFact, rule: &FairChanceRule, now: Timestamp) -> Verdict {
    if !fact.may_be_contacted()
        && let Some(dnc) = &fact.do_not_contact
    {
        return Verdict::Undetermined {
            why: format!(
                "the lead may not be contacted ({}) since {}, before the system could work it",
                dnc.reason, dnc.at
            ),
        };
    }
    let ended = fact.final_outcome().is_some();
    let breaches = u32::try_from(fact.breaches.len()).unwrap_or(u32::MAX);
    let mut settled = Vec::new();
    let mut pending = Vec::new();

    // 1. Activation.
    match (fact.activated_at, fact.within_sla) {
        (None, _) if ended || breaches > 0 => settled.push(Shortfall::NeverActivated { breaches }),
        (None, _) => pending.push("not activated yet, and its SLA has not breached".to_owned()),
        (Some(_), Some(false)) if rule.require_within_sla => {
            settled.push(Shortfall::ActivatedLate {
                time_to_activation: fact.time_to_activation,
                breaches,
            });
        }
        (Some(_), _) => {}
    }

    // 2. Persistence.
    let answered = fact.responded() || fact.opted_out_at.is_some();
    if !(rule.engaged_earlier_counts && answered) {
        let touches = fact.touch_count();
        let span = fact.touch_span().unwrap_or(SignedDuration::ZERO);
        let few = touches < rule.min_touches;
        let short = span < rule.min_span;
        if (few || short) && persistence_open(fact, rule, now) {
            pending.push(format!(
                "followed up {touches} times over {} so far, and follow-up is still running",
                human(span)
            ));
        } else {
            if few {
                settled.push(Shortfall::TooFewTouches {
                    touches,
                    required: rule.min_touches,
                });
            }
            if short {
                settled.push(Shortfall::TooShort {
                    span,
                    required: rule.min_span,
                });
            }
        }
    }

    // 3. Proof for every objection.
    if rule.proof_for_objections {
        for o in fact.objections_without_proof() {
            if ended {
                settled.push(Shortfall::ObjectionWithoutProof {
                    checkpoint: o.checkpoint,
                    raised_at: o.at,
                });
            } else {
                pending.push(format!(
                    "the {} objection raised at {} has no proof yet",
                    o.checkpoint, o.at
                ));
            }
        }
    }

    if !settled.is_empty() {
        Verdict::NotFair { reasons: settled }
    } else if !pending.is_empty() {
        Verdict::Undetermined {
            why: format!("still in progress: {}", pending.join("; ")),
        }
    } else {
        Verdict::Fair
    }
}

/// Whether follow-up can still reach the persistence the rule asks for: the lead has not
/// ended, followup has not stopped or recycled it, nobody was told to stop contacting it,
/// and it is enrolled in a cadence (or recently enough activated that its enrolment may be on
/// its way: within `min_days`, and at least a day).
fn persistence_open(fact: &LeadFact, rule: &FairChanceRule, now: Timestamp) -> bool {
    if fact.final_outcome().is_some()
        || fact.follow_up_ended.is_some()
        || fact.do_not_contact.is_some()
    {
        return false;
    }
    if fact.enrolled_at.is_some() {
        return true;
    }
    let grace = enrolment_grace(rule);
    fact.activated_at
        .or(fact.received_at)
        .is_none_or(|start| now < start.checked_add(grace).unwrap_or(Timestamp::MAX))
}

/// How long after activation (or arrival) a lead not enrolled in a cadence still counts as
/// having follow-up ahead of it.
pub fn enrolment_grace(rule: &FairChanceRule) -> SignedDuration {
    rule.min_span.max(ENROLMENT_GRACE)
}

/// Who is to blame for a lost or disqualified lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Attribution {
    /// It had a fair chance and was lost for who it is: marketing's targeting.
    LeadQuality { why: String },
    /// It never had a fair chance: the system lost it, whatever the CRM says.
    SystemFailure { why: String },
    /// Neither can be said.
    Undetermined { why: String },
}

impl Attribution {
    /// The attribution's name, as the wire writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::LeadQuality { .. } => "lead_quality",
            Self::SystemFailure { .. } => "system_failure",
            Self::Undetermined { .. } => "undetermined",
        }
    }

    pub fn why(&self) -> &str {
        match self {
            Self::LeadQuality { why }
            | Self::SystemFailure { why }
            | Self::Undetermined { why } => why,
        }
    }
}

/// The attribution of `fact` given its `verdict`: `None` unless its outcome (the latest the
/// CRM recorded) is lost or disqualified. `targeting` are the reasons that blame targeting.
pub fn attribute(
    fact: &LeadFact,
    verdict: &Verdict,
    targeting: &[OutcomeReason],
) -> Option<Attribution> {
    let loss = fact.loss()?;
    let lost = loss.stage;
    let reason = loss.reason;
    let said = match reason {
        Some(reason) => format!("{lost} for {reason}"),
        None => format!("{lost} without a reason"),
    };
    Some(match verdict {
        Verdict::NotFair { reasons } => Attribution::SystemFailure {
            why: format!("{said}, but it never had a fair chance: {}", join(reasons)),
        },
        Verdict::Fair => match reason {
            Some(reason) if targeting.contains(&reason) => Attribution::LeadQuality {
                why: format!("{said} after a fair chance: {reason} is a targeting reason"),
            },
            _ => Attribution::Undetermined {
                why: format!("{said} after a fair chance, which says nothing about targeting"),
            },
        },
        Verdict::Undetermined { why } => Attribution::Undetermined {
            why: format!("{said}; whether it had a fair chance is undetermined: {why}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{LeadBuilder, day};
    use crate::domain::{Checkpoint, EngagementKind, OutcomeStage};

    const TARGETING: &[OutcomeReason] = &[
        OutcomeReason::NotIcp,
        OutcomeReason::NoBudget,
        OutcomeReason::NoAuthority,
        OutcomeReason::NoNeed,
    ];

    fn rule() -> FairChanceRule {
        FairChanceRule::default()
    }

    /// Accepted on the 3rd, activated within SLA, enrolled, 6 touches from the 4th to the
    /// 14th (10 days): fair so far.
    fn worked() -> LeadBuilder {
        LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 6, 8, 10, 12, 14])
    }

    fn later() -> Timestamp {
        day(28, "00:00")
    }

    #[test]
    fn a_lead_activated_in_time_and_followed_up_with_persistence_had_a_fair_chance() {
        assert_eq!(verdict(&worked().fact(), &rule(), later()), Verdict::Fair);
        // One more touch or day is not needed: the bounds are inclusive.
        let fact = worked().fact();
        assert_eq!(fact.touch_span(), Some(SignedDuration::from_hours(240)));
    }

    #[test]
    fn late_or_missing_activation_is_not_fair() {
        let late = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .breach(day(3, "10:00"))
            .activated(day(3, "13:00"), false)
            .enrolled(day(3, "13:00"))
            .touches(&[4, 6, 8, 10, 12, 14])
            .fact();
        let v = verdict(&late, &rule(), later());
        assert_eq!(
            v.to_string(),
            "did not have a fair chance: activated late, 4h after it arrived, outside its SLA (SLA breached once)"
        );
        // Unless the playbook only asks for activation at all.
        let lenient = FairChanceRule {
            require_within_sla: false,
            ..rule()
        };
        assert_eq!(verdict(&late, &lenient, later()), Verdict::Fair);

        // Not activated, SLA not breached yet: still running.
        let waiting = LeadBuilder::new(1).accepted(day(3, "09:00")).fact();
        assert!(matches!(
            verdict(&waiting, &rule(), day(3, "09:30")),
            Verdict::Undetermined { why } if why.contains("not activated yet")
        ));
        // Breached: the system failed it for good.
        let breached = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .breach(day(3, "10:00"))
            .breach(day(3, "11:00"))
            .fact();
        assert_eq!(
            verdict(&breached, &rule(), day(3, "12:00")),
            Verdict::NotFair {
                reasons: vec![Shortfall::NeverActivated { breaches: 2 }]
            }
        );
    }

    #[test]
    fn persistence_counts_touches_and_days_unless_the_buyer_answered() {
        // Five touches over ten days, cadence finished: too few.
        let few = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 6, 9, 12, 14])
            .recycled(day(15, "09:00"))
            .fact();
        assert_eq!(
            verdict(&few, &rule(), later()),
            Verdict::NotFair {
                reasons: vec![Shortfall::TooFewTouches {
                    touches: 5,
                    required: 6
                }]
            }
        );
        // Eight touches in a week: too short.
        let short = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 4, 5, 6, 7, 8, 9, 10])
            .recycled(day(11, "09:00"))
            .fact();
        let v = verdict(&short, &rule(), later());
        assert_eq!(
            v.to_string(),
            "did not have a fair chance: follow-up too short: 6d from first to last touch, 10d required"
        );
        // Still enrolled: undetermined, not yet unfair.
        let running = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 6])
            .fact();
        assert!(matches!(
            verdict(&running, &rule(), day(7, "00:00")),
            Verdict::Undetermined { why } if why == "still in progress: followed up 2 times over 2d so far, and follow-up is still running"
        ));
        // Never enrolled: open for min_days after activation, then settled.
        let never_enrolled = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .fact();
        assert!(matches!(
            verdict(&never_enrolled, &rule(), day(13, "09:00")),
            Verdict::Undetermined { .. }
        ));
        assert_eq!(
            verdict(&never_enrolled, &rule(), day(13, "09:10")),
            Verdict::NotFair {
                reasons: vec![
                    Shortfall::TooFewTouches {
                        touches: 0,
                        required: 6
                    },
                    Shortfall::TooShort {
                        span: SignedDuration::ZERO,
                        required: SignedDuration::from_hours(240)
                    }
                ]
            }
        );

        // A reply after two touches: the buyer answered, persistence is satisfied.
        let replied = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 6])
            .engagement(EngagementKind::ReplyNegative, day(6, "15:00"))
            .stopped(day(6, "15:00"))
            .fact();
        assert_eq!(verdict(&replied, &rule(), later()), Verdict::Fair);
        // Unless the playbook says an answer does not excuse persistence.
        let strict = FairChanceRule {
            engaged_earlier_counts: false,
            ..rule()
        };
        assert!(verdict(&replied, &strict, later()).is_not_fair());
        // Opens and clicks are not answers.
        let opened = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4, 6])
            .engagement(EngagementKind::Open, day(6, "15:00"))
            .engagement(EngagementKind::Click, day(6, "15:01"))
            .recycled(day(9, "09:00"))
            .fact();
        assert!(verdict(&opened, &rule(), later()).is_not_fair());
        // An unsubscribe is the buyer's answer too.
        let unsubscribed = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(3, "09:10"), true)
            .enrolled(day(3, "09:10"))
            .touches(&[4])
            .engagement(EngagementKind::Unsubscribe, day(4, "10:00"))
            .fact();
        assert_eq!(verdict(&unsubscribed, &rule(), later()), Verdict::Fair);
    }

    #[test]
    fn an_objection_needs_proof_before_the_lead_ends() {
        let open = worked().objection(Checkpoint::Price, day(9, "10:00"));
        assert!(matches!(
            verdict(&open.clone().fact(), &rule(), later()),
            Verdict::Undetermined { why } if why.contains("the price objection raised at 2025-03-09T10:00:00Z has no proof yet")
        ));
        let ended = open
            .clone()
            .outcome(
                OutcomeStage::Lost,
                Some(OutcomeReason::NoBudget),
                day(20, "09:00"),
            )
            .fact();
        let v = verdict(&ended, &rule(), later());
        assert_eq!(
            v,
            Verdict::NotFair {
                reasons: vec![Shortfall::ObjectionWithoutProof {
                    checkpoint: Checkpoint::Price,
                    raised_at: day(9, "10:00")
                }]
            }
        );
        let answered = open
            .proof(day(9, "11:00"), &[Checkpoint::Price])
            .outcome(
                OutcomeStage::Lost,
                Some(OutcomeReason::NoBudget),
                day(20, "09:00"),
            )
            .fact();
        assert_eq!(verdict(&answered, &rule(), later()), Verdict::Fair);
        let lenient = FairChanceRule {
            proof_for_objections: false,
            ..rule()
        };
        assert_eq!(verdict(&ended, &lenient, later()), Verdict::Fair);
    }

    #[test]
    fn a_lead_that_may_not_be_contacted_is_never_judged() {
        let dnc = LeadBuilder::new(1).accepted_dnc(day(3, "09:00")).fact();
        assert!(matches!(
            verdict(&dnc, &rule(), later()),
            Verdict::Undetermined { why } if why.starts_with("the lead may not be contacted (at_intake)")
        ));
    }

    #[test]
    fn losses_are_attributed_to_targeting_only_after_a_fair_chance() {
        let lost = |reason| {
            worked()
                .outcome(OutcomeStage::Lost, Some(reason), day(20, "09:00"))
                .fact()
        };
        let judge = |fact: &LeadFact| {
            let v = verdict(fact, &rule(), later());
            attribute(fact, &v, TARGETING)
        };
        let quality = judge(&lost(OutcomeReason::NotIcp)).unwrap();
        assert_eq!(
            quality,
            Attribution::LeadQuality {
                why: "lost for not_icp after a fair chance: not_icp is a targeting reason".into()
            }
        );
        assert_eq!(
            judge(&lost(OutcomeReason::Competitor)).unwrap().why(),
            "lost for competitor after a fair chance, which says nothing about targeting"
        );
        // With a playbook that counts competitor as targeting, it is lead quality.
        let fact = lost(OutcomeReason::Competitor);
        let v = verdict(&fact, &rule(), later());
        assert_eq!(
            attribute(&fact, &v, &[OutcomeReason::Competitor]).map(|a| a.as_str()),
            Some("lead_quality")
        );

        let late = LeadBuilder::new(1)
            .accepted(day(3, "09:00"))
            .activated(day(4, "09:00"), false)
            .outcome(
                OutcomeStage::Disqualified,
                Some(OutcomeReason::NoBudget),
                day(5, "09:00"),
            )
            .fact();
        let a = judge(&late).unwrap();
        assert_eq!(a.as_str(), "system_failure");
        assert!(
            a.why().starts_with("disqualified for no_budget, but it never had a fair chance: activated late, 1d after it arrived"),
            "{}",
            a.why()
        );

        let dnc = LeadBuilder::new(1)
            .accepted_dnc(day(3, "09:00"))
            .outcome(
                OutcomeStage::Disqualified,
                Some(OutcomeReason::NotIcp),
                day(5, "09:00"),
            )
            .fact();
        assert_eq!(judge(&dnc).unwrap().as_str(), "undetermined");

        // Only losses are attributed: the latest outcome decides.
        let won_after_loss = worked()
            .outcome(
                OutcomeStage::Lost,
                Some(OutcomeReason::Timing),
                day(20, "09:00"),
            )
            .outcome(OutcomeStage::Won, None, day(27, "09:00"))
            .fact();
        assert_eq!(judge(&won_after_loss), None);
        assert_eq!(judge(&worked().fact()), None);
    }
}
