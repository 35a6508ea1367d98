//! Fixtures for the domain's tests: timestamps that read like a calendar, lead ids, and a
//! builder that writes a lead's history as the observations the service would decode.

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::{
    BeliefStage, Checkpoint, EngagementKind, FailureCause, IcpTier, LeadFact, Observation,
    OutcomeReason, OutcomeStage, Rejected, Strategy, TouchChannel,
};

/// `hh:mm` UTC on day `d` counted from 1 March 2025 (the 3rd is a Monday); past the 31st it
/// runs on into April (day 32 is 1 April).
pub fn day(d: i64, hh_mm: &str) -> Timestamp {
    let start: Timestamp = format!("2025-03-01T{hh_mm}:00Z")
        .parse()
        .unwrap_or_else(|e| panic!("{hh_mm}: {e}"));
    start
        .checked_add(SignedDuration::from_hours(24 * (d - 1)))
        .unwrap()
}

/// Lead (or rejection) number `n`.
pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A rejected submission.
pub fn rejected(
    n: u128,
    (source, campaign, channel): (&str, &str, &str),
    at: Timestamp,
    reasons: &[&str],
) -> Observation {
    Observation::LeadRejected(Rejected {
        rejection: id(n),
        source: source.into(),
        campaign: campaign.into(),
        channel: channel.into(),
        received_at: at,
        reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
    })
}

/// One lead's history, written step by step.
#[derive(Debug, Clone)]
pub struct LeadBuilder {
    pub lead: Uuid,
    received_at: Option<Timestamp>,
    pub history: Vec<Observation>,
}

impl LeadBuilder {
    pub fn new(n: u128) -> Self {
        Self {
            lead: id(n),
            received_at: None,
            history: Vec::new(),
        }
    }

    fn push(mut self, observation: Observation) -> Self {
        self.history.push(observation);
        self
    }

    /// Accepted from source `s`, campaign `c`, channel `ch`.
    pub fn accepted(self, at: Timestamp) -> Self {
        self.accepted_from(("s", "c", "ch"), at)
    }

    pub fn accepted_from(
        mut self,
        (source, campaign, channel): (&str, &str, &str),
        at: Timestamp,
    ) -> Self {
        self.received_at = Some(at);
        let lead = self.lead;
        self.push(Observation::LeadAccepted {
            lead,
            source: source.into(),
            campaign: campaign.into(),
            channel: channel.into(),
            received_at: at,
            icp_tier: IcpTier::A,
            do_not_contact: false,
            review: None,
        })
    }

    /// Accepted without consent: do-not-contact from the start.
    pub fn accepted_dnc(self, at: Timestamp) -> Self {
        self.accepted(at).without_consent()
    }

    /// Marks the acceptance as one without consent.
    pub fn without_consent(mut self) -> Self {
        for o in &mut self.history {
            if let Observation::LeadAccepted { do_not_contact, .. } = o {
                *do_not_contact = true;
            }
        }
        self
    }

    /// Marks the acceptance as that of a reviewed rejection.
    pub fn after_review(mut self, rejection: u128, reasons: &[&str]) -> Self {
        for o in &mut self.history {
            if let Observation::LeadAccepted { review, .. } = o {
                *review = Some(super::Review {
                    rejection: id(rejection),
                    reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
                });
            }
        }
        self
    }

    pub fn assigned(self, owner: &str, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::LeadAssigned {
            lead,
            owner: owner.into(),
            at,
        })
    }

    /// Activated by `ann`; the time to activation is from acceptance.
    pub fn activated(self, at: Timestamp, within_sla: bool) -> Self {
        let lead = self.lead;
        let since = self.received_at.unwrap_or(at);
        self.push(Observation::LeadActivated {
            lead,
            owner: "ann".into(),
            at,
            within_sla,
            time_to_activation: at.duration_since(since),
        })
    }

    pub fn breach(self, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::SlaBreached {
            lead,
            at,
            cause: FailureCause::OwnerLate,
        })
    }

    /// A breach, an escalation and a reassignment to `bob`.
    pub fn breach_and_reassign(self, at: Timestamp) -> Self {
        let lead = self.lead;
        self.breach(at)
            .push(Observation::EscalationRaised {
                lead,
                at,
                cause: FailureCause::OwnerLate,
            })
            .push(Observation::LeadReassigned {
                lead,
                to_owner: "bob".into(),
                at,
                cause: FailureCause::OwnerLate,
            })
    }

    pub fn enrolled(self, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::LeadEnrolled {
            lead,
            cadence: "standard".into(),
            at,
        })
    }

    /// One touch at 09:00 on each of these days.
    pub fn touches(mut self, days: &[i64]) -> Self {
        for d in days {
            let lead = self.lead;
            self = self.push(Observation::FollowUpDue {
                lead,
                channel: TouchChannel::Email,
                strategy: Strategy::Value,
                at: day(*d, "09:00"),
            });
        }
        self
    }

    pub fn engagement(self, kind: EngagementKind, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::EngagementRecorded { lead, kind, at })
    }

    pub fn stopped(self, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::CadenceStopped {
            lead,
            reason: "positive_reply".into(),
            at,
        })
    }

    pub fn recycled(self, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::RecycledToNurture {
            lead,
            reason: "cadence_finished".into(),
            at,
        })
    }

    pub fn objection(self, checkpoint: Checkpoint, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::ObjectionRaised {
            lead,
            checkpoint,
            at,
        })
    }

    pub fn proof(self, at: Timestamp, answers: &[Checkpoint]) -> Self {
        let lead = self.lead;
        self.push(Observation::ProofDelivered {
            lead,
            asset: "asset".into(),
            at,
            answers: answers.to_vec(),
        })
    }

    pub fn debt(self, at: Timestamp, missing: &[BeliefStage], unanswered: &[Checkpoint]) -> Self {
        let lead = self.lead;
        self.push(Observation::BeliefDebtRecorded {
            lead,
            at,
            missing_stages: missing.to_vec(),
            unanswered_objections: unanswered.to_vec(),
        })
    }

    pub fn outcome(
        self,
        stage: OutcomeStage,
        reason: Option<OutcomeReason>,
        at: Timestamp,
    ) -> Self {
        let lead = self.lead;
        self.push(Observation::OutcomeRecorded {
            lead,
            stage,
            reason,
            at,
        })
    }

    pub fn do_not_contact(self, reason: &str, at: Timestamp) -> Self {
        let lead = self.lead;
        self.push(Observation::LeadDoNotContact {
            lead,
            at,
            reason: reason.into(),
        })
    }

    /// The fact its history builds.
    pub fn fact(&self) -> LeadFact {
        let mut fact = LeadFact::new(self.lead);
        for o in &self.history {
            fact.apply(o);
        }
        fact
    }
}
