//! What the reports read of a lead, flattened: the figures [`report`](super::report) and the
//! verdict derive from a [`LeadFact`], each reduced to a number or a flag so the store can
//! keep them as columns beside the fact and aggregate them with SQL instead of loading every
//! fact of a period. The fact stays the source of truth; these are recomputed from it whenever
//! it is written (and on start, for rows written by an older [`LeadFigures::VERSION`]).
//!
//! Nothing here depends on the playbook or on the clock: the fair-chance rule, the
//! persistence threshold and the targeting reasons are applied to these inputs when a report
//! is read, so a changed playbook or the passing of time never leaves a stored figure stale.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use super::{Checkpoint, FunnelStage, LeadFact, OutcomeReason};

/// The flattened figures of one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadFigures {
    /// Intake's `LeadAccepted` has arrived: the lead has a period and a group.
    pub accepted: bool,
    /// The rejected submission it was accepted from on review.
    pub review_of: Option<String>,
    /// See [`LeadFact::may_be_contacted`].
    pub may_contact: bool,
    pub activated: bool,
    /// Activated, and activation said within its SLA.
    pub in_sla: bool,
    /// Activated, and activation said outside its SLA.
    pub late: bool,
    /// Time to activation in microseconds, when activated.
    pub activation_micros: Option<i64>,
    pub breaches: u32,
    /// Touches before the first response, when it responded.
    pub touches_before_response: Option<u32>,
    /// Touches before the first meeting, or all of them when it never had one: what
    /// conversion after persistence compares with the playbook's threshold.
    pub persisted_touches: u32,
    pub reached_meeting: bool,
    /// Responded or opted out: the buyer's answer that may excuse persistence.
    pub answered: bool,
    pub touches: u32,
    /// From the first touch to the last in microseconds; 0 without touches.
    pub touch_span_micros: i64,
    /// Follow-up can no longer continue: the lead ended, followup stopped or recycled it, or
    /// it is do-not-contact.
    pub follow_up_closed: bool,
    pub enrolled: bool,
    /// Since when (microseconds) a lead followup has not enrolled counts as being set up:
    /// activation, or arrival.
    pub grace_from: Option<i64>,
    pub unproven_objections: u32,
    /// The latest outcome ends the lead.
    pub ended: bool,
    /// The latest outcome is a loss.
    pub lost: bool,
    pub loss_reason: Option<OutcomeReason>,
    pub handed_off: bool,
    pub with_debt: bool,
    pub missing_stages: u32,
    /// Objections raised, counted by checkpoint.
    pub objections: BTreeMap<Checkpoint, u32>,
    pub funnel_stage: FunnelStage,
}

fn micros(d: SignedDuration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(if d.is_negative() { i64::MIN } else { i64::MAX })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl LeadFigures {
    /// The derivation's version: bumped whenever what a figure means changes, so the store
    /// recomputes rows written by an older one.
    pub const VERSION: i32 = 1;

    pub fn of(fact: &LeadFact) -> Self {
        let activation_micros = fact.activated_at.map(|at| {
            let since = fact.received_at.unwrap_or(at);
            micros(fact.time_to_activation.unwrap_or(at.duration_since(since)))
        });
        let mut objections = BTreeMap::new();
        for o in &fact.objections {
            *objections.entry(o.checkpoint).or_default() += 1;
        }
        let loss = fact.loss();
        Self {
            accepted: fact.is_accepted(),
            review_of: fact.review.as_ref().map(|r| r.rejection.to_string()),
            may_contact: fact.may_be_contacted(),
            activated: fact.is_activated(),
            in_sla: fact.is_activated() && fact.within_sla == Some(true),
            late: fact.is_activated() && fact.within_sla == Some(false),
            activation_micros,
            breaches: count(fact.breaches.len()),
            touches_before_response: fact.touches_before_first_response(),
            persisted_touches: match fact.first_meeting_at {
                Some(at) => fact.touches_before(at),
                None => fact.touch_count(),
            },
            reached_meeting: fact.reached_meeting(),
            answered: fact.responded() || fact.opted_out_at.is_some(),
            touches: fact.touch_count(),
            touch_span_micros: fact.touch_span().map_or(0, micros),
            follow_up_closed: fact.final_outcome().is_some()
                || fact.follow_up_ended.is_some()
                || fact.do_not_contact.is_some(),
            enrolled: fact.enrolled_at.is_some(),
            grace_from: fact
                .activated_at
                .or(fact.received_at)
                .map(|t| t.as_microsecond()),
            unproven_objections: count(fact.objections_without_proof().len()),
            ended: fact.final_outcome().is_some(),
            lost: loss.is_some(),
            loss_reason: loss.and_then(|l| l.reason),
            handed_off: fact.belief_debt.is_some(),
            with_debt: fact.belief_debt.as_ref().is_some_and(|d| d.is_debt()),
            missing_stages: fact
                .belief_debt
                .as_ref()
                .map_or(0, |d| count(d.missing_stages.len())),
            objections,
            funnel_stage: FunnelStage::of(fact),
        }
    }
}
