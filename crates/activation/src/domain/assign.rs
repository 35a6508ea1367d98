//! Assignment: which owner of a team takes a lead now, or why nobody can.
//!
//! An owner is eligible when they are in their working hours (their own time zone), not out
//! of office, and hold fewer open un-activated leads than their capacity. Among the eligible,
//! smooth weighted round-robin (as nginx balances upstreams) picks: each pick adds every
//! eligible owner's weight to their running value, takes the highest (ties to the smallest
//! owner id, so the result is deterministic) and subtracts the total weight from the winner.
//! Every cycle of as many picks as the total weight gives each owner exactly their weight,
//! and within a cycle picks are interleaved rather than bunched (weights 5, 1, 1 give
//! `a a b a c a a`, not `a a a a a b c`). The running values are a [`RoundRobin`] the caller
//! keeps (the store persists one per team) and passes in; a pick returns the next value.
//!
//! When nobody is eligible the lead waits in the team queue with an [`Unassignable`] cause.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::routing::Route;
use super::{OwnerId, TeamId};
use crate::playbook::{ActivationPlaybook, Owner};

/// What the service knows about an owner at run time (the playbook knows the rest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerState {
    /// Out of office until this instant; `None` when present.
    pub unavailable_until: Option<Timestamp>,
    /// Leads assigned to the owner and not activated yet.
    pub open_unactivated: u32,
}

impl OwnerState {
    /// Whether the owner is present (not out of office) at `now`.
    pub fn is_available(&self, now: Timestamp) -> bool {
        self.unavailable_until.is_none_or(|until| until <= now)
    }
}

/// Whether `owner` is inside their working hours at `now`, in their own time zone.
pub fn is_working(owner: &Owner, now: Timestamp) -> bool {
    owner.calendar().is_working(now)
}

/// Why no owner of a team could take a lead. The causes are checked in this order, and the
/// first that leaves nobody is the cause: outside working hours nobody could take the lead
/// whatever their absence or load, so hours are the most basic reason; among those working,
/// absence comes before load because a full owner is at least there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Unassignable {
    /// Every owner already had this lead and let its SLA pass; escalation should hand it to
    /// the manager rather than go round again.
    #[error("every owner of the team already had this lead")]
    EveryoneTried,
    /// Nobody in the team is inside their working hours (or the team has no owners).
    #[error("no owner of the team is working now")]
    NoOwnerWorking,
    /// Everybody working is out of office.
    #[error("every owner working now is out of office")]
    AllUnavailable,
    /// Everybody working and present already holds as many open leads as their capacity.
    #[error("every owner working now is at capacity")]
    AllAtCapacity,
}

/// The run-time facts a pick depends on.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    pub now: Timestamp,
    /// Each owner's runtime state; an owner not in the map is present with no open leads.
    pub states: &'a BTreeMap<OwnerId, OwnerState>,
    /// Owners who already had this lead (on reassignment after a breach); they are skipped.
    pub tried: &'a [OwnerId],
}

impl PickContext<'_> {
    fn state(&self, owner: &OwnerId) -> OwnerState {
        self.states.get(owner).copied().unwrap_or_default()
    }
}

/// Each owner's running value in the smooth weighted round-robin of one team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoundRobin {
    current: BTreeMap<OwnerId, i64>,
}

impl RoundRobin {
    /// An owner's running value (0 before their first turn).
    pub fn current(&self, owner: &OwnerId) -> i64 {
        self.current.get(owner).copied().unwrap_or(0)
    }
}

/// The owner picked and the round-robin state to keep for the next pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub owner: OwnerId,
    pub round_robin: RoundRobin,
}

/// Assigns a routed lead: to its account owner when they are eligible (without moving the
/// rotation, since account work is not a turn), otherwise by round-robin in the route's
/// team, so the team covers for an account owner who is away, off or full.
pub fn assign(
    playbook: &ActivationPlaybook,
    route: &Route,
    ctx: &PickContext<'_>,
    round_robin: &RoundRobin,
) -> Result<Pick, Unassignable> {
    let account_owner = route
        .owner
        .as_ref()
        .and_then(|id| playbook.owner(id))
        .filter(|owner| !ctx.tried.contains(owner.id()) && blocker(owner, ctx).is_none());
    if let Some(owner) = account_owner {
        return Ok(Pick {
            owner: owner.id().clone(),
            round_robin: round_robin.clone(),
        });
    }
    pick_owner(playbook, &route.team, ctx, round_robin)
}

/// Picks an owner of `team` by smooth weighted round-robin among the eligible, or says why
/// nobody is eligible.
pub fn pick_owner(
    playbook: &ActivationPlaybook,
    team: &TeamId,
    ctx: &PickContext<'_>,
    round_robin: &RoundRobin,
) -> Result<Pick, Unassignable> {
    let members: Vec<&Owner> = playbook.team_owners(team).collect();
    let untried: Vec<&Owner> = members
        .iter()
        .copied()
        .filter(|o| !ctx.tried.contains(o.id()))
        .collect();
    if untried.is_empty() && !members.is_empty() {
        return Err(Unassignable::EveryoneTried);
    }
    // The cause is the furthest any owner got through the checks (see `Unassignable`).
    let mut cause = Unassignable::NoOwnerWorking;
    let mut eligible = Vec::new();
    for owner in untried {
        match blocker(owner, ctx) {
            None => eligible.push(owner),
            Some(blocked) => cause = furthest(cause, blocked),
        }
    }
    smooth_weighted(round_robin, &eligible).ok_or(cause)
}

/// The first check `owner` fails, if any.
fn blocker(owner: &Owner, ctx: &PickContext<'_>) -> Option<Unassignable> {
    let state = ctx.state(owner.id());
    if !is_working(owner, ctx.now) {
        Some(Unassignable::NoOwnerWorking)
    } else if !state.is_available(ctx.now) {
        Some(Unassignable::AllUnavailable)
    } else if state.open_unactivated >= owner.capacity() {
        Some(Unassignable::AllAtCapacity)
    } else {
        None
    }
}

fn furthest(a: Unassignable, b: Unassignable) -> Unassignable {
    let stage = |c| match c {
        Unassignable::EveryoneTried | Unassignable::NoOwnerWorking => 0,
        Unassignable::AllUnavailable => 1,
        Unassignable::AllAtCapacity => 2,
    };
    if stage(b) > stage(a) { b } else { a }
}

/// One nginx-style smooth weighted round-robin step over `eligible`; `None` when it is empty.
fn smooth_weighted(round_robin: &RoundRobin, eligible: &[&Owner]) -> Option<Pick> {
    let mut next = round_robin.clone();
    let mut total: i64 = 0;
    let mut best: Option<(&OwnerId, i64)> = None;
    for owner in eligible {
        let weight = i64::from(owner.weight());
        total = total.saturating_add(weight);
        let value = next.current(owner.id()).saturating_add(weight);
        next.current.insert(owner.id().clone(), value);
        let better = match best {
            None => true,
            Some((best_id, best_value)) => {
                value > best_value || (value == best_value && owner.id() < best_id)
            }
        };
        if better {
            best = Some((owner.id(), value));
        }
    }
    let (winner, value) = best?;
    next.current
        .insert(winner.clone(), value.saturating_sub(total));
    Some(Pick {
        owner: winner.clone(),
        round_robin: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing::RouteReason;
    use crate::playbook::tests::{parse_ok, sample};

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A playbook with one team and the given `(id, timezone, hours, capacity, weight)`.
    fn team(owners: &[(&str, &str, &str, u32, u32)]) -> ActivationPlaybook {
        let mut text = String::from(
            "[activation]\ndefault_team = \"t\"\n\
             [[activation.teams]]\nid = \"t\"\nname = \"T\"\nmanager = \"boss\"\n\
             timezone = \"UTC\"\nhours = \"mon-sun 00:00-24:00\"\n\
             [[activation.teams]]\nid = \"mgmt\"\nname = \"M\"\nmanager = \"boss\"\n\
             timezone = \"UTC\"\nhours = \"mon-fri 09:00-17:00\"\n\
             [[activation.owners]]\nid = \"boss\"\nname = \"B\"\nteam = \"mgmt\"\n\
             timezone = \"UTC\"\nhours = \"mon-fri 09:00-17:00\"\ncapacity = 5\n\
             [[activation.sla]]\nname = \"any\"\nwindow = \"1h\"\n\
             [[activation.plans]]\nname = \"any\"\nchannel = \"email\"\ntemplate = \"t\"\n",
        );
        for (id, tz, hours, capacity, weight) in owners {
            text.push_str(&format!(
                "[[activation.owners]]\nid = \"{id}\"\nname = \"{id}\"\nteam = \"t\"\n\
                 timezone = \"{tz}\"\nhours = \"{hours}\"\ncapacity = {capacity}\nweight = {weight}\n"
            ));
        }
        parse_ok(&text)
    }

    const ALWAYS: &str = "mon-sun 00:00-24:00";
    const NOW: &str = "2026-03-25T12:00:00Z";

    fn ctx<'a>(states: &'a BTreeMap<OwnerId, OwnerState>, tried: &'a [OwnerId]) -> PickContext<'a> {
        PickContext {
            now: ts(NOW),
            states,
            tried,
        }
    }

    /// Picks `n` times, counting picks per owner; open leads stay as given.
    fn run(
        pb: &ActivationPlaybook,
        n: usize,
        states: &BTreeMap<OwnerId, OwnerState>,
    ) -> BTreeMap<String, usize> {
        let mut rr = RoundRobin::default();
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let pick = pick_owner(pb, &"t".into(), &ctx(states, &[]), &rr).unwrap();
            *counts.entry(pick.owner.0).or_insert(0) += 1;
            rr = pick.round_robin;
        }
        counts
    }

    #[test]
    fn equal_weights_share_within_one() {
        for n in [3, 4, 7] {
            let ids: Vec<String> = (0..n).map(|i| format!("o{i}")).collect();
            let owners: Vec<_> = ids
                .iter()
                .map(|id| (id.as_str(), "UTC", ALWAYS, 10_000, 1))
                .collect();
            let counts = run(&team(&owners), 1000, &BTreeMap::new());
            let (min, max) = (
                counts.values().min().unwrap(),
                counts.values().max().unwrap(),
            );
            assert_eq!(counts.len(), n);
            assert!(max - min <= 1, "{n} owners: {counts:?}");
        }
    }

    #[test]
    fn equal_weights_take_turns_in_id_order() {
        let pb = team(&[
            ("b", "UTC", ALWAYS, 9, 1),
            ("a", "UTC", ALWAYS, 9, 1),
            ("c", "UTC", ALWAYS, 9, 1),
        ]);
        let mut rr = RoundRobin::default();
        let mut order = Vec::new();
        for _ in 0..6 {
            let pick = pick_owner(&pb, &"t".into(), &ctx(&BTreeMap::new(), &[]), &rr).unwrap();
            order.push(pick.owner.0);
            rr = pick.round_robin;
        }
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn weights_set_the_share() {
        let cases: [(&[u32], &[usize]); 3] = [
            (&[3, 1], &[750, 250]),
            (&[5, 3, 2], &[500, 300, 200]),
            (&[1, 1, 2], &[250, 250, 500]),
        ];
        for (weights, want) in cases {
            let ids: Vec<String> = (0..weights.len()).map(|i| format!("o{i}")).collect();
            let owners: Vec<_> = ids
                .iter()
                .zip(weights)
                .map(|(id, w)| (id.as_str(), "UTC", ALWAYS, 10_000, *w))
                .collect();
            let counts = run(&team(&owners), 1000, &BTreeMap::new());
            for (id, want) in ids.iter().zip(want) {
                let got = counts[id];
                assert!(got.abs_diff(*want) <= 1, "{weights:?}: {counts:?}");
            }
        }
    }

    #[test]
    fn smooth_round_robin_interleaves_heavy_owners() {
        let pb = team(&[
            ("a", "UTC", ALWAYS, 9, 5),
            ("b", "UTC", ALWAYS, 9, 1),
            ("c", "UTC", ALWAYS, 9, 1),
        ]);
        let mut rr = RoundRobin::default();
        let mut order = String::new();
        for _ in 0..7 {
            let pick = pick_owner(&pb, &"t".into(), &ctx(&BTreeMap::new(), &[]), &rr).unwrap();
            order.push_str(pick.owner.as_str());
            rr = pick.round_robin;
        }
        // nginx's documented sequence for weights 5, 1, 1
        assert_eq!(order, "aabacaa");
    }

    #[test]
    fn owners_at_capacity_are_skipped_and_the_rest_share() {
        let pb = team(&[
            ("a", "UTC", ALWAYS, 3, 1),
            ("b", "UTC", ALWAYS, 3, 1),
            ("c", "UTC", ALWAYS, 3, 1),
        ]);
        // Simulate assignment without activation: open counts grow until everyone is full.
        let mut states = BTreeMap::new();
        let mut rr = RoundRobin::default();
        for _ in 0..9 {
            let pick = pick_owner(&pb, &"t".into(), &ctx(&states, &[]), &rr).unwrap();
            states
                .entry(pick.owner.clone())
                .or_insert_with(OwnerState::default)
                .open_unactivated += 1;
            rr = pick.round_robin;
        }
        assert!(
            states.values().all(|s| s.open_unactivated == 3),
            "{states:?}"
        );
        assert_eq!(
            pick_owner(&pb, &"t".into(), &ctx(&states, &[]), &rr),
            Err(Unassignable::AllAtCapacity)
        );
        // one frees up: only they can take the next lead
        states.insert(
            "b".into(),
            OwnerState {
                unavailable_until: None,
                open_unactivated: 2,
            },
        );
        let pick = pick_owner(&pb, &"t".into(), &ctx(&states, &[]), &rr).unwrap();
        assert_eq!(pick.owner.as_str(), "b");
    }

    #[test]
    fn out_of_office_owners_are_skipped_until_they_return() {
        let pb = team(&[("a", "UTC", ALWAYS, 9, 1), ("b", "UTC", ALWAYS, 9, 1)]);
        let away = |until: &str| OwnerState {
            unavailable_until: Some(ts(until)),
            open_unactivated: 0,
        };
        let cases = [
            // away until later today: b takes everything
            (away("2026-03-25T18:00:00Z"), "b"),
            // came back an hour ago: a's turn again
            (away("2026-03-25T11:00:00Z"), "a"),
            // back exactly now
            (away(NOW), "a"),
        ];
        for (state, want) in cases {
            let states = BTreeMap::from([("a".into(), state)]);
            let pick = pick_owner(&pb, &"t".into(), &ctx(&states, &[]), &RoundRobin::default());
            assert_eq!(pick.unwrap().owner.as_str(), want, "{state:?}");
        }
    }

    #[test]
    fn the_cause_when_nobody_is_eligible() {
        use Unassignable::*;
        // a works 09-17 UTC on weekdays, b always
        let pb = team(&[
            ("a", "UTC", "mon-fri 09:00-17:00", 2, 1),
            ("b", "UTC", ALWAYS, 2, 1),
        ]);
        let away = OwnerState {
            unavailable_until: Some(ts("2026-04-01T00:00:00Z")),
            open_unactivated: 0,
        };
        let full = OwnerState {
            unavailable_until: None,
            open_unactivated: 2,
        };
        let away_and_full = OwnerState {
            unavailable_until: away.unavailable_until,
            open_unactivated: 2,
        };
        let night = "2026-03-25T22:00:00Z";
        let cases = [
            // at night only b works; b away -> unavailable
            (night, vec![("b", away)], AllUnavailable),
            (night, vec![("b", full)], AllAtCapacity),
            // a absent but working, b full: someone is there, so capacity is the cause
            (NOW, vec![("a", away), ("b", full)], AllAtCapacity),
            (NOW, vec![("a", away), ("b", away_and_full)], AllUnavailable),
            (NOW, vec![("a", full), ("b", full)], AllAtCapacity),
        ];
        for (now, states, want) in cases {
            let states: BTreeMap<OwnerId, OwnerState> =
                states.into_iter().map(|(id, s)| (id.into(), s)).collect();
            let ctx = PickContext {
                now: ts(now),
                states: &states,
                tried: &[],
            };
            assert_eq!(
                pick_owner(&pb, &"t".into(), &ctx, &RoundRobin::default()),
                Err(want),
                "{now} {states:?}"
            );
        }
        // nobody in hours, and a team without owners
        let office = team(&[("a", "UTC", "mon-fri 09:00-17:00", 2, 1)]);
        let ctx = PickContext {
            now: ts(night),
            states: &BTreeMap::new(),
            tried: &[],
        };
        assert_eq!(
            pick_owner(&office, &"t".into(), &ctx, &RoundRobin::default()),
            Err(NoOwnerWorking)
        );
        assert_eq!(
            pick_owner(&office, &"nope".into(), &ctx, &RoundRobin::default()),
            Err(NoOwnerWorking)
        );
        // everyone already tried
        let tried = ["a".into()];
        let ctx = PickContext {
            now: ts(NOW),
            states: &BTreeMap::new(),
            tried: &tried,
        };
        assert_eq!(
            pick_owner(&office, &"t".into(), &ctx, &RoundRobin::default()),
            Err(EveryoneTried)
        );
    }

    #[test]
    fn working_hours_follow_each_owners_time_zone_across_dst() {
        let pb = team(&[
            ("berlin", "Europe/Berlin", "mon-fri 09:00-17:00", 99, 1),
            ("new-york", "America/New_York", "mon-fri 09:00-17:00", 99, 1),
        ]);
        let cases = [
            // Friday 2026-03-27 08:30Z: 09:30 in Berlin (CET), 04:30 in New York (EDT)
            ("2026-03-27T08:30:00Z", Some("berlin")),
            // Monday 2026-03-30 07:30Z: 09:30 in Berlin, now CEST after 2026-03-29
            ("2026-03-30T07:30:00Z", Some("berlin")),
            // the same UTC time the Monday before was 08:30 CET: nobody
            ("2026-03-23T07:30:00Z", None),
            // Monday 2026-03-09 13:30Z: 09:30 EDT (New York changed on 2026-03-08), 14:30 CET
            ("2026-03-09T13:30:00Z", Some("berlin,new-york")),
            // Friday 2026-03-06 13:30Z was 08:30 EST: only Berlin
            ("2026-03-06T13:30:00Z", Some("berlin")),
            // 2026-03-09 16:30Z: 17:30 CET, 12:30 EDT: only New York
            ("2026-03-09T16:30:00Z", Some("new-york")),
            // Monday 2026-10-26 07:30Z: 08:30 CET after the autumn change: nobody in Berlin
            ("2026-10-26T07:30:00Z", None),
            ("2026-10-26T08:00:00Z", Some("berlin")),
        ];
        for (now, want) in cases {
            let team: TeamId = "t".into();
            let working: Vec<&str> = pb
                .team_owners(&team)
                .filter(|o| is_working(o, ts(now)))
                .map(|o| o.id().as_str())
                .collect();
            let want: Vec<&str> = want.map(|w| w.split(',').collect()).unwrap_or_default();
            assert_eq!(working, want, "{now}");
            let ctx = PickContext {
                now: ts(now),
                states: &BTreeMap::new(),
                tried: &[],
            };
            let picked = pick_owner(&pb, &"t".into(), &ctx, &RoundRobin::default());
            match want.first() {
                Some(first) => assert_eq!(picked.unwrap().owner.as_str(), *first, "{now}"),
                None => assert_eq!(picked, Err(Unassignable::NoOwnerWorking), "{now}"),
            }
        }
    }

    #[test]
    fn reassignment_skips_owners_already_tried() {
        let pb = team(&[
            ("a", "UTC", ALWAYS, 9, 1),
            ("b", "UTC", ALWAYS, 9, 1),
            ("c", "UTC", ALWAYS, 9, 1),
        ]);
        let tried = ["a".into(), "b".into()];
        let states = BTreeMap::new();
        for _ in 0..3 {
            let pick = pick_owner(
                &pb,
                &"t".into(),
                &ctx(&states, &tried),
                &RoundRobin::default(),
            )
            .unwrap();
            assert_eq!(pick.owner.as_str(), "c");
        }
    }

    #[test]
    fn account_owners_take_their_leads_unless_they_cannot() {
        let pb = sample();
        let route = Route {
            team: "enterprise".into(),
            owner: Some("henrik".into()),
            reason: RouteReason::Account {
                domain: "siemens.com".into(),
            },
        };
        // Wednesday 2026-03-25 10:00 CET: Henrik (Berlin) and Rachel (New York, 06:00) -> Henrik
        let now = ts("2026-03-25T09:00:00Z");
        let rr = RoundRobin::default();
        let none = BTreeMap::new();
        let ctx = PickContext {
            now,
            states: &none,
            tried: &[],
        };
        let pick = assign(&pb, &route, &ctx, &rr).unwrap();
        assert_eq!(pick.owner.as_str(), "henrik");
        assert_eq!(pick.round_robin, rr, "account work does not take a turn");

        // Henrik out of office: his team covers (whoever is working)
        let away = BTreeMap::from([(
            "henrik".into(),
            OwnerState {
                unavailable_until: Some(ts("2026-03-26T00:00:00Z")),
                open_unactivated: 0,
            },
        )]);
        let ctx = PickContext {
            now: ts("2026-03-25T15:00:00Z"),
            states: &away,
            tried: &[],
        };
        assert_eq!(
            assign(&pb, &route, &ctx, &rr).unwrap().owner.as_str(),
            "rachel"
        );

        // already tried: also covered by the team
        let tried = ["henrik".into()];
        let ctx = PickContext {
            now: ts("2026-03-25T15:00:00Z"),
            states: &none,
            tried: &tried,
        };
        assert_eq!(
            assign(&pb, &route, &ctx, &rr).unwrap().owner.as_str(),
            "rachel"
        );
    }

    #[test]
    fn an_empty_eligible_list_picks_nobody() {
        assert_eq!(smooth_weighted(&RoundRobin::default(), &[]), None);
    }
}
