//! SLA timers: which policy tier a lead falls under and when its first action is due.
//!
//! A window is counted either in wall-clock time ("5m" means five minutes from arrival,
//! whatever the hour) or in the team's business hours, where time outside the team's working
//! hours stands still and a day (`d`) means one of the team's working days (see
//! [`Calendar::working_day`]). The clock starts when the lead arrives, not when it is
//! assigned: time a lead spends waiting for an owner is the system's delay and counts.

use std::sync::LazyLock;

use jiff::{SignedDuration, Timestamp};

use super::LeadFacts;
use super::hours::Calendar;
use crate::playbook::{ActivationPlaybook, SlaPolicy};

/// The longest window the playbook accepts: beyond a year an SLA means nothing, and the
/// bound keeps timestamp arithmetic far from overflowing.
const MAX_WINDOW_DAYS: i64 = 365;

/// An SLA window as the playbook writes it, e.g. `"5m"`, `"1h30m"`, `"1d"`. Days are kept
/// apart from the rest because a business day is not 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    days: i64,
    rest: SignedDuration,
}

impl Window {
    /// A window of whole days plus a duration; for tests and built-in defaults.
    pub fn new(days: i64, rest: SignedDuration) -> Self {
        Self { days, rest }
    }

    /// Parses `<number><unit>` parts (units `s`, `m`, `h`, `d`), optionally separated by
    /// spaces. The total must be longer than zero and at most 365 days.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a duration; write it like \"5m\", \"1h30m\" or \"1d\" \
                 (units s, m, h, d)"
            )
        };
        let mut window = Self::new(0, SignedDuration::ZERO);
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (number, tail) = rest.split_at(digits);
            let n: i64 = number.parse().map_err(|_| bad())?;
            let unit = tail.chars().next().ok_or_else(bad)?;
            let part = match unit {
                'd' => {
                    window.days = window.days.checked_add(n).ok_or_else(bad)?;
                    SignedDuration::ZERO
                }
                'h' => SignedDuration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
                'm' => SignedDuration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                's' => SignedDuration::from_secs(n),
                _ => return Err(bad()),
            };
            window.rest = window.rest.checked_add(part).ok_or_else(bad)?;
            rest = tail[unit.len_utf8()..].trim_start();
        }
        let total = window
            .rest
            .as_secs()
            .saturating_add(window.days.saturating_mul(86_400));
        if total <= 0 {
            return Err(format!("{text:?} must be longer than zero"));
        }
        if total > MAX_WINDOW_DAYS * 86_400 {
            return Err(format!("{text:?} is longer than {MAX_WINDOW_DAYS}d"));
        }
        Ok(window)
    }

    /// The window as elapsed time, a day being 24 hours.
    pub fn wall_clock(self) -> SignedDuration {
        SignedDuration::from_hours(self.days.saturating_mul(24)).saturating_add(self.rest)
    }

    /// The window as working time in `calendar`, a day being one working day.
    pub fn working_time(self, calendar: Calendar<'_>) -> SignedDuration {
        let day = calendar.working_day();
        let days = i32::try_from(self.days).unwrap_or(i32::MAX);
        day.checked_mul(days)
            .unwrap_or(SignedDuration::MAX)
            .saturating_add(self.rest)
    }
}

/// The tier a lead falls under: the first whose conditions all hold. A validated playbook
/// ends with a tier without conditions, so one always matches; for one that does not, the
/// last tier (or a built-in one-hour tier) applies rather than no timer at all.
pub fn sla_policy<'a>(lead: &LeadFacts, playbook: &'a ActivationPlaybook) -> &'a SlaPolicy {
    static BUILT_IN: LazyLock<SlaPolicy> = LazyLock::new(SlaPolicy::built_in);
    let tiers = playbook.sla_policies();
    tiers
        .iter()
        .find(|tier| tier.matches(lead))
        .or(tiers.last())
        .unwrap_or(&BUILT_IN)
}

impl SlaPolicy {
    /// Whether a lead falls under this tier; an absent condition holds for every lead.
    pub fn matches(&self, lead: &LeadFacts) -> bool {
        (self.intents().is_empty() || self.intents().contains(&lead.intent))
            && (self.strengths().is_empty() || self.strengths().contains(&lead.strength))
            && (self.icp_tiers().is_empty() || self.icp_tiers().contains(&lead.icp_tier))
    }
}

/// When the first action is due for a lead whose clock started at `start`, under `policy`,
/// counting business hours in `calendar` (the team's) when the policy says so.
pub fn deadline(start: Timestamp, policy: &SlaPolicy, calendar: Calendar<'_>) -> Timestamp {
    let window = policy.window();
    if policy.business_hours() {
        calendar.add_working_time(start, window.working_time(calendar))
    } else {
        start
            .checked_add(window.wall_clock())
            .unwrap_or(Timestamp::MAX)
    }
}

/// Time left until `deadline`: negative once the lead is overdue.
pub fn remaining(deadline: Timestamp, now: Timestamp) -> SignedDuration {
    deadline.duration_since(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hours::WeeklyHours;
    use crate::domain::{IcpTier, IntentKind, IntentStrength};
    use jiff::tz::TimeZone;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn windows_parse_into_days_and_time() {
        let h = SignedDuration::from_hours;
        let m = SignedDuration::from_mins;
        let cases = [
            ("5m", Window::new(0, m(5))),
            ("1h", Window::new(0, h(1))),
            ("1h30m", Window::new(0, m(90))),
            (" 1h 30m ", Window::new(0, m(90))),
            ("1d", Window::new(1, SignedDuration::ZERO)),
            ("2d4h", Window::new(2, h(4))),
            ("90s", Window::new(0, SignedDuration::from_secs(90))),
            ("365d", Window::new(365, SignedDuration::ZERO)),
        ];
        for (text, want) in cases {
            assert_eq!(Window::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn windows_that_are_not_positive_or_not_durations_are_rejected() {
        let cases = [
            ("", "is not a duration"),
            ("5", "is not a duration"),
            ("m", "is not a duration"),
            ("5 minutes", "is not a duration"),
            ("-5m", "is not a duration"),
            ("5w", "is not a duration"),
            ("1.5h", "is not a duration"),
            ("0m", "longer than zero"),
            ("0d0h", "longer than zero"),
            ("366d", "longer than 365d"),
            ("99999999999999999999m", "is not a duration"),
            ("9223372036854775807d", "longer than 365d"),
        ];
        for (text, needle) in cases {
            let err = Window::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    fn playbook() -> ActivationPlaybook {
        crate::playbook::tests::sample()
    }

    fn lead(intent: IntentKind, strength: IntentStrength, tier: IcpTier) -> LeadFacts {
        LeadFacts {
            intent,
            strength,
            icp_tier: tier,
            ..LeadFacts::default()
        }
    }

    #[test]
    fn the_first_matching_tier_wins() {
        use IcpTier::*;
        use IntentKind::*;
        use IntentStrength as S;
        let pb = playbook();
        let cases = [
            (lead(DemoRequest, S::High, A), "hot"),
            (lead(ContactSales, S::Unspecified, B), "hot"),
            (lead(DemoRequest, S::High, Outside), "warm"),
            (lead(PricingPage, S::Medium, C), "warm"),
            (lead(TrialSignup, S::Low, A), "warm"),
            (lead(ContentDownload, S::High, A), "engaged"),
            (lead(EventBadgeScan, S::High, Outside), "engaged"),
            (lead(ContentDownload, S::Medium, A), "cool"),
            (lead(Webinar, S::Low, Outside), "cool"),
            (lead(Unspecified, S::Unspecified, Outside), "cool"),
        ];
        for (lead, want) in cases {
            assert_eq!(sla_policy(&lead, &pb).name(), want, "{lead:?}");
        }
    }

    #[test]
    fn deadlines_in_wall_clock_and_business_hours() {
        let pb = playbook();
        let dach = pb.team(&"dach".into()).unwrap().calendar();
        let hot = pb
            .sla_policies()
            .iter()
            .find(|p| p.name() == "hot")
            .unwrap();
        let warm = pb
            .sla_policies()
            .iter()
            .find(|p| p.name() == "warm")
            .unwrap();
        let cool = pb
            .sla_policies()
            .iter()
            .find(|p| p.name() == "cool")
            .unwrap();
        let cases = [
            // wall clock: five minutes, even on a Saturday night
            (hot, "2026-03-28T22:00:00Z", "2026-03-28T22:05:00Z"),
            // wall clock across the spring change: still 5 elapsed minutes
            (hot, "2026-03-29T00:58:00Z", "2026-03-29T01:03:00Z"),
            // business hour from Friday 17:00 CET -> Monday 09:30 CEST
            (warm, "2026-03-27T16:00:00Z", "2026-03-30T07:30:00Z"),
            // business hour inside a day
            (warm, "2026-03-25T10:00:00Z", "2026-03-25T11:00:00Z"),
            // one business day (8.5h) from Tuesday 11:00 -> Wednesday 11:00
            (cool, "2026-03-24T10:00:00Z", "2026-03-25T10:00:00Z"),
            // one business day from Saturday -> end of Monday
            (cool, "2026-03-28T10:00:00Z", "2026-03-30T15:30:00Z"),
            // one business day from Friday 12:00 CEST, across the autumn change
            (cool, "2026-10-23T10:00:00Z", "2026-10-26T11:00:00Z"),
        ];
        for (policy, start, want) in cases {
            assert_eq!(
                deadline(ts(start), policy, dach),
                ts(want),
                "{} from {start}",
                policy.name()
            );
        }
    }

    #[test]
    fn business_hours_use_the_teams_time_zone() {
        let pb = playbook();
        let warm = pb
            .sla_policies()
            .iter()
            .find(|p| p.name() == "warm")
            .unwrap();
        let na = pb.team(&"na".into()).unwrap().calendar();
        // Friday 17:00 in New York (EST, before 2026-03-08) + 1h -> Monday 09:30 EDT.
        assert_eq!(
            deadline(ts("2026-03-06T22:00:00Z"), warm, na),
            ts("2026-03-09T13:30:00Z")
        );
    }

    #[test]
    fn a_calendar_without_hours_counts_wall_clock_time() {
        let pb = playbook();
        let cool = pb
            .sla_policies()
            .iter()
            .find(|p| p.name() == "cool")
            .unwrap();
        let utc = TimeZone::UTC;
        let never_hours = WeeklyHours::NEVER;
        let never = Calendar::new(&utc, &never_hours);
        assert_eq!(
            deadline(ts("2026-03-27T16:00:00Z"), cool, never),
            ts("2026-03-28T16:00:00Z")
        );
    }

    #[test]
    fn remaining_is_negative_when_overdue() {
        let due = ts("2026-03-27T16:05:00Z");
        let cases = [
            ("2026-03-27T16:00:00Z", 300),
            ("2026-03-27T16:05:00Z", 0),
            ("2026-03-27T16:06:30Z", -90),
        ];
        for (now, secs) in cases {
            assert_eq!(
                remaining(due, ts(now)),
                SignedDuration::from_secs(secs),
                "{now}"
            );
        }
    }
}
