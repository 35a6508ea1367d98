//! Breaches: a lead not activated by its deadline is a system incident. This module says
//! which part of the system failed it (a fixed taxonomy, so reports can count causes) and
//! what happens next: another owner with a fresh window, up to the playbook's limit, after
//! which the manager owns the lead.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::assign::{OwnerState, Unassignable, is_working};
use super::{OwnerId, TeamId};
use crate::playbook::ActivationPlaybook;

/// Why a lead breached its SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachCause {
    /// Getting the lead to an owner took longer than the playbook allows, for no recorded
    /// reason of the team's.
    RoutingDelay,
    /// Nobody was in their working hours to take it, or the owner's hours ended before the
    /// deadline.
    NoOwnerWorking,
    /// Everybody who could take it was at capacity.
    AllOwnersAtCapacity,
    /// The owners were, or the owner went, out of office.
    OwnerUnavailable,
    /// The owner had the lead, was there, and did not act in time.
    OwnerLate,
}

impl From<Unassignable> for BreachCause {
    fn from(cause: Unassignable) -> Self {
        match cause {
            Unassignable::NoOwnerWorking => Self::NoOwnerWorking,
            Unassignable::AllAtCapacity => Self::AllOwnersAtCapacity,
            Unassignable::AllUnavailable => Self::OwnerUnavailable,
            // Every owner had the lead in turn and none acted.
            Unassignable::EveryoneTried => Self::OwnerLate,
        }
    }
}

/// What the assignment's history says at the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachFacts {
    /// When the SLA window started: the lead's arrival, or its reassignment.
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    /// The owner holding the lead and when they got it; `None` while it waits in the queue.
    pub assigned: Option<(OwnerId, Timestamp)>,
    /// Why the lead waited in the team queue, when it did.
    pub queue_cause: Option<Unassignable>,
    /// The owner's runtime state at the deadline.
    pub owner_state: OwnerState,
}

/// Decides the cause of a breach, looking at the two phases of the window in turn:
/// 1. Getting an owner. A lead still in the queue, or one that reached its owner later than
///    the playbook's `routing_delay`, breached because of the queue's recorded cause (no one
///    working, all at capacity, all away), or of routing itself when none was recorded. A
///    short wait is normal and the owner had time enough.
/// 2. The owner. Away at the deadline: owner unavailable. Outside their hours at the
///    deadline: no owner working (the system handed the lead to someone about to leave).
///    Otherwise the owner was there and late.
pub fn breach_cause(facts: &BreachFacts, playbook: &ActivationPlaybook) -> BreachCause {
    let queued = |facts: &BreachFacts| {
        facts
            .queue_cause
            .map_or(BreachCause::RoutingDelay, BreachCause::from)
    };
    let Some((owner, assigned_at)) = &facts.assigned else {
        return queued(facts);
    };
    let routing_took = assigned_at.duration_since(facts.started_at);
    if routing_took > playbook.escalation().routing_delay() {
        return queued(facts);
    }
    if !facts.owner_state.is_available(facts.deadline) {
        return BreachCause::OwnerUnavailable;
    }
    match playbook.owner(owner) {
        Some(o) if !is_working(o, facts.deadline) => BreachCause::NoOwnerWorking,
        _ => BreachCause::OwnerLate,
    }
}

/// The next step after a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalation {
    /// Give the lead to another owner (not one who had it already) with a fresh window.
    Reassign,
    /// The limit is reached: the manager owns the lead from now on.
    ManagerOwns,
}

/// After `reassignments_so_far` reassignments of a lead, whether the breach it just had leads
/// to another reassignment or to the manager. A limit of 0 hands every breached lead to the
/// manager at once. (When a reassignment finds every owner already tried, the manager owns
/// the lead too: see [`Unassignable::EveryoneTried`].)
pub fn on_breach(reassignments_so_far: u32, limit: u32) -> Escalation {
    if reassignments_so_far < limit {
        Escalation::Reassign
    } else {
        Escalation::ManagerOwns
    }
}

/// Who hears of a breach (`EscalationRaised`) and owns the lead once escalation ends: the
/// owner's own manager, else their team's manager; for a lead still in a team's queue, that
/// team's manager.
pub fn escalation_manager<'a>(
    playbook: &'a ActivationPlaybook,
    owner: Option<&OwnerId>,
    team: &TeamId,
) -> Option<&'a OwnerId> {
    match owner.and_then(|id| playbook.owner(id)) {
        Some(owner) => playbook.manager_of(owner),
        None => playbook.team(team).map(|t| t.manager()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assign::{PickContext, RoundRobin, pick_owner};
    use std::collections::BTreeMap;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn playbook() -> ActivationPlaybook {
        crate::playbook::tests::sample()
    }

    /// A lead that arrived Wednesday 2026-03-25 09:00Z (10:00 in Berlin) with a one-hour window.
    fn facts(assigned: Option<(&str, &str)>, queue_cause: Option<Unassignable>) -> BreachFacts {
        BreachFacts {
            started_at: ts("2026-03-25T09:00:00Z"),
            deadline: ts("2026-03-25T10:00:00Z"),
            assigned: assigned.map(|(o, at)| (o.into(), ts(at))),
            queue_cause,
            owner_state: OwnerState::default(),
        }
    }

    #[test]
    fn the_cause_follows_the_assignments_history() {
        use BreachCause::*;
        let pb = playbook(); // routing_delay = 2m
        let away = OwnerState {
            unavailable_until: Some(ts("2026-03-25T12:00:00Z")),
            open_unactivated: 1,
        };
        let back = OwnerState {
            unavailable_until: Some(ts("2026-03-25T09:30:00Z")),
            open_unactivated: 1,
        };
        let with_state = |mut f: BreachFacts, s: OwnerState| {
            f.owner_state = s;
            f
        };
        let mut late_evening = facts(Some(("lena", "2026-03-25T16:00:30Z")), None);
        late_evening.started_at = ts("2026-03-25T16:00:00Z");
        late_evening.deadline = ts("2026-03-25T17:00:00Z"); // 18:00 in Berlin; Lena ends 17:30
        let cases = [
            // never left the queue
            (
                facts(None, Some(Unassignable::NoOwnerWorking)),
                NoOwnerWorking,
            ),
            (
                facts(None, Some(Unassignable::AllAtCapacity)),
                AllOwnersAtCapacity,
            ),
            (
                facts(None, Some(Unassignable::AllUnavailable)),
                OwnerUnavailable,
            ),
            (facts(None, Some(Unassignable::EveryoneTried)), OwnerLate),
            (facts(None, None), RoutingDelay),
            // reached the owner after a long wait: the wait is the cause
            (
                facts(
                    Some(("lena", "2026-03-25T09:40:00Z")),
                    Some(Unassignable::AllAtCapacity),
                ),
                AllOwnersAtCapacity,
            ),
            (
                facts(Some(("lena", "2026-03-25T09:02:01Z")), None),
                RoutingDelay,
            ),
            // a short wait is normal: the owner had the time
            (
                facts(
                    Some(("lena", "2026-03-25T09:02:00Z")),
                    Some(Unassignable::AllAtCapacity),
                ),
                OwnerLate,
            ),
            (
                facts(Some(("lena", "2026-03-25T09:00:01Z")), None),
                OwnerLate,
            ),
            // the owner went out of office after assignment
            (
                with_state(facts(Some(("lena", "2026-03-25T09:00:01Z")), None), away),
                OwnerUnavailable,
            ),
            // ... and came back before the deadline: late
            (
                with_state(facts(Some(("lena", "2026-03-25T09:00:01Z")), None), back),
                OwnerLate,
            ),
            // the owner's day ended before the deadline
            (late_evening, NoOwnerWorking),
        ];
        for (facts, want) in cases {
            assert_eq!(breach_cause(&facts, &pb), want, "{facts:?}");
        }
    }

    #[test]
    fn escalation_reassigns_up_to_the_limit_then_the_manager_owns() {
        let cases = [
            (0, 0, Escalation::ManagerOwns),
            (0, 2, Escalation::Reassign),
            (1, 2, Escalation::Reassign),
            (2, 2, Escalation::ManagerOwns),
            (7, 2, Escalation::ManagerOwns),
        ];
        for (so_far, limit, want) in cases {
            assert_eq!(on_breach(so_far, limit), want, "{so_far}/{limit}");
        }
    }

    #[test]
    fn breach_escalation_reassignment_chain() {
        // The NA team (maya weight 2, diego, grace) on Wednesday 2026-03-25 16:00Z, when all
        // three are working; the playbook allows two reassignments.
        let pb = playbook();
        let limit = pb.escalation().max_reassignments();
        assert_eq!(limit, 2);
        let now = ts("2026-03-25T16:00:00Z");
        let states = BTreeMap::new();
        let team = "na".into();
        let mut tried: Vec<OwnerId> = Vec::new();
        let mut rr = RoundRobin::default();
        let mut holders = Vec::new();
        let mut reassignments = 0;
        let manager = loop {
            let ctx = PickContext {
                now,
                states: &states,
                tried: &tried,
            };
            let pick = pick_owner(&pb, &team, &ctx, &rr).unwrap();
            rr = pick.round_robin;
            holders.push(pick.owner.clone());
            tried.push(pick.owner.clone());
            // The owner lets the window pass: a breach, escalated to their manager.
            let manager = escalation_manager(&pb, Some(&pick.owner), &team).unwrap();
            assert_eq!(manager.as_str(), "dana");
            match on_breach(reassignments, limit) {
                Escalation::Reassign => reassignments += 1,
                Escalation::ManagerOwns => break manager.clone(),
            }
        };
        assert_eq!(holders, ["maya", "diego", "grace"].map(OwnerId::from));
        assert_eq!(manager.as_str(), "dana");
        // with everyone tried, the team has nobody left either
        let ctx = PickContext {
            now,
            states: &states,
            tried: &tried,
        };
        assert_eq!(
            pick_owner(&pb, &team, &ctx, &rr),
            Err(Unassignable::EveryoneTried)
        );
    }

    #[test]
    fn managers_come_from_the_owner_then_the_team() {
        let pb = playbook();
        let cases = [
            (Some("lena"), "dach", Some("katrin")),
            // Sophie reports to the enterprise manager although she works in DACH
            (Some("sophie"), "dach", Some("marcus")),
            (None, "uki", Some("james")),
            (Some("nobody"), "na", Some("dana")),
            (None, "nope", None),
        ];
        for (owner, team, want) in cases {
            let owner = owner.map(OwnerId::from);
            let got = escalation_manager(&pb, owner.as_ref(), &team.into());
            assert_eq!(got.map(OwnerId::as_str), want, "{owner:?} {team}");
        }
    }
}
