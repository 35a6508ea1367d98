//! The projections: one [`LeadFact`] per lead, everything that happened to it, and one
//! [`RejectionFact`] per submission rejected into review (a rejected submission has no
//! lead, but marketing still paid for it). The service stores each as JSON, one document per
//! lead or rejection, and every report is a pure function over them.
//!
//! A fact is built by [`LeadFact::apply`]ing observations in whatever order they arrive:
//! feedback follows five services' streams, so activation may report on a lead before intake
//! has, and the CRM's outcomes come whenever they come. So a fact keeps times and takes the
//! earliest (first owner, first response, do-not-contact) or keeps every record sorted
//! (touches, outcomes), and every figure derived from it (touches before the first response,
//! the latest outcome) is computed when read. Each event is applied once: the service
//! stores its cursor with the fact in one transaction.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    BeliefStage, Checkpoint, EngagementKind, FailureCause, IcpTier, Observation, OutcomeReason,
    OutcomeStage, Rejected, Strategy, Subject, TaskOutcome, TouchChannel,
};

/// Everything feedback knows about one lead. Self-contained: reports and the verdict read it
/// alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadFact {
    /// Format version of the stored JSON; bumped (with a migration on read) when the shape
    /// changes incompatibly.
    pub version: u32,
    pub lead: Uuid,

    // --- intake ---
    /// Where it came from; empty until intake's `LeadAccepted` arrives.
    pub source: String,
    pub campaign: String,
    pub channel: String,
    /// When intake accepted it. `None` until `LeadAccepted` arrives: such a fact is in no
    /// report (it has no period and no group yet).
    pub received_at: Option<Timestamp>,
    pub icp_tier: IcpTier,
    /// Set when the lead is a rejected submission accepted on review.
    pub review: Option<Review>,
    /// Later submissions of the contact merged into the lead (re-engagements), sorted.
    pub reengaged_at: Vec<Timestamp>,

    // --- activation ---
    /// When the lead first got an owner (queueing is not an assignment).
    pub assigned_at: Option<Timestamp>,
    pub first_owner: Option<String>,
    pub activated_at: Option<Timestamp>,
    pub activated_by: Option<String>,
    pub within_sla: Option<bool>,
    pub time_to_activation: Option<SignedDuration>,
    /// Every SLA breach, sorted by time.
    pub breaches: Vec<Breach>,
    pub reassignments: u32,
    pub escalations: u32,
    /// Since when nobody may contact the lead (no consent, or an opt-out), the earliest.
    pub do_not_contact: Option<DoNotContact>,
    /// When the contact opted out (intake's opt-out, a remove-me reply, an unsubscribe),
    /// the earliest.
    pub opted_out_at: Option<Timestamp>,

    // --- followup ---
    pub cadence: Option<String>,
    pub enrolled_at: Option<Timestamp>,
    /// Every follow-up touch that came due, sorted by time.
    pub touches: Vec<TouchRecord>,
    /// Completed tasks, counted by outcome.
    pub tasks_completed: BTreeMap<TaskOutcome, u32>,
    pub strategy_changes: u32,
    pub momentum_escalations: u32,
    /// Buyer signals, counted by kind.
    pub engagements: BTreeMap<EngagementKind, u32>,
    /// The first response: a positive, neutral or negative reply, a meeting booked, or the
    /// CRM recording a meeting or beyond.
    pub first_response_at: Option<Timestamp>,
    /// The first meeting: booked in followup, or the CRM recording a meeting or beyond.
    pub first_meeting_at: Option<Timestamp>,
    /// When the cadence stopped or the lead was recycled to nurture, the earliest.
    pub follow_up_ended: Option<FollowUpEnd>,

    // --- proof ---
    /// Every delivery, sorted by time.
    pub proof_deliveries: Vec<ProofDelivery>,
    /// Every objection raised, sorted by time.
    pub objections: Vec<ObjectionRecord>,
    /// The highest belief stage installed.
    pub belief_stage: Option<BeliefStage>,
    /// What the lead reached sales without; `None` until it reached sales.
    pub belief_debt: Option<BeliefDebt>,

    // --- the CRM ---
    /// Every outcome recorded, sorted by time (equal times in the order recorded); the last
    /// is the lead's outcome.
    pub outcomes: Vec<OutcomeRecord>,
}

/// A rejected submission accepted on review: the rules it had failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub rejection: Uuid,
    /// The failed rules' codes.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The deadline that passed.
    pub at: Timestamp,
    pub cause: FailureCause,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoNotContact {
    pub at: Timestamp,
    /// `no_consent`, `opted_out`, or `at_intake` when intake flagged it on arrival.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchRecord {
    pub at: Timestamp,
    pub channel: TouchChannel,
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpEnd {
    pub at: Timestamp,
    /// followup's code, e.g. `positive_reply`, `unreachable`, `cadence_finished`.
    pub reason: String,
    /// True when the lead went to long-term nurture rather than stopping.
    pub nurture: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofDelivery {
    pub asset: String,
    pub at: Timestamp,
    /// The checkpoints of the open objections it answered.
    pub answers: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectionRecord {
    pub checkpoint: Checkpoint,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeliefDebt {
    pub at: Timestamp,
    pub missing_stages: Vec<BeliefStage>,
    pub unanswered_objections: Vec<Checkpoint>,
}

impl BeliefDebt {
    /// Whether sales inherited anything: a stage missing or an objection unanswered.
    pub fn is_debt(&self) -> bool {
        !self.missing_stages.is_empty() || !self.unanswered_objections.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub stage: OutcomeStage,
    pub reason: Option<OutcomeReason>,
    pub at: Timestamp,
}

/// Inserts `item` after every element whose key is at or before its own, so the list stays
/// sorted by key and equal keys keep their arrival order. Every key but an outcome's is total
/// (time, then what it was), so the list does not depend on the order of arrival.
fn insert_sorted<T, K: Ord>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    let wanted = key(&item);
    let position = items.partition_point(|x| key(x) <= wanted);
    items.insert(position, item);
}

/// Keeps the earlier of `slot` and `at`.
fn earliest(slot: &mut Option<Timestamp>, at: Timestamp) {
    if slot.is_none_or(|t| at < t) {
        *slot = Some(at);
    }
}

impl LeadFact {
    /// The current format version.
    pub const VERSION: u32 = 1;

    /// A lead nothing is known about yet.
    pub fn new(lead: Uuid) -> Self {
        Self {
            version: Self::VERSION,
            lead,
            source: String::new(),
            campaign: String::new(),
            channel: String::new(),
            received_at: None,
            icp_tier: IcpTier::default(),
            review: None,
            reengaged_at: Vec::new(),
            assigned_at: None,
            first_owner: None,
            activated_at: None,
            activated_by: None,
            within_sla: None,
            time_to_activation: None,
            breaches: Vec::new(),
            reassignments: 0,
            escalations: 0,
            do_not_contact: None,
            opted_out_at: None,
            cadence: None,
            enrolled_at: None,
            touches: Vec::new(),
            tasks_completed: BTreeMap::new(),
            strategy_changes: 0,
            momentum_escalations: 0,
            engagements: BTreeMap::new(),
            first_response_at: None,
            first_meeting_at: None,
            follow_up_ended: None,
            proof_deliveries: Vec::new(),
            objections: Vec::new(),
            belief_stage: None,
            belief_debt: None,
            outcomes: Vec::new(),
        }
    }

    /// Applies what an observation says about this lead. Returns false, changing nothing,
    /// when it is not about this lead.
    pub fn apply(&mut self, observation: &Observation) -> bool {
        if !observation.concerns(self.lead) {
            return false;
        }
        match observation {
            Observation::LeadAccepted {
                source,
                campaign,
                channel,
                received_at,
                icp_tier,
                do_not_contact,
                review,
                ..
            } => {
                self.source = source.trim().to_owned();
                self.campaign = campaign.trim().to_owned();
                self.channel = channel.trim().to_owned();
                self.received_at = Some(*received_at);
                self.icp_tier = *icp_tier;
                self.review.clone_from(review);
                if *do_not_contact {
                    self.mark_do_not_contact(*received_at, "at_intake");
                }
            }
            // Rejections have their own fact; `concerns` already said no.
            Observation::LeadRejected(_) => return false,
            Observation::LeadMerged {
                at, do_not_contact, ..
            } => {
                insert_sorted(&mut self.reengaged_at, *at, |t| *t);
                if *do_not_contact {
                    self.mark_do_not_contact(*at, "at_intake");
                }
            }
            Observation::ContactOptedOut { at, .. } => self.opt_out(*at),
            Observation::LeadAssigned { owner, at, .. } => {
                // Queueing is not an assignment: the lead still has nobody.
                let owner = owner.trim();
                let first = (Some(*at), Some(owner));
                if !owner.is_empty()
                    && (self.assigned_at.is_none()
                        || first < (self.assigned_at, self.first_owner.as_deref()))
                {
                    self.assigned_at = Some(*at);
                    self.first_owner = Some(owner.to_owned());
                }
            }
            Observation::LeadActivated {
                owner,
                at,
                within_sla,
                time_to_activation,
                ..
            } => {
                // The first activation is the one the SLA judged.
                let first = (Some(*at), Some(owner.trim()));
                if self.activated_at.is_none()
                    || first < (self.activated_at, self.activated_by.as_deref())
                {
                    self.activated_at = Some(*at);
                    self.activated_by = Some(owner.trim().to_owned());
                    self.within_sla = Some(*within_sla);
                    self.time_to_activation = Some(*time_to_activation);
                }
            }
            Observation::SlaBreached { at, cause, .. } => insert_sorted(
                &mut self.breaches,
                Breach {
                    at: *at,
                    cause: *cause,
                },
                |b| (b.at, b.cause),
            ),
            Observation::EscalationRaised { .. } => self.escalations += 1,
            Observation::LeadReassigned { .. } => self.reassignments += 1,
            Observation::LeadDoNotContact { at, reason, .. } => {
                if reason.trim() == "opted_out" {
                    self.opt_out(*at);
                } else {
                    self.mark_do_not_contact(*at, reason.trim());
                }
            }
            Observation::LeadEnrolled { cadence, at, .. } => {
                let first = (Some(*at), Some(cadence.trim()));
                if self.enrolled_at.is_none() || first < (self.enrolled_at, self.cadence.as_deref())
                {
                    self.enrolled_at = Some(*at);
                    self.cadence = Some(cadence.trim().to_owned());
                }
            }
            Observation::FollowUpDue {
                channel,
                strategy,
                at,
                ..
            } => insert_sorted(
                &mut self.touches,
                TouchRecord {
                    at: *at,
                    channel: *channel,
                    strategy: *strategy,
                },
                |t| (t.at, t.channel, t.strategy),
            ),
            Observation::TaskCompleted { outcome, .. } => {
                *self.tasks_completed.entry(*outcome).or_default() += 1;
            }
            Observation::StrategyChanged { .. } => self.strategy_changes += 1,
            Observation::EngagementRecorded { kind, at, .. } => {
                *self.engagements.entry(*kind).or_default() += 1;
                if kind.is_response() {
                    earliest(&mut self.first_response_at, *at);
                }
                if *kind == EngagementKind::MeetingBooked {
                    earliest(&mut self.first_meeting_at, *at);
                }
                if kind.is_opt_out() {
                    self.opt_out(*at);
                }
            }
            Observation::MomentumEscalated { .. } => self.momentum_escalations += 1,
            Observation::CadenceStopped { reason, at, .. } => {
                self.end_follow_up(*at, reason, false)
            }
            Observation::RecycledToNurture { reason, at, .. } => {
                self.end_follow_up(*at, reason, true);
            }
            Observation::ProofDelivered {
                asset, at, answers, ..
            } => insert_sorted(
                &mut self.proof_deliveries,
                ProofDelivery {
                    asset: asset.clone(),
                    at: *at,
                    answers: answers.clone(),
                },
                |d| (d.at, d.asset.clone(), d.answers.clone()),
            ),
            Observation::ObjectionRaised { checkpoint, at, .. } => insert_sorted(
                &mut self.objections,
                ObjectionRecord {
                    checkpoint: *checkpoint,
                    at: *at,
                },
                |o| (o.at, o.checkpoint),
            ),
            Observation::BeliefDebtRecorded {
                at,
                missing_stages,
                unanswered_objections,
                ..
            } => {
                // The snapshot at hand-off is taken once; the earliest is it.
                if self.belief_debt.as_ref().is_none_or(|d| *at < d.at) {
                    self.belief_debt = Some(BeliefDebt {
                        at: *at,
                        missing_stages: missing_stages.clone(),
                        unanswered_objections: unanswered_objections.clone(),
                    });
                }
            }
            Observation::BeliefAdvanced { to, .. } => {
                self.belief_stage = self.belief_stage.max(Some(*to));
            }
            Observation::OutcomeRecorded {
                stage, reason, at, ..
            } => {
                if stage.is_progress() {
                    earliest(&mut self.first_response_at, *at);
                    earliest(&mut self.first_meeting_at, *at);
                }
                insert_sorted(
                    &mut self.outcomes,
                    OutcomeRecord {
                        stage: *stage,
                        reason: *reason,
                        at: *at,
                    },
                    |o| o.at,
                );
            }
        }
        true
    }

    /// Keeps the earliest; at equal times the first reason by name, so the result does not
    /// depend on which service's event arrived first.
    fn mark_do_not_contact(&mut self, at: Timestamp, reason: &str) {
        if self
            .do_not_contact
            .as_ref()
            .is_none_or(|d| (at, reason) < (d.at, d.reason.as_str()))
        {
            self.do_not_contact = Some(DoNotContact {
                at,
                reason: reason.to_owned(),
            });
        }
    }

    fn opt_out(&mut self, at: Timestamp) {
        earliest(&mut self.opted_out_at, at);
        self.mark_do_not_contact(at, "opted_out");
    }

    fn end_follow_up(&mut self, at: Timestamp, reason: &str, nurture: bool) {
        let reason = reason.trim();
        if self
            .follow_up_ended
            .as_ref()
            .is_none_or(|e| (at, reason) < (e.at, e.reason.as_str()))
        {
            self.follow_up_ended = Some(FollowUpEnd {
                at,
                reason: reason.to_owned(),
                nurture,
            });
        }
    }

    /// Whether intake's `LeadAccepted` has arrived.
    pub fn is_accepted(&self) -> bool {
        self.received_at.is_some()
    }

    /// Whether an owner acted on it.
    pub fn is_activated(&self) -> bool {
        self.activated_at.is_some()
    }

    /// Whether the lead could be worked: it was not do-not-contact before it was activated or
    /// its SLA breached. A lead that arrived without consent, or opted out while waiting in
    /// its SLA window, was never the system's to activate.
    pub fn may_be_contacted(&self) -> bool {
        let Some(dnc) = &self.do_not_contact else {
            return true;
        };
        self.activated_at.is_some_and(|t| t <= dnc.at)
            || self.breaches.first().is_some_and(|b| b.at <= dnc.at)
    }

    /// Follow-up touches that came due.
    pub fn touch_count(&self) -> u32 {
        u32::try_from(self.touches.len()).unwrap_or(u32::MAX)
    }

    pub fn first_touch_at(&self) -> Option<Timestamp> {
        self.touches.first().map(|t| t.at)
    }

    pub fn last_touch_at(&self) -> Option<Timestamp> {
        self.touches.last().map(|t| t.at)
    }

    /// From the first touch to the last; zero with one touch, `None` with none.
    pub fn touch_span(&self) -> Option<SignedDuration> {
        Some(self.last_touch_at()?.duration_since(self.first_touch_at()?))
    }

    /// Touches that came due strictly before `at`.
    pub fn touches_before(&self, at: Timestamp) -> u32 {
        u32::try_from(self.touches.partition_point(|t| t.at < at)).unwrap_or(u32::MAX)
    }

    /// How many touches it took to get an answer; `None` when the lead never answered.
    pub fn touches_before_first_response(&self) -> Option<u32> {
        self.first_response_at.map(|at| self.touches_before(at))
    }

    /// Whether the buyer ever answered (see [`Self::first_response_at`]).
    pub fn responded(&self) -> bool {
        self.first_response_at.is_some()
    }

    /// Whether the lead reached a meeting or beyond.
    pub fn reached_meeting(&self) -> bool {
        self.first_meeting_at.is_some()
    }

    /// The furthest progress the CRM recorded (meeting < opportunity < won), and a meeting
    /// booked in followup counts as a meeting.
    pub fn furthest(&self) -> Option<OutcomeStage> {
        let crm = self
            .outcomes
            .iter()
            .map(|o| o.stage)
            .filter(|s| s.is_progress())
            .max();
        let booked = self.first_meeting_at.map(|_| OutcomeStage::Meeting);
        crm.max(booked)
    }

    /// The lead's outcome: the latest recorded.
    pub fn latest_outcome(&self) -> Option<&OutcomeRecord> {
        self.outcomes.last()
    }

    /// The latest outcome when it ends the lead (won, lost, disqualified).
    pub fn final_outcome(&self) -> Option<&OutcomeRecord> {
        self.latest_outcome().filter(|o| o.stage.is_final())
    }

    /// The latest outcome when it is a loss (lost, disqualified).
    pub fn loss(&self) -> Option<&OutcomeRecord> {
        self.latest_outcome().filter(|o| o.stage.is_loss())
    }

    /// Objections with no proof answering them: no delivery at or after the moment it was
    /// raised that answered its checkpoint (proof sent before the concern existed was noise,
    /// not an answer). Proof's `ProofDelivered` names the checkpoints each delivery
    /// answered, so a security pack does not count as an answer to a price objection.
    pub fn objections_without_proof(&self) -> Vec<ObjectionRecord> {
        self.objections
            .iter()
            .filter(|o| {
                !self
                    .proof_deliveries
                    .iter()
                    .any(|d| d.at >= o.at && d.answers.contains(&o.checkpoint))
            })
            .copied()
            .collect()
    }

    /// Counts of engagement `kind`.
    pub fn engagement_count(&self, kind: EngagementKind) -> u32 {
        self.engagements.get(&kind).copied().unwrap_or(0)
    }
}

/// A submission rejected into review. Keyed by the rejection: it has no lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionFact {
    /// Format version of the stored JSON.
    pub version: u32,
    pub rejection: Uuid,
    pub source: String,
    pub campaign: String,
    pub channel: String,
    pub received_at: Timestamp,
    /// The failed rules' codes, each once, sorted: two missing fields are one
    /// `missing_required_field` reason.
    pub reasons: Vec<String>,
}

impl RejectionFact {
    /// The current format version.
    pub const VERSION: u32 = 1;
}

impl From<&Rejected> for RejectionFact {
    fn from(r: &Rejected) -> Self {
        let mut reasons: Vec<String> = r
            .reasons
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        reasons.sort();
        reasons.dedup();
        Self {
            version: Self::VERSION,
            rejection: r.rejection,
            source: r.source.trim().to_owned(),
            campaign: r.campaign.trim().to_owned(),
            channel: r.channel.trim().to_owned(),
            received_at: r.received_at,
            reasons,
        }
    }
}

/// Every projection, built by applying observations in order: what the service does row by
/// row in its store, in memory (tests, a rebuild from the streams).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    pub leads: BTreeMap<Uuid, LeadFact>,
    pub rejections: BTreeMap<Uuid, RejectionFact>,
}

impl Projection {
    pub fn apply(&mut self, observation: &Observation) {
        match observation.subject() {
            Subject::Rejection(_) => {
                if let Observation::LeadRejected(rejected) = observation {
                    let fact = RejectionFact::from(rejected);
                    self.rejections.insert(fact.rejection, fact);
                }
            }
            Subject::Lead(lead) => {
                self.lead(lead).apply(observation);
            }
            Subject::Leads(leads) => {
                for lead in leads {
                    self.lead(*lead).apply(observation);
                }
            }
        }
    }

    fn lead(&mut self, lead: Uuid) -> &mut LeadFact {
        self.leads
            .entry(lead)
            .or_insert_with(|| LeadFact::new(lead))
    }

    /// The lead facts, in id order.
    pub fn lead_facts(&self) -> Vec<LeadFact> {
        self.leads.values().cloned().collect()
    }

    /// The rejection facts, in id order.
    pub fn rejection_facts(&self) -> Vec<RejectionFact> {
        self.rejections.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{day, id};

    fn lead() -> Uuid {
        id(1)
    }

    fn history() -> Vec<Observation> {
        let lead = lead();
        vec![
            Observation::LeadAccepted {
                lead,
                source: " webinar ".into(),
                campaign: "q1".into(),
                channel: "organic".into(),
                received_at: day(3, "09:00"),
                icp_tier: IcpTier::A,
                do_not_contact: false,
                review: None,
            },
            Observation::LeadAssigned {
                lead,
                owner: String::new(),
                at: day(3, "09:00"),
            },
            Observation::LeadAssigned {
                lead,
                owner: "ann".into(),
                at: day(3, "09:05"),
            },
            Observation::SlaBreached {
                lead,
                at: day(3, "10:05"),
                cause: FailureCause::OwnerLate,
            },
            Observation::LeadReassigned {
                lead,
                to_owner: "bob".into(),
                at: day(3, "10:05"),
                cause: FailureCause::OwnerLate,
            },
            Observation::LeadActivated {
                lead,
                owner: "bob".into(),
                at: day(3, "10:30"),
                within_sla: true,
                time_to_activation: SignedDuration::from_mins(90),
            },
            Observation::FollowUpDue {
                lead,
                channel: TouchChannel::Email,
                strategy: Strategy::Value,
                at: day(4, "09:00"),
            },
            Observation::FollowUpDue {
                lead,
                channel: TouchChannel::Call,
                strategy: Strategy::Value,
                at: day(6, "09:00"),
            },
            Observation::EngagementRecorded {
                lead,
                kind: EngagementKind::Open,
                at: day(6, "10:00"),
            },
            Observation::FollowUpDue {
                lead,
                channel: TouchChannel::Email,
                strategy: Strategy::Proof,
                at: day(8, "09:00"),
            },
            Observation::EngagementRecorded {
                lead,
                kind: EngagementKind::ReplyNeutral,
                at: day(8, "12:00"),
            },
            Observation::ObjectionRaised {
                lead,
                checkpoint: Checkpoint::Price,
                at: day(8, "12:00"),
            },
            Observation::ProofDelivered {
                lead,
                asset: "roi".into(),
                at: day(9, "09:00"),
                answers: vec![Checkpoint::Price],
            },
            Observation::OutcomeRecorded {
                lead,
                stage: OutcomeStage::Meeting,
                reason: None,
                at: day(10, "09:00"),
            },
            Observation::OutcomeRecorded {
                lead,
                stage: OutcomeStage::Opportunity,
                reason: None,
                at: day(15, "09:00"),
            },
            Observation::OutcomeRecorded {
                lead,
                stage: OutcomeStage::Lost,
                reason: Some(OutcomeReason::Competitor),
                at: day(25, "09:00"),
            },
        ]
    }

    #[test]
    fn a_history_builds_the_fact() {
        let mut fact = LeadFact::new(lead());
        for o in history() {
            assert!(fact.apply(&o), "{}", o.kind());
        }
        assert_eq!(fact.source, "webinar");
        assert_eq!(fact.first_owner.as_deref(), Some("ann"));
        assert_eq!(fact.assigned_at, Some(day(3, "09:05")));
        assert_eq!(fact.activated_by.as_deref(), Some("bob"));
        assert_eq!((fact.breaches.len(), fact.reassignments), (1, 1));
        assert_eq!(fact.touch_count(), 3);
        assert_eq!(fact.touch_span(), Some(SignedDuration::from_hours(96)));
        // Opens are not answers: the neutral reply after the third touch is.
        assert_eq!(fact.first_response_at, Some(day(8, "12:00")));
        assert_eq!(fact.touches_before_first_response(), Some(3));
        assert_eq!(fact.first_meeting_at, Some(day(10, "09:00")));
        assert_eq!(fact.furthest(), Some(OutcomeStage::Opportunity));
        assert_eq!(
            fact.loss().map(|o| o.reason),
            Some(Some(OutcomeReason::Competitor))
        );
        assert!(fact.objections_without_proof().is_empty());
        assert!(fact.may_be_contacted());
    }

    #[test]
    fn the_order_of_arrival_does_not_matter() {
        let mut forward = LeadFact::new(lead());
        let mut backward = LeadFact::new(lead());
        for o in history() {
            forward.apply(&o);
        }
        for o in history().iter().rev() {
            backward.apply(o);
        }
        assert_eq!(forward, backward);
        // And it survives a round trip through its stored form.
        let json = serde_json::to_string(&forward).unwrap();
        assert_eq!(serde_json::from_str::<LeadFact>(&json).unwrap(), forward);
    }

    #[test]
    fn observations_about_others_change_nothing() {
        let mut fact = LeadFact::new(lead());
        let other = Observation::MomentumEscalated {
            lead: id(2),
            at: day(3, "09:00"),
        };
        assert!(!fact.apply(&other));
        let rejected = Observation::LeadRejected(Rejected {
            rejection: lead(),
            source: "s".into(),
            campaign: String::new(),
            channel: String::new(),
            received_at: day(3, "09:00"),
            reasons: vec![],
        });
        assert!(!fact.apply(&rejected));
        assert_eq!(fact, LeadFact::new(lead()));
        // A contact's opt-out names each of its leads.
        let opt_out = Observation::ContactOptedOut {
            leads: vec![id(2), lead()],
            at: day(4, "09:00"),
        };
        assert!(fact.apply(&opt_out));
        assert_eq!(fact.opted_out_at, Some(day(4, "09:00")));
        assert_eq!(
            fact.do_not_contact.as_ref().map(|d| d.reason.as_str()),
            Some("opted_out")
        );
    }

    #[test]
    fn objections_need_proof_for_their_checkpoint_delivered_after_them() {
        let mut fact = LeadFact::new(lead());
        let l = lead();
        for o in [
            // before the objection: noise, not an answer
            Observation::ProofDelivered {
                lead: l,
                asset: "early".into(),
                at: day(3, "09:00"),
                answers: vec![],
            },
            Observation::ObjectionRaised {
                lead: l,
                checkpoint: Checkpoint::Price,
                at: day(4, "09:00"),
            },
            Observation::ObjectionRaised {
                lead: l,
                checkpoint: Checkpoint::SecurityCompliance,
                at: day(4, "10:00"),
            },
            // answers security, not price
            Observation::ProofDelivered {
                lead: l,
                asset: "security-pack".into(),
                at: day(5, "09:00"),
                answers: vec![Checkpoint::SecurityCompliance],
            },
        ] {
            fact.apply(&o);
        }
        let open: Vec<_> = fact
            .objections_without_proof()
            .iter()
            .map(|o| o.checkpoint)
            .collect();
        assert_eq!(open, [Checkpoint::Price]);
    }

    #[test]
    fn do_not_contact_before_activation_takes_the_lead_out_of_the_system_s_hands() {
        let l = lead();
        let accepted = |dnc| Observation::LeadAccepted {
            lead: l,
            source: "s".into(),
            campaign: "c".into(),
            channel: "ch".into(),
            received_at: day(3, "09:00"),
            icp_tier: IcpTier::B,
            do_not_contact: dnc,
            review: None,
        };
        let mut no_consent = LeadFact::new(l);
        no_consent.apply(&accepted(true));
        assert!(!no_consent.may_be_contacted());

        // Breached first, opted out after: the system had already failed it.
        let mut breached = LeadFact::new(l);
        breached.apply(&accepted(false));
        breached.apply(&Observation::SlaBreached {
            lead: l,
            at: day(3, "10:00"),
            cause: FailureCause::NoOwnerWorking,
        });
        breached.apply(&Observation::LeadDoNotContact {
            lead: l,
            at: day(3, "11:00"),
            reason: "opted_out".into(),
        });
        assert!(breached.may_be_contacted());
        assert_eq!(breached.opted_out_at, Some(day(3, "11:00")));
    }

    #[test]
    fn rejection_reasons_are_counted_once_per_rule() {
        let fact = RejectionFact::from(&Rejected {
            rejection: id(9),
            source: "webinar".into(),
            campaign: "q1".into(),
            channel: "organic".into(),
            received_at: day(3, "09:00"),
            reasons: vec![
                "missing_required_field".into(),
                "invalid_email".into(),
                "missing_required_field".into(),
            ],
        });
        assert_eq!(fact.reasons, ["invalid_email", "missing_required_field"]);
    }
}
