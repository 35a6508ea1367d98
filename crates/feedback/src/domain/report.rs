//! What marketing reads: per source, campaign or channel, how the leads it bought were
//! worked and what became of them ([`report`]), and where the funnel drops ([`funnel`]).
//! Pure functions over the facts; the service loads the facts of the period and calls them.
//!
//! Definitions every figure follows:
//! - *In the period*: a lead whose `received_at` (intake's acceptance) is in `[from, to)`, a
//!   rejection whose `received_at` is. A lead fact intake has not reported on yet is in no
//!   period.
//! - *Received* counts each submission once: every accepted lead, plus every rejected
//!   submission that was not later accepted on review (one that was counts as the lead it
//!   became, when it became it). *Rejected* counts every rejection, reviewed or not, and
//!   *rejections by reason* counts each rejection once per rule it failed.
//! - *Contactable*: accepted leads that were not do-not-contact before they could be
//!   activated (see [`LeadFact::may_be_contacted`]). The share activated within SLA and the
//!   share never activated (ignored) are of contactable leads, and a lead still inside its
//!   SLA window counts as not activated: the report is as of the moment it is read.
//! - *Time to activation* (median, p90) is over activated leads, by the nearest-rank method
//!   ([`nearest_rank`]).
//! - *Responded*: a positive, neutral or negative reply, a meeting booked, or a CRM outcome of
//!   meeting or beyond. *Touches before first response* averages, over leads that responded,
//!   the follow-up touches strictly before the first response.
//! - *Reached a meeting*: a meeting booked in followup, or a CRM outcome of meeting,
//!   opportunity or won (a lead lost after a meeting still reached it).
//! - *Conversion after persistence*: of the leads that got at least `persistence_touches`
//!   touches before reaching a meeting (or at all, when they never did), the share that then
//!   reached one.
//! - *Conversion by verdict*: the share reaching a meeting among leads with a fair chance and
//!   among those without; undetermined leads are in neither.
//! - *Belief debt*: over leads that reached sales (proof recorded their debt at hand-off), the
//!   share with debt (a stage missing or an objection unanswered) and the average number of
//!   missing stages (over all of them, debt or not).
//! - *Top objections* count objections raised (a lead raising price twice counts twice),
//!   most first, ties by name.
//! - *Attribution* counts lost and disqualified leads by [`attribute`].
//!
//! Groups are listed by key; a lead with no source (campaign, channel) is in the group with
//! the empty key.

use std::collections::{BTreeMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Attribution, Checkpoint, FeedbackError, LeadFact, OutcomeStage, RejectionFact, Verdict,
    attribute, verdict, wire_enum,
};
use crate::playbook::FeedbackPlaybook;

/// `[from, to)`: when leads were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    from: Timestamp,
    to: Timestamp,
}

impl Period {
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, FeedbackError> {
        if from >= to {
            return Err(FeedbackError::EmptyPeriod { from, to });
        }
        Ok(Self { from, to })
    }

    pub fn from(&self) -> Timestamp {
        self.from
    }

    pub fn to(&self) -> Timestamp {
        self.to
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }
}

/// What a report groups leads by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Source,
    Campaign,
    Channel,
}

wire_enum!(GroupBy, "group by", [
    Source => "source",
    Campaign => "campaign",
    Channel => "channel",
]);

impl GroupBy {
    pub fn lead_key(self, fact: &LeadFact) -> &str {
        match self {
            Self::Source => &fact.source,
            Self::Campaign => &fact.campaign,
            Self::Channel => &fact.channel,
        }
    }

    pub fn rejection_key(self, fact: &RejectionFact) -> &str {
        match self {
            Self::Source => &fact.source,
            Self::Campaign => &fact.campaign,
            Self::Channel => &fact.channel,
        }
    }
}

/// Only the leads of one source, campaign or channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub by: GroupBy,
    pub value: String,
}

impl Filter {
    fn lead(&self, fact: &LeadFact) -> bool {
        self.by.lead_key(fact) == self.value.trim()
    }

    fn rejection(&self, fact: &RejectionFact) -> bool {
        self.by.rejection_key(fact) == self.value.trim()
    }
}

/// `count` out of `of`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    pub count: u64,
    pub of: u64,
}

impl Share {
    /// The share from 0 to 1; `None` out of nothing.
    pub fn ratio(&self) -> Option<f64> {
        (self.of > 0).then(|| self.count as f64 / self.of as f64)
    }

    fn add(&mut self, counted: bool) {
        self.of += 1;
        self.count += u64::from(counted);
    }
}

/// `total / count`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Average {
    pub total: u64,
    pub count: u64,
}

impl Average {
    /// The mean; `None` over nothing.
    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total as f64 / self.count as f64)
    }

    fn add(&mut self, value: u64) {
        self.total += value;
        self.count += 1;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub fair: u64,
    pub not_fair: u64,
    pub undetermined: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttributionCounts {
    pub lead_quality: u64,
    pub system_failure: u64,
    pub undetermined: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BeliefDebtSummary {
    /// Leads that reached sales, with debt or not.
    pub handed_off: u64,
    pub with_debt: Share,
    pub missing_stages: Average,
}

/// The figures of one group (or of all leads, for the total).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupReport {
    pub key: String,
    pub received: u64,
    pub rejected: u64,
    /// Rule code and how many rejections failed it; most first, ties by code.
    pub rejections_by_reason: Vec<(String, u64)>,
    pub accepted: u64,
    /// Of the accepted, those that had been rejected and were accepted on review.
    pub accepted_after_review: u64,
    pub contactable: u64,
    pub activated_within_sla: Share,
    pub median_time_to_activation: Option<SignedDuration>,
    pub p90_time_to_activation: Option<SignedDuration>,
    /// Contactable leads nobody acted on: ignored.
    pub never_activated: Share,
    pub touches_before_first_response: Average,
    pub converted_after_persistence: Share,
    pub verdicts: VerdictCounts,
    pub fair_chance_conversion: Share,
    pub not_fair_conversion: Share,
    pub belief_debt: BeliefDebtSummary,
    /// Checkpoint and how often it was raised; most first, ties by name.
    pub top_objections: Vec<(Checkpoint, u64)>,
    pub attribution: AttributionCounts,
}

/// The report for a period, one row per group and a total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub group_by: GroupBy,
    pub groups: Vec<GroupReport>,
    pub total: GroupReport,
}

impl Report {
    pub fn group(&self, key: &str) -> Option<&GroupReport> {
        self.groups.iter().find(|g| g.key == key)
    }
}

/// The `p`-th percentile (1 to 100) of `sorted` (ascending) by the nearest-rank method: the
/// smallest value with at least `p`% of the values at or below it, i.e. the value at rank
/// ⌈p·n/100⌉ (1-based). So the median of an even count is the lower middle value, and every
/// percentile is a value that occurred. `None` when empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: u32) -> Option<T> {
    let n = u64::try_from(sorted.len()).unwrap_or(u64::MAX);
    let rank = usize::try_from(nearest_rank_of(n, p)).unwrap_or(usize::MAX);
    sorted.get(rank - 1).copied()
}

/// The 1-based rank [`nearest_rank`] takes the `p`-th percentile from among `n` values:
/// ⌈p·n/100⌉, at least 1.
pub fn nearest_rank_of(n: u64, p: u32) -> u64 {
    let p = u64::from(p.clamp(1, 100));
    p.saturating_mul(n).div_ceil(100).max(1)
}

/// One lead with what is decided about it.
struct Judged<'a> {
    fact: &'a LeadFact,
    verdict: Verdict,
    attribution: Option<Attribution>,
}

/// The report for `period`, grouped `by`, as of `now`.
pub fn report(
    leads: &[LeadFact],
    rejections: &[RejectionFact],
    period: Period,
    by: GroupBy,
    playbook: &FeedbackPlaybook,
    now: Timestamp,
) -> Report {
    let reviewed = reviewed(leads);
    let rule = playbook.fair_chance();
    let targeting = playbook.targeting_reasons();
    let judged: Vec<Judged<'_>> = leads
        .iter()
        .filter(|f| f.received_at.is_some_and(|t| period.contains(t)))
        .map(|fact| {
            let verdict = verdict(fact, &rule, now);
            let attribution = attribute(fact, &verdict, &targeting);
            Judged {
                fact,
                verdict,
                attribution,
            }
        })
        .collect();
    let rejections: Vec<&RejectionFact> = rejections
        .iter()
        .filter(|r| period.contains(r.received_at))
        .collect();

    let mut groups: BTreeMap<&str, (Vec<&Judged<'_>>, Vec<&RejectionFact>)> = BTreeMap::new();
    for j in &judged {
        groups.entry(by.lead_key(j.fact)).or_default().0.push(j);
    }
    for r in &rejections {
        groups.entry(by.rejection_key(r)).or_default().1.push(r);
    }
    let persistence = u64::from(playbook.persistence_touches());
    let groups = groups
        .into_iter()
        .map(|(key, (leads, rejections))| {
            summarise(key, &leads, &rejections, &reviewed, persistence)
        })
        .collect();
    let all: Vec<&Judged<'_>> = judged.iter().collect();
    Report {
        period,
        group_by: by,
        groups,
        total: summarise("", &all, &rejections, &reviewed, persistence),
    }
}

/// The rejections some lead came from.
fn reviewed(leads: &[LeadFact]) -> HashSet<Uuid> {
    leads
        .iter()
        .filter_map(|f| f.review.as_ref().map(|r| r.rejection))
        .collect()
}

fn summarise(
    key: &str,
    leads: &[&Judged<'_>],
    rejections: &[&RejectionFact],
    reviewed: &HashSet<Uuid>,
    persistence_touches: u64,
) -> GroupReport {
    let mut g = GroupReport {
        key: key.to_owned(),
        rejected: rejections.len() as u64,
        accepted: leads.len() as u64,
        ..GroupReport::default()
    };
    let unreviewed = rejections
        .iter()
        .filter(|r| !reviewed.contains(&r.rejection))
        .count() as u64;
    g.received = g.accepted + unreviewed;
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for reason in rejections.iter().flat_map(|r| &r.reasons) {
        *reasons.entry(reason).or_default() += 1;
    }
    g.rejections_by_reason = most_first(reasons.into_iter().map(|(r, n)| (r.to_owned(), n)));

    let mut times = Vec::new();
    let mut objections: BTreeMap<Checkpoint, u64> = BTreeMap::new();
    for Judged {
        fact,
        verdict,
        attribution,
    } in leads.iter().copied()
    {
        g.accepted_after_review += u64::from(fact.review.is_some());
        if fact.may_be_contacted() {
            g.contactable += 1;
            g.activated_within_sla
                .add(fact.is_activated() && fact.within_sla == Some(true));
            g.never_activated.add(!fact.is_activated());
        }
        if let Some(at) = fact.activated_at {
            let since = fact.received_at.unwrap_or(at);
            times.push(fact.time_to_activation.unwrap_or(at.duration_since(since)));
        }
        if let Some(n) = fact.touches_before_first_response() {
            g.touches_before_first_response.add(u64::from(n));
        }
        let touched = match fact.first_meeting_at {
            Some(at) => fact.touches_before(at),
            None => fact.touch_count(),
        };
        if u64::from(touched) >= persistence_touches {
            g.converted_after_persistence.add(fact.reached_meeting());
        }
        match verdict {
            Verdict::Fair => {
                g.verdicts.fair += 1;
                g.fair_chance_conversion.add(fact.reached_meeting());
            }
            Verdict::NotFair { .. } => {
                g.verdicts.not_fair += 1;
                g.not_fair_conversion.add(fact.reached_meeting());
            }
            Verdict::Undetermined { .. } => g.verdicts.undetermined += 1,
        }
        if let Some(debt) = &fact.belief_debt {
            g.belief_debt.handed_off += 1;
            g.belief_debt.with_debt.add(debt.is_debt());
            g.belief_debt
                .missing_stages
                .add(debt.missing_stages.len() as u64);
        }
        for o in &fact.objections {
            *objections.entry(o.checkpoint).or_default() += 1;
        }
        match attribution {
            Some(Attribution::LeadQuality { .. }) => g.attribution.lead_quality += 1,
            Some(Attribution::SystemFailure { .. }) => g.attribution.system_failure += 1,
            Some(Attribution::Undetermined { .. }) => g.attribution.undetermined += 1,
            None => {}
        }
    }
    times.sort();
    g.median_time_to_activation = nearest_rank(&times, 50);
    g.p90_time_to_activation = nearest_rank(&times, 90);
    let mut top: Vec<(Checkpoint, u64)> = objections.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    g.top_objections = top;
    g
}

/// Sorts counts most first, ties by name.
fn most_first(counts: impl Iterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A funnel stage. Stages are nested: a lead counts at every stage up to the furthest it
/// reached, so a lead won without a recorded reply still counts as engaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelStage {
    /// Submitted: accepted, or rejected and never accepted on review.
    Received,
    Accepted,
    /// An owner acted on it.
    Activated,
    /// The buyer answered: a reply of any sentiment (not a remove-me) or a meeting.
    Engaged,
    Meeting,
    Opportunity,
    Won,
}

wire_enum!(FunnelStage, "funnel stage", [
    Received => "received",
    Accepted => "accepted",
    Activated => "activated",
    Engaged => "engaged",
    Meeting => "meeting",
    Opportunity => "opportunity",
    Won => "won",
]);

impl FunnelStage {
    /// The furthest stage a lead reached.
    pub fn of(fact: &LeadFact) -> FunnelStage {
        match fact.furthest() {
            Some(OutcomeStage::Won) => Self::Won,
            Some(OutcomeStage::Opportunity) => Self::Opportunity,
            Some(_) => Self::Meeting,
            None if fact.responded() => Self::Engaged,
            None if fact.is_activated() => Self::Activated,
            None => Self::Accepted,
        }
    }
}

/// One stage of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FunnelStep {
    pub stage: FunnelStage,
    /// Leads (submissions, for received) that reached it.
    pub count: u64,
    /// Of those, how many did not reach the next stage; `None` at the last stage.
    pub drop_off: Option<Share>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub period: Period,
    pub filter: Option<Filter>,
    pub steps: Vec<FunnelStep>,
}

impl Funnel {
    pub fn count(&self, stage: FunnelStage) -> u64 {
        self.steps
            .iter()
            .find(|s| s.stage == stage)
            .map_or(0, |s| s.count)
    }
}

/// The funnel of the leads received in `period`, optionally of one source, campaign or
/// channel.
pub fn funnel(
    leads: &[LeadFact],
    rejections: &[RejectionFact],
    period: Period,
    filter: Option<&Filter>,
) -> Funnel {
    let reviewed = reviewed(leads);
    let mut reached: BTreeMap<FunnelStage, u64> = BTreeMap::new();
    for fact in leads
        .iter()
        .filter(|f| f.received_at.is_some_and(|t| period.contains(t)))
        .filter(|f| filter.is_none_or(|x| x.lead(f)))
    {
        *reached.entry(FunnelStage::of(fact)).or_default() += 1;
    }
    let unreviewed = rejections
        .iter()
        .filter(|r| period.contains(r.received_at))
        .filter(|r| filter.is_none_or(|x| x.rejection(r)))
        .filter(|r| !reviewed.contains(&r.rejection))
        .count() as u64;
    *reached.entry(FunnelStage::Received).or_default() += unreviewed;
    funnel_of_counts(&reached, period, filter)
}

/// The funnel from how many leads (submissions, for received) stopped at each stage.
pub fn funnel_of_counts(
    reached: &BTreeMap<FunnelStage, u64>,
    period: Period,
    filter: Option<&Filter>,
) -> Funnel {
    // A lead counts at its furthest stage and every stage before it.
    let counts: Vec<(FunnelStage, u64)> = FunnelStage::ALL
        .iter()
        .map(|stage| {
            let n = reached.range(*stage..).map(|(_, n)| n).sum();
            (*stage, n)
        })
        .collect();
    let steps = counts
        .iter()
        .enumerate()
        .map(|(i, (stage, count))| FunnelStep {
            stage: *stage,
            count: *count,
            drop_off: counts.get(i + 1).map(|(_, next)| Share {
                count: count - next,
                of: *count,
            }),
        })
        .collect();
    Funnel {
        period,
        filter: filter.cloned(),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::day;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 91), Some(10));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        assert_eq!(nearest_rank(&ten, 1), Some(1));
        // The median of an even count is the lower middle value; of an odd count, the middle.
        assert_eq!(nearest_rank(&[10, 20, 30, 40], 50), Some(20));
        assert_eq!(nearest_rank(&[10, 20, 30], 50), Some(20));
        // p90 of fewer than ten values is the largest.
        assert_eq!(nearest_rank(&[10, 20, 30], 90), Some(30));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank::<u32>(&[], 50), None);
    }

    #[test]
    fn a_period_must_not_be_empty() {
        assert!(Period::new(day(1, "00:00"), day(1, "00:00")).is_err());
        let p = Period::new(day(1, "00:00"), day(2, "00:00")).unwrap();
        assert!(p.contains(day(1, "00:00")));
        assert!(!p.contains(day(2, "00:00")));
    }

    #[test]
    fn shares_and_averages_out_of_nothing_are_none() {
        assert_eq!(Share::default().ratio(), None);
        assert_eq!(Share { count: 1, of: 4 }.ratio(), Some(0.25));
        assert_eq!(Average::default().value(), None);
        assert_eq!(Average { total: 7, count: 2 }.value(), Some(3.5));
    }
}
