//! No over-pushing: the frequency cap on a contact and the attempt cap per channel.
//!
//! The frequency cap counts every touch of the contact, on every channel and in every one of
//! its enrolments (the service passes them in, since one enrolment cannot see the others): at
//! most `touches` in any rolling `window`. A step that would break it is deferred to the
//! earliest instant it no longer would, never dropped. The attempt cap counts this
//! enrolment's attempts on one channel of the cadence (six calls by default); a step that would
//! break it moves to another channel.

use jiff::{SignedDuration, Timestamp};

/// The earliest instant at or after `now` when one more touch keeps at most `touches` touches
/// in every rolling `window` (a window is the half-open interval `(t − window, t]`). `now`
/// itself when the contact is under the cap.
pub fn earliest_allowed(
    recent: &[Timestamp],
    touches: u32,
    window: SignedDuration,
    now: Timestamp,
) -> Timestamp {
    if touches == 0 {
        // Not reachable from a validated playbook (the cap is at least 1); never touching
        // would be a silent drop, so treat it as no cap.
        return now;
    }
    let start = now.checked_sub(window).unwrap_or(Timestamp::MIN);
    let mut inside: Vec<Timestamp> = recent.iter().copied().filter(|t| *t > start).collect();
    inside.sort();
    let cap = touches as usize;
    if inside.len() < cap {
        return now;
    }
    // The new touch may go when all but `touches - 1` of these have left the window: when the
    // oldest one that must leave is `window` old.
    let must_leave = inside[inside.len() - cap];
    must_leave
        .checked_add(window)
        .unwrap_or(Timestamp::MAX)
        .max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn under_the_cap_a_touch_goes_now() {
        let now = ts("2026-03-10T10:00:00Z");
        let week = SignedDuration::from_hours(24 * 7);
        let recent = [ts("2026-03-09T10:00:00Z"), ts("2026-03-02T09:00:00Z")];
        assert_eq!(earliest_allowed(&recent, 2, week, now), now);
        assert_eq!(earliest_allowed(&[], 1, week, now), now);
    }

    #[test]
    fn at_the_cap_a_touch_waits_for_the_oldest_to_leave_the_window() {
        let now = ts("2026-03-10T10:00:00Z");
        let week = SignedDuration::from_hours(24 * 7);
        let recent = [
            ts("2026-03-09T10:00:00Z"),
            ts("2026-03-04T08:00:00Z"),
            ts("2026-03-06T12:00:00Z"),
            ts("2026-03-01T00:00:00Z"), // outside the window already
        ];
        // three inside, cap three: the 03-04 touch must leave first
        assert_eq!(
            earliest_allowed(&recent, 3, week, now),
            ts("2026-03-11T08:00:00Z")
        );
        // cap two: 03-04 and 03-06 must both leave
        assert_eq!(
            earliest_allowed(&recent, 2, week, now),
            ts("2026-03-13T12:00:00Z")
        );
        // cap one: everything inside must leave
        assert_eq!(
            earliest_allowed(&recent, 1, week, now),
            ts("2026-03-16T10:00:00Z")
        );
    }
}
