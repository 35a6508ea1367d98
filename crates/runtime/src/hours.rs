//! Working hours: when someone works, and how business-hours windows (SLAs, follow-up delays) are
//! counted. Hours are local wall-clock times in a time zone, so "09:00-17:30 in Berlin" stays
//! 09:00-17:30 across daylight-saving changes; durations are measured in real elapsed time
//! between the resulting instants, so a shift that spans a DST change is an hour shorter or
//! longer, as it is for the person working it.
//!
//! The playbook writes a week as comma-separated clauses of a day or day range and one or
//! more shifts: `"mon-fri 09:00-17:30"`, `"mon-thu 08:00-16:30, fri 08:00-14:00"`,
//! `"mon-fri 09:00-12:00 13:00-17:30"`, `"sun-thu 08:00-16:00"`. A shift ends the day it
//! starts (`24:00` is midnight at its end); days not written are days off.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// One stretch of work within a day, in minutes after local midnight; `end` may be 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shift {
    start: u16,
    end: u16,
}

impl Shift {
    /// Minutes after local midnight the shift starts.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Minutes after local midnight the shift ends (1440 for midnight at its end).
    pub fn end(self) -> u16 {
        self.end
    }

    fn contains(self, minute: u16) -> bool {
        self.start <= minute && minute < self.end
    }

    fn minutes(self) -> u16 {
        self.end - self.start
    }
}

/// Working hours for each day of the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyHours {
    /// Indexed Monday = 0; each day's shifts sorted and not overlapping.
    days: [Vec<Shift>; 7],
}

impl WeeklyHours {
    /// Never working; what an unparsable value reads as, so it can never make someone
    /// look available.
    pub const NEVER: WeeklyHours = WeeklyHours {
        days: [const { Vec::new() }; 7],
    };

    /// Parses the playbook form described in the module docs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut week = Self::NEVER;
        if text.trim().is_empty() {
            return Err(hours_error(text, "no working hours given"));
        }
        for clause in text.split(',') {
            let mut words = clause.split_whitespace();
            let days = words
                .next()
                .ok_or_else(|| hours_error(text, "an empty clause between commas"))?;
            let days = parse_days(days).map_err(|e| hours_error(text, &e))?;
            let mut shifts = Vec::new();
            for word in words {
                shifts.push(parse_shift(word).map_err(|e| hours_error(text, &e))?);
            }
            if shifts.is_empty() {
                return Err(hours_error(
                    text,
                    &format!("`{}` gives days but no hours", clause.trim()),
                ));
            }
            for day in days {
                week.days[day].extend_from_slice(&shifts);
            }
        }
        for (day, shifts) in week.days.iter_mut().enumerate() {
            shifts.sort();
            if shifts.windows(2).any(|pair| pair[0].end > pair[1].start) {
                return Err(hours_error(
                    text,
                    &format!("the hours on {} overlap", DAY_NAMES[day]),
                ));
            }
        }
        Ok(week)
    }

    /// The shifts worked on `day`, in order.
    pub fn shifts(&self, day: Weekday) -> &[Shift] {
        &self.days[day_index(day)]
    }

    /// Whether the week has no working time at all.
    pub fn is_never(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    /// Nominal working minutes in a week (ignoring DST).
    fn weekly_minutes(&self) -> u32 {
        self.days
            .iter()
            .flatten()
            .map(|s| u32::from(s.minutes()))
            .sum()
    }

    fn working_days(&self) -> u32 {
        self.days.iter().filter(|d| !d.is_empty()).count() as u32
    }
}

impl fmt::Display for WeeklyHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (day, shifts) in self.days.iter().enumerate() {
            if shifts.is_empty() {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(DAY_NAMES[day])?;
            for s in shifts {
                write!(f, " {}-{}", hhmm(s.start), hhmm(s.end))?;
            }
        }
        Ok(())
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn hours_error(text: &str, problem: &str) -> String {
    format!(
        "hours {text:?}: {problem}; write them like \"mon-fri 09:00-17:30\" or \
         \"mon-thu 08:00-16:30, fri 08:00-14:00\""
    )
}

fn day_index(day: Weekday) -> usize {
    // to_monday_zero_offset is 0..=6 by construction.
    day.to_monday_zero_offset().clamp(0, 6) as usize
}

fn parse_day(name: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("`{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

/// `mon`, or a range `mon-fri`; a range may wrap over the weekend (`sun-thu`).
fn parse_days(text: &str) -> Result<Vec<usize>, String> {
    let Some((from, to)) = text.split_once('-') else {
        return Ok(vec![parse_day(text)?]);
    };
    let (from, to) = (parse_day(from)?, parse_day(to)?);
    let len = (to + 7 - from) % 7 + 1;
    Ok((0..len).map(|i| (from + i) % 7).collect())
}

/// `09:00-17:30`.
fn parse_shift(text: &str) -> Result<Shift, String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a day or a time range like 09:00-17:30"))?;
    let (start, end) = (parse_time(start)?, parse_time(end)?);
    if start >= end {
        return Err(format!(
            "`{text}` ends before it starts (a shift ends the day it starts; use 24:00 for \
             midnight)"
        ));
    }
    Ok(Shift { start, end })
}

/// `HH:MM` from `00:00` to `24:00`, in minutes after midnight.
fn parse_time(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time from 00:00 to 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = h * 60 + m;
    if m >= 60 || minutes > MINUTES_PER_DAY {
        return Err(bad());
    }
    Ok(minutes)
}

/// Working hours in a time zone: a team's business calendar or an owner's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Calendar<'a> {
    pub tz: &'a TimeZone,
    pub hours: &'a WeeklyHours,
}

impl<'a> Calendar<'a> {
    pub fn new(tz: &'a TimeZone, hours: &'a WeeklyHours) -> Self {
        Self { tz, hours }
    }

    /// Whether `at` falls inside the working hours, read on the local wall clock.
    pub fn is_working(self, at: Timestamp) -> bool {
        let local = self.tz.to_datetime(at);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.hours
            .shifts(local.weekday())
            .iter()
            .any(|s| s.contains(minute))
    }

    /// The length of an average working day (weekly working time over working days): what
    /// one day of a business-hours window stands for. A calendar without working time
    /// falls back to 24 hours.
    pub fn working_day(self) -> SignedDuration {
        let days = self.hours.working_days();
        if days == 0 {
            return SignedDuration::from_hours(24);
        }
        SignedDuration::from_secs(i64::from(self.hours.weekly_minutes()) * 60 / i64::from(days))
    }

    /// The instant when `amount` of working time has passed since `start`. Time outside the
    /// working hours does not count: from Friday 17:00, one hour in a 09:00-17:30 week is
    /// due Monday 09:30. A calendar without working time counts wall-clock time instead,
    /// so a deadline always exists.
    pub fn add_working_time(self, start: Timestamp, amount: SignedDuration) -> Timestamp {
        if !amount.is_positive() {
            return start;
        }
        let weekly_secs = i64::from(self.hours.weekly_minutes()) * 60;
        if weekly_secs == 0 {
            return start.checked_add(amount).unwrap_or(Timestamp::MAX);
        }
        // Every week holds weekly_secs of work give or take a DST hour, so this many days
        // always suffice; the bound only keeps a malformed input from looping.
        let max_days = (amount.as_secs() / weekly_secs + 3).saturating_mul(7);
        let mut left = amount;
        let mut date = self.tz.to_datetime(start).date();
        for _ in 0..max_days {
            for shift in self.hours.shifts(date.weekday()) {
                let Some((from, to)) = self.shift_instants(date, *shift) else {
                    continue;
                };
                let from = from.max(start);
                if to <= from {
                    continue;
                }
                let available = to.duration_since(from);
                if left <= available {
                    return from.checked_add(left).unwrap_or(Timestamp::MAX);
                }
                left -= available;
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        start.checked_add(amount).unwrap_or(Timestamp::MAX)
    }

    /// The instants a shift on `date` starts and ends. A local time skipped by a DST change
    /// moves forward to the first instant after the gap; a repeated one takes its first
    /// occurrence.
    fn shift_instants(self, date: Date, shift: Shift) -> Option<(Timestamp, Timestamp)> {
        let instant = |date: Date, minute: u16| {
            let dt = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
            self.tz.to_ambiguous_timestamp(dt).compatible().ok()
        };
        let from = instant(date, shift.start)?;
        let to = if shift.end == MINUTES_PER_DAY {
            instant(date.tomorrow().ok()?, 0)?
        } else {
            instant(date, shift.end)?
        };
        Some((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn parses_the_compact_forms() {
        let cases = [
            (
                "mon-fri 09:00-17:30",
                "mon 09:00-17:30, tue 09:00-17:30, wed 09:00-17:30, thu 09:00-17:30, fri 09:00-17:30",
            ),
            (
                "mon-thu 08:00-16:30, fri 08:00-14:00",
                "mon 08:00-16:30, tue 08:00-16:30, wed 08:00-16:30, thu 08:00-16:30, fri 08:00-14:00",
            ),
            ("mon 13:00-17:00 09:00-12:00", "mon 09:00-12:00 13:00-17:00"),
            (
                "sun-tue 00:00-24:00",
                "mon 00:00-24:00, tue 00:00-24:00, sun 00:00-24:00",
            ),
            (
                "SAT 10:00-14:00,  sun 10:00-12:00",
                "sat 10:00-14:00, sun 10:00-12:00",
            ),
            ("fri-fri 09:00-10:00", "fri 09:00-10:00"),
        ];
        for (text, want) in cases {
            let week = WeeklyHours::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(week.to_string(), want, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_hours_with_the_reason() {
        let cases = [
            ("", "no working hours"),
            ("   ", "no working hours"),
            ("mon-fri", "gives days but no hours"),
            ("mon-fri 9:00-17:30", "`9:00` is not a time"),
            ("mon-fri 09:00-25:00", "`25:00` is not a time"),
            ("mon-fri 09:60-17:00", "`09:60` is not a time"),
            ("mon-fri 24:01-24:00", "`24:01` is not a time"),
            ("mon-fri 17:30-09:00", "ends before it starts"),
            ("mon-fri 09:00-09:00", "ends before it starts"),
            ("monday 09:00-17:00", "`monday` is not a day"),
            ("mon-fri 09:00", "is not a day or a time range"),
            ("mon-fri 09:00-17:00,", "an empty clause"),
            (
                "mon-fri 09:00-13:00, wed 12:00-18:00",
                "the hours on wed overlap",
            ),
            ("mon 09:00-12:00 11:00-13:00", "the hours on mon overlap"),
            ("mon-fri 0900-1700", "`0900` is not a time"),
            ("mon-fri +9:00-17:00", "is not a time"),
        ];
        for (text, needle) in cases {
            let err = WeeklyHours::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(
                err.contains("mon-fri 09:00-17:30"),
                "shows an example: {err}"
            );
        }
    }

    #[test]
    fn is_working_reads_the_local_wall_clock_across_dst() {
        let berlin = tz("Europe/Berlin");
        let new_york = tz("America/New_York");
        let office = WeeklyHours::parse("mon-fri 09:00-17:30").unwrap();
        let berlin_sun = WeeklyHours::parse("sun 09:00-10:00").unwrap();
        let night = WeeklyHours::parse("sun 01:00-04:00").unwrap();
        let cases = [
            // Berlin, winter (UTC+1): 09:00 local is 08:00Z.
            (&berlin, &office, "2026-03-27T07:59:59Z", false),
            (&berlin, &office, "2026-03-27T08:00:00Z", true),
            (&berlin, &office, "2026-03-27T16:29:59Z", true),
            (&berlin, &office, "2026-03-27T16:30:00Z", false),
            // Berlin after the spring change on Sunday 2026-03-29 (UTC+2): 09:00 is 07:00Z.
            (&berlin, &berlin_sun, "2026-03-29T06:59:00Z", false),
            (&berlin, &berlin_sun, "2026-03-29T07:00:00Z", true),
            (&berlin, &office, "2026-03-30T07:00:00Z", true),
            (&berlin, &office, "2026-03-30T06:59:00Z", false),
            // Berlin after the autumn change on Sunday 2026-10-25: back to UTC+1.
            (&berlin, &office, "2026-10-23T07:00:00Z", true),
            (&berlin, &office, "2026-10-26T07:00:00Z", false),
            (&berlin, &office, "2026-10-26T08:00:00Z", true),
            // New York changes on 2026-03-08: 09:00 is 14:00Z before, 13:00Z after.
            (&new_york, &office, "2026-03-06T13:30:00Z", false),
            (&new_york, &office, "2026-03-06T14:00:00Z", true),
            (&new_york, &office, "2026-03-09T13:00:00Z", true),
            (&new_york, &office, "2026-03-09T12:59:00Z", false),
            // Berlin on the autumn Sunday 2026-10-25, back on UTC+1: 09:00 is 08:00Z.
            (&berlin, &berlin_sun, "2026-10-25T07:59:00Z", false),
            (&berlin, &berlin_sun, "2026-10-25T08:00:00Z", true),
            (&berlin, &berlin_sun, "2026-10-25T08:59:00Z", true),
            (&berlin, &berlin_sun, "2026-10-25T09:00:00Z", false),
            // a night shift over the changes: 02:30 does not exist in spring and happens
            // twice in autumn; both autumn ones are inside 01:00-04:00
            (&berlin, &night, "2026-03-29T00:30:00Z", true),
            (&berlin, &night, "2026-03-29T01:30:00Z", true),
            (&berlin, &night, "2026-03-29T02:00:00Z", false),
            (&berlin, &night, "2026-10-25T00:30:00Z", true),
            (&berlin, &night, "2026-10-25T01:30:00Z", true),
            (&berlin, &night, "2026-10-25T02:59:00Z", true),
            (&berlin, &night, "2026-10-25T03:00:00Z", false),
            // weekends are off
            (&berlin, &office, "2026-03-28T10:00:00Z", false),
        ];
        for (zone, hours, at, want) in cases {
            assert_eq!(Calendar::new(zone, hours).is_working(ts(at)), want, "{at}");
        }
    }

    #[test]
    fn working_time_skips_nights_and_weekends() {
        let berlin = tz("Europe/Berlin");
        let office = WeeklyHours::parse("mon-fri 09:00-17:30").unwrap();
        let split = WeeklyHours::parse("mon-fri 09:00-12:00 13:00-17:00").unwrap();
        let always = WeeklyHours::parse("mon-sun 00:00-24:00").unwrap();
        let night = WeeklyHours::parse("sun 01:00-04:00").unwrap();
        let h = SignedDuration::from_hours;
        let m = SignedDuration::from_mins;
        let cases = [
            // Friday 17:00 CET + 1h: 30 min on Friday, 30 min on Monday -> Mon 09:30 CEST.
            (
                &office,
                "2026-03-27T16:00:00Z",
                h(1),
                "2026-03-30T07:30:00Z",
            ),
            // arriving at night counts from the next opening
            (
                &office,
                "2026-03-25T22:00:00Z",
                m(5),
                "2026-03-26T08:05:00Z",
            ),
            // within a day
            (
                &office,
                "2026-03-25T09:00:00Z",
                h(2),
                "2026-03-25T11:00:00Z",
            ),
            // ending exactly at closing time stays on that day
            (
                &office,
                "2026-03-25T15:30:00Z",
                h(1),
                "2026-03-25T16:30:00Z",
            ),
            // a lunch break does not count
            (&split, "2026-03-25T10:30:00Z", h(1), "2026-03-25T12:30:00Z"),
            // around the clock, working time is elapsed time: the spring Sunday has 23 hours
            (
                &always,
                "2026-03-28T23:00:00Z",
                h(24),
                "2026-03-29T23:00:00Z",
            ),
            // the autumn Sunday has 25 hours, all of them working time
            (
                &always,
                "2026-10-24T22:00:00Z",
                h(25),
                "2026-10-25T23:00:00Z",
            ),
            // the 01:00-04:00 Sunday shift lasts 2 real hours in spring: 2h30m of work run
            // into the next Sunday; in autumn it lasts 4 hours
            (
                &night,
                "2026-03-29T00:00:00Z",
                m(150),
                "2026-04-04T23:30:00Z",
            ),
            (
                &night,
                "2026-10-24T23:00:00Z",
                m(210),
                "2026-10-25T02:30:00Z",
            ),
            // five working days from Friday 09:00 CEST end Thursday 17:30 CET, after the
            // autumn change
            (
                &office,
                "2026-10-23T07:00:00Z",
                m(5 * 510),
                "2026-10-29T16:30:00Z",
            ),
        ];
        for (hours, start, amount, want) in cases {
            let due = Calendar::new(&berlin, hours).add_working_time(ts(start), amount);
            assert_eq!(due, ts(want), "{start} + {amount}");
        }
    }

    #[test]
    fn working_time_without_hours_is_wall_clock_time() {
        let utc = TimeZone::UTC;
        let never_hours = WeeklyHours::NEVER;
        let start = ts("2026-03-27T16:00:00Z");
        let cal = Calendar::new(&utc, &never_hours);
        assert!(!cal.is_working(start));
        assert_eq!(
            cal.add_working_time(start, SignedDuration::from_hours(1)),
            ts("2026-03-27T17:00:00Z")
        );
        assert_eq!(cal.working_day(), SignedDuration::from_hours(24));
        assert_eq!(cal.add_working_time(start, SignedDuration::ZERO), start);
        assert_eq!(
            cal.add_working_time(Timestamp::MAX, SignedDuration::from_hours(1)),
            Timestamp::MAX
        );
    }

    #[test]
    fn a_working_day_is_the_average_day() {
        let utc = TimeZone::UTC;
        let cases = [
            ("mon-fri 09:00-17:30", SignedDuration::from_mins(510)),
            (
                "mon-thu 08:00-16:30, fri 08:00-14:00",
                SignedDuration::from_mins(480),
            ),
            (
                "mon-fri 09:00-12:00 13:00-17:00",
                SignedDuration::from_hours(7),
            ),
        ];
        for (text, want) in cases {
            let hours = WeeklyHours::parse(text).unwrap();
            assert_eq!(Calendar::new(&utc, &hours).working_day(), want, "{text}");
        }
    }
}
