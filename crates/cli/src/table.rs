//! Tables for people (aligned text, 83.3%, 4m 12s) and for other tools (CSV, JSON) from one
//! description, plus the number and time formats the commands share.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// RFC 4180 CSV with machine values (shares 0 to 1, durations in seconds, RFC 3339 times).
    Csv,
    /// JSON with machine values.
    Json,
}

/// One value of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(u64),
    /// A share from 0 to 1, shown as a percentage.
    Share(f64),
    /// A plain number, shown with one decimal.
    Float(f64),
    /// A duration, shown as "4m 12s".
    Duration(Option<Duration>),
    /// A point in time.
    Time(Option<jiff::Timestamp>),
    /// Counts by reason, most frequent first.
    Counts(Vec<(String, u64)>),
    /// Several texts.
    List(Vec<String>),
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Cell::Text(text.into())
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Cell::Int(_) | Cell::Share(_) | Cell::Float(_) | Cell::Duration(_)
        )
    }

    /// For people.
    pub fn display(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Share(share) => percent(*share),
            Cell::Float(x) => format!("{x:.1}"),
            Cell::Duration(Some(d)) => duration_text(*d),
            Cell::Duration(None) | Cell::Time(None) => "-".into(),
            Cell::Time(Some(at)) => local_time(*at),
            Cell::Counts(counts) => counts
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            Cell::List(items) => items.join("; "),
        }
    }

    /// For CSV: machine values.
    pub fn machine(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Share(x) | Cell::Float(x) => round4(*x).to_string(),
            Cell::Duration(Some(d)) => round4(d.as_secs_f64()).to_string(),
            Cell::Duration(None) | Cell::Time(None) => String::new(),
            Cell::Time(Some(at)) => at.to_string(),
            Cell::Counts(counts) => counts
                .iter()
                .map(|(reason, n)| format!("{reason}:{n}"))
                .collect::<Vec<_>>()
                .join(";"),
            Cell::List(items) => items.join("; "),
        }
    }

    /// For JSON.
    pub fn json(&self) -> Value {
        match self {
            Cell::Text(text) => json!(text),
            Cell::Int(n) => json!(n),
            Cell::Share(x) | Cell::Float(x) => json!(round4(*x)),
            Cell::Duration(d) => d.map_or(Value::Null, |d| json!(round4(d.as_secs_f64()))),
            Cell::Time(at) => at.map_or(Value::Null, |at| json!(at.to_string())),
            Cell::Counts(counts) => Value::Object(
                counts
                    .iter()
                    .map(|(reason, n)| (reason.clone(), json!(n)))
                    .collect::<Map<_, _>>(),
            ),
            Cell::List(items) => json!(items),
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A column: its machine key (CSV header, JSON field) and its heading for people.
#[derive(Debug, Clone)]
pub struct Column {
    pub key: &'static str,
    pub heading: &'static str,
}

/// Rows of cells under columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, &'static str)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|&(key, heading)| Column { key, heading })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The same rows with only these columns, in this order.
    pub fn select(&self, keys: &[&str]) -> Table {
        let picks: Vec<usize> = keys
            .iter()
            .filter_map(|key| self.columns.iter().position(|c| c.key == *key))
            .collect();
        Table {
            columns: picks.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| picks.iter().map(|&i| row[i].clone()).collect())
                .collect(),
        }
    }

    /// Aligned text: numbers right-aligned, text left-aligned, no trailing spaces.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(Cell::display).collect())
            .collect();
        let right: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                !self.rows.is_empty()
                    && self
                        .rows
                        .iter()
                        .all(|row| row[i].is_numeric() || row[i] == Cell::Text(String::new()))
            })
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|row| width(&row[i]))
                    .chain([width(c.heading)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let headings: Vec<String> = self.columns.iter().map(|c| c.heading.to_owned()).collect();
        for row in std::iter::once(&headings).chain(&cells) {
            let mut line = String::new();
            for (i, text) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(text));
                if right[i] {
                    line.push_str(&pad);
                    line.push_str(text);
                } else {
                    line.push_str(text);
                    line.push_str(&pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// CSV with the column keys as the header.
    pub fn to_csv(&self) -> String {
        let mut out = crate::csv::format_record(self.columns.iter().map(|c| c.key));
        for row in &self.rows {
            let values: Vec<String> = row.iter().map(Cell::machine).collect();
            out.push_str(&crate::csv::format_record(
                values.iter().map(String::as_str),
            ));
        }
        out
    }

    /// One JSON object per row, keyed by the column keys.
    pub fn to_json(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                Value::Object(
                    self.columns
                        .iter()
                        .zip(row)
                        .map(|(c, cell)| (c.key.to_owned(), cell.json()))
                        .collect(),
                )
            })
            .collect()
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// A share from 0 to 1 as a percentage with one decimal: 0.8333 → "83.3%".
pub fn percent(share: f64) -> String {
    if share.is_nan() {
        return "-".into();
    }
    let text = format!("{:.1}", share * 100.0);
    format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
}

/// A duration in the two largest units: "45s", "4m 12s", "3h 5m", "2d 4h", "800ms".
pub fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let ms = d.as_millis();
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) if seconds == 0 => format!("{minutes}m"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Time left until a deadline: "4m 12s left", "due now", "overdue 2m".
pub fn countdown(deadline: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let micros = deadline.as_microsecond() - now.as_microsecond();
    let abs = Duration::from_micros(micros.unsigned_abs());
    if abs < Duration::from_secs(1) {
        "due now".into()
    } else if micros > 0 {
        format!("{} left", duration_text(abs))
    } else {
        format!("overdue {}", duration_text(abs))
    }
}

/// A protobuf duration as a std one (negative ones as zero).
pub fn from_proto_duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Some(Duration::new(secs, nanos))
}

/// A protobuf timestamp as a jiff one.
pub fn from_proto_time(ts: Option<&prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts?.seconds, ts?.nanos).ok()
}

/// A time in the viewer's time zone, to the second.
pub fn local_time(at: jiff::Timestamp) -> String {
    at.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&[
            ("source", "source"),
            ("leads", "leads"),
            ("in_sla", "in SLA"),
            ("median", "median"),
        ]);
        table.push(vec![
            Cell::text("webinar"),
            Cell::Int(6),
            Cell::Share(5.0 / 6.0),
            Cell::Duration(Some(Duration::from_secs(252))),
        ]);
        table.push(vec![
            Cell::text("badge, \"scan\""),
            Cell::Int(120),
            Cell::Share(1.0),
            Cell::Duration(None),
        ]);
        table
    }

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        assert_eq!(
            sample().render(),
            "source         leads  in SLA  median\n\
             webinar            6   83.3%  4m 12s\n\
             badge, \"scan\"    120    100%       -\n"
        );
    }

    #[test]
    fn csv_has_machine_values_and_quotes_what_needs_it() {
        assert_eq!(
            sample().to_csv(),
            "source,leads,in_sla,median\r\n\
             webinar,6,0.8333,252\r\n\
             \"badge, \"\"scan\"\"\",120,1,\r\n"
        );
    }

    #[test]
    fn json_has_typed_values() {
        let rows = sample().to_json();
        assert_eq!(
            rows[0],
            json!({"source": "webinar", "leads": 6, "in_sla": 0.8333, "median": 252.0})
        );
        assert_eq!(rows[1]["median"], Value::Null);
        let counts = Cell::Counts(vec![("invalid_email".into(), 2)]);
        assert_eq!(counts.json(), json!({"invalid_email": 2}));
        assert_eq!(counts.display(), "invalid_email 2");
    }

    #[test]
    fn selecting_columns_keeps_rows() {
        let picked = sample().select(&["leads", "source"]);
        assert_eq!(picked.columns.len(), 2);
        assert_eq!(picked.rows[1][0], Cell::Int(120));
    }

    #[test]
    fn percentages_and_durations_read_naturally() {
        assert_eq!(percent(5.0 / 6.0), "83.3%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(duration_text(Duration::from_secs(252)), "4m 12s");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::from_secs(120)), "2m");
        assert_eq!(duration_text(Duration::from_secs(3 * 3600 + 300)), "3h 5m");
        assert_eq!(
            duration_text(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d 4h"
        );
        assert_eq!(duration_text(Duration::from_millis(800)), "800ms");
    }

    #[test]
    fn countdowns_say_left_or_overdue() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| jiff::Timestamp::from_second(1_000_000 + s).unwrap();
        assert_eq!(countdown(at(252), now), "4m 12s left");
        assert_eq!(countdown(at(-120), now), "overdue 2m");
        assert_eq!(countdown(now, now), "due now");
        assert_eq!(countdown(at(3700), now), "1h 1m left");
    }
}
