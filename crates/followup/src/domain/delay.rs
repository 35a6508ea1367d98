//! Delays: how long after the previous step (or enrolment) a step is due.
//!
//! A delay is wall-clock time (`"30m"`, `"2h"`, `"3d"`, `"2 days"`) or business time
//! (`"4 business hours"`, `"1 business day"`), counted in a calendar: the business hours in
//! the lead's or the owner's time zone. Business time outside the hours stands still, so a
//! step four business hours after a Friday-afternoon call in Berlin is due Monday morning in
//! Berlin, and a business day is one average working day of the calendar (a step one
//! business day after 15:00 is due at 15:00 the next working day). Counting starts at the
//! next opening when the start is outside the hours.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use runtime::hours::Calendar;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest delay accepted: beyond a year a step means nothing, and the bound keeps
/// timestamp arithmetic far from overflowing.
const MAX_DAYS: i64 = 365;
/// A year of business days.
const MAX_BUSINESS_DAYS: i64 = 261;
/// A year of business hours, at a generous 12 hours a day.
const MAX_BUSINESS_HOURS: i64 = MAX_BUSINESS_DAYS * 12;

/// A delay as the playbook writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// Elapsed time, whatever the hour.
    WallClock(SignedDuration),
    /// Hours of the calendar's working time.
    BusinessHours(u32),
    /// Average working days of the calendar.
    BusinessDays(u32),
}

impl Delay {
    /// Parses `"<n> business day(s)"`, `"<n> business hour(s)"`,
    /// `"<n> minute(s)|hour(s)|day(s)|week(s)"` or compact wall-clock parts with units `s`,
    /// `m`, `h`, `d`, `w` (`"30m"`, `"1h30m"`, `"2d"`). Zero (`"0m"`) is a valid delay; the
    /// playbook decides where it is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "delay {text:?} is not a delay; write it like \"30m\", \"2h\", \"3d\", \
                 \"4 business hours\" or \"1 business day\""
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let number = |word: &str| -> Result<i64, String> {
            if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            word.parse().map_err(|_| bad())
        };
        let too_long = || format!("delay {text:?} is longer than a year");
        let delay = match words.as_slice() {
            [] => return Err(bad()),
            [n, "business", unit] => {
                let n = number(n)?;
                match *unit {
                    "day" | "days" if n <= MAX_BUSINESS_DAYS => Self::BusinessDays(n as u32),
                    "hour" | "hours" if n <= MAX_BUSINESS_HOURS => Self::BusinessHours(n as u32),
                    "day" | "days" | "hour" | "hours" => return Err(too_long()),
                    _ => return Err(bad()),
                }
            }
            [n, unit] if unit.starts_with(|c: char| c.is_ascii_alphabetic()) && unit.len() > 1 => {
                let n = number(n)?;
                let secs = match *unit {
                    "minute" | "minutes" | "min" | "mins" => 60,
                    "hour" | "hours" => 3600,
                    "day" | "days" => 86_400,
                    "week" | "weeks" => 7 * 86_400,
                    _ => return Err(bad()),
                };
                Self::WallClock(SignedDuration::from_secs(
                    n.checked_mul(secs).ok_or_else(too_long)?,
                ))
            }
            _ => Self::WallClock(compact(&words.concat()).ok_or_else(bad)?),
        };
        if let Self::WallClock(d) = delay
            && d.as_secs() > MAX_DAYS * 86_400
        {
            return Err(too_long());
        }
        Ok(delay)
    }

    /// Whether the delay is nothing at all: the step is due at once.
    pub fn is_zero(self) -> bool {
        match self {
            Self::WallClock(d) => d.is_zero(),
            Self::BusinessHours(n) | Self::BusinessDays(n) => n == 0,
        }
    }

    /// Whether the delay is counted in the calendar's working time.
    pub fn is_business(self) -> bool {
        !matches!(self, Self::WallClock(_))
    }

    /// The delay as elapsed time, when it is wall-clock time.
    pub fn wall_clock(self) -> Option<SignedDuration> {
        match self {
            Self::WallClock(d) => Some(d),
            _ => None,
        }
    }

    /// The instant the delay has passed since `start`, business time counted in `calendar`.
    pub fn after(self, start: Timestamp, calendar: Calendar<'_>) -> Timestamp {
        match self {
            Self::WallClock(d) => start.checked_add(d).unwrap_or(Timestamp::MAX),
            Self::BusinessHours(n) => {
                calendar.add_working_time(start, SignedDuration::from_hours(i64::from(n)))
            }
            Self::BusinessDays(n) => {
                let days = i32::try_from(n).unwrap_or(i32::MAX);
                let amount = calendar
                    .working_day()
                    .checked_mul(days)
                    .unwrap_or(SignedDuration::MAX);
                calendar.add_working_time(start, amount)
            }
        }
    }
}

/// `1h30m`: digits and a unit, repeated.
fn compact(mut rest: &str) -> Option<SignedDuration> {
    let mut total = SignedDuration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let n: i64 = number.parse().ok()?;
        let unit = tail.chars().next()?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(SignedDuration::from_secs(n.checked_mul(secs)?))?;
        rest = &tail[unit.len_utf8()..];
    }
    Some(total)
}

/// The first instant at or after `at` inside the calendar's working hours; `at` itself when
/// the calendar has no hours (then every instant counts).
pub fn next_working(calendar: Calendar<'_>, at: Timestamp) -> Timestamp {
    if calendar.hours.is_never() || calendar.is_working(at) {
        return at;
    }
    // One second of working time from outside the hours ends one second after the opening.
    let second = SignedDuration::from_secs(1);
    let after = calendar.add_working_time(at, second);
    after.checked_sub(second).unwrap_or(after)
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u32| if n == 1 { "" } else { "s" };
        match *self {
            Self::BusinessDays(n) => write!(f, "{n} business day{}", plural(n)),
            Self::BusinessHours(n) => write!(f, "{n} business hour{}", plural(n)),
            Self::WallClock(d) => {
                let mut secs = d.as_secs();
                if secs == 0 {
                    return f.write_str("0m");
                }
                for (unit, size) in [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)] {
                    if secs >= size {
                        write!(f, "{}{unit}", secs / size)?;
                        secs %= size;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Stored as the playbook writes it, so an enrolment's JSON reads like the playbook.
impl Serialize for Delay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;
    use runtime::hours::WeeklyHours;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn parses_wall_clock_and_business_delays() {
        let m = |n| Delay::WallClock(SignedDuration::from_mins(n));
        let cases = [
            ("30m", m(30)),
            ("2h", m(120)),
            ("1h30m", m(90)),
            (" 1h 30m ", m(90)),
            ("3d", m(3 * 1440)),
            ("1w", m(7 * 1440)),
            ("90s", Delay::WallClock(SignedDuration::from_secs(90))),
            ("0m", m(0)),
            ("2 days", m(2 * 1440)),
            ("1 day", m(1440)),
            ("45 minutes", m(45)),
            ("3 hours", m(180)),
            ("2 weeks", m(14 * 1440)),
            ("1 business day", Delay::BusinessDays(1)),
            ("3 business days", Delay::BusinessDays(3)),
            ("3 Business Days", Delay::BusinessDays(3)),
            ("4 business hours", Delay::BusinessHours(4)),
            ("1 business hour", Delay::BusinessHours(1)),
            ("365d", m(365 * 1440)),
        ];
        for (text, want) in cases {
            assert_eq!(Delay::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_delay() {
        let cases = [
            ("", "is not a delay"),
            ("soon", "is not a delay"),
            ("5", "is not a delay"),
            ("-5m", "is not a delay"),
            ("1.5h", "is not a delay"),
            ("2 business weeks", "is not a delay"),
            ("two business days", "is not a delay"),
            ("1 business", "is not a delay"),
            ("3 fortnights", "is not a delay"),
            ("5x", "is not a delay"),
            ("366d", "longer than a year"),
            ("400 business days", "longer than a year"),
            ("99999999999999999999m", "is not a delay"),
        ];
        for (text, needle) in cases {
            let err = Delay::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn displays_and_serialises_as_written() {
        for text in [
            "30m",
            "1h30m",
            "3d",
            "1d2h",
            "0m",
            "1 business day",
            "3 business days",
            "4 business hours",
        ] {
            let delay = Delay::parse(text).unwrap();
            assert_eq!(delay.to_string(), text);
            let json = serde_json::to_string(&delay).unwrap();
            assert_eq!(serde_json::from_str::<Delay>(&json).unwrap(), delay);
        }
        assert_eq!(Delay::parse("2 days").unwrap().to_string(), "2d");
    }

    #[test]
    fn business_time_follows_the_calendar_and_wall_clock_does_not() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let office = WeeklyHours::parse("mon-fri 09:00-17:00").unwrap();
        let cal = Calendar::new(&berlin, &office);
        // Friday 2026-03-27 15:00 CET; Berlin moves to CEST on Sunday the 29th.
        let friday = ts("2026-03-27T14:00:00Z");
        let cases = [
            // one business day: the same local time on Monday, now an hour closer to UTC
            ("1 business day", "2026-03-30T13:00:00Z"),
            // four business hours: two on Friday, two on Monday
            ("4 business hours", "2026-03-30T09:00:00Z"),
            // three wall-clock days: 72 real hours, 16:00 local on Monday
            ("3d", "2026-03-30T14:00:00Z"),
            ("30m", "2026-03-27T14:30:00Z"),
        ];
        for (text, want) in cases {
            let due = Delay::parse(text).unwrap().after(friday, cal);
            assert_eq!(due, ts(want), "{text}");
        }
    }

    #[test]
    fn next_working_moves_into_the_hours() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let office = WeeklyHours::parse("mon-fri 09:00-17:00").unwrap();
        let cal = Calendar::new(&berlin, &office);
        // Saturday night -> Monday 09:00 CET
        assert_eq!(
            next_working(cal, ts("2026-03-21T22:00:00Z")),
            ts("2026-03-23T08:00:00Z")
        );
        let inside = ts("2026-03-23T10:00:00Z");
        assert_eq!(next_working(cal, inside), inside);
        let never = WeeklyHours::NEVER;
        let anytime = Calendar::new(&berlin, &never);
        let night = ts("2026-03-21T22:00:00Z");
        assert_eq!(next_working(anytime, night), night);
    }
}
