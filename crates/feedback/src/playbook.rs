//! The `[feedback]` table of the playbook: what counts as a fair chance, how many touches
//! count as persistence in the reports, and which loss reasons blame targeting. The rules
//! that apply them live in [`crate::domain`].
//!
//! Operators edit this in git, so every value that can be wrong keeps its place in the file
//! and [`Section::validate`] reports `file:line:col` for each problem, all of them at once.
//! Durations are parsed while reading, but a bad one is kept as an error rather than failing
//! the read, for the same reason.
//!
//! Every key has a default, so a playbook without a `[feedback]` table is valid: the rule in
//! [`FairChanceRule::default`], persistence at 4 touches, and the four targeting reasons.

use jiff::SignedDuration;
use runtime::playbook::{Section, SpannedError};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::domain::{FairChanceRule, OutcomeReason};

/// The longest `min_days` accepted: beyond a year persistence means nothing, and the bound
/// keeps timestamp arithmetic far from overflowing.
const MAX_DAYS: u64 = 365;
/// The most touches a rule may ask for: no cadence sends more.
const MAX_TOUCHES: u32 = 100;

/// The `[feedback]` section of the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackPlaybook {
    /// `[feedback.fair_chance]`.
    #[serde(default)]
    fair_chance: FairChance,
    /// `persistence_touches`: the touches after which a lead reaching a meeting counts as
    /// "converted after persistence" in the reports. Default 4; from 1 to 100.
    #[serde(default = "default_persistence_touches")]
    persistence_touches: Spanned<u32>,
    /// `targeting_reasons`: the loss reasons that, after a fair chance, blame targeting (lead
    /// quality). Default `["not_icp", "no_budget", "no_authority", "no_need"]`; `no_response`
    /// is never one: silence is a follow-up problem.
    #[serde(default = "default_targeting_reasons")]
    targeting_reasons: Vec<Spanned<OutcomeReason>>,
}

/// What a playbook without a `[feedback]` table reads as: every default.
impl Default for FeedbackPlaybook {
    fn default() -> Self {
        Self {
            fair_chance: FairChance::default(),
            persistence_touches: default_persistence_touches(),
            targeting_reasons: default_targeting_reasons(),
        }
    }
}

fn default_persistence_touches() -> Spanned<u32> {
    unplaced(4)
}

fn default_targeting_reasons() -> Vec<Spanned<OutcomeReason>> {
    [
        OutcomeReason::NotIcp,
        OutcomeReason::NoBudget,
        OutcomeReason::NoAuthority,
        OutcomeReason::NoNeed,
    ]
    .into_iter()
    .map(unplaced)
    .collect()
}

/// A built-in value, not from the file. Built-ins are valid, so its empty span never ends up
/// in an error.
fn unplaced<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// `[feedback.fair_chance]`: when a lead had a fair chance.
///
/// - `require_within_sla`: activated within its SLA (default true); false asks only that it
///   was activated at all.
/// - `min_touches`: follow-up touches at least (default 6; at most 100; 0 asks for none).
/// - `min_days`: from the first touch to the last at least (default `"10d"`; `"0s"` asks for
///   no spread; at most 365 days).
/// - `engaged_earlier_counts`: a buyer who answered (a reply, a meeting, an opt-out) before
///   the touches and days were reached was followed up enough (default true).
/// - `proof_for_objections`: every objection raised got proof answering it (default true).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairChance {
    require_within_sla: bool,
    min_touches: Spanned<u32>,
    min_days: Parsed,
    engaged_earlier_counts: bool,
    proof_for_objections: bool,
}

impl Default for FairChance {
    fn default() -> Self {
        let rule = FairChanceRule::default();
        Self {
            require_within_sla: rule.require_within_sla,
            min_touches: unplaced(rule.min_touches),
            min_days: Parsed::built_in("10d"),
            engaged_earlier_counts: rule.engaged_earlier_counts,
            proof_for_objections: rule.proof_for_objections,
        }
    }
}

/// A playbook duration (humantime: `"10d"`, `"36h"`, `"2w"`), parsed when read. One that
/// does not parse keeps its error (reported by `validate` with its place, alongside every
/// other problem) and reads as ten days, so nothing downstream can panic on it.
#[derive(Debug, Clone)]
struct Parsed {
    text: Spanned<String>,
    value: SignedDuration,
    error: Option<String>,
}

impl Parsed {
    fn new(text: Spanned<String>) -> Self {
        match parse_duration(text.get_ref()) {
            Ok(value) => Self {
                text,
                value,
                error: None,
            },
            Err(error) => Self {
                text,
                value: SignedDuration::from_hours(240),
                error: Some(error),
            },
        }
    }

    fn built_in(text: &str) -> Self {
        Self::new(unplaced(text.to_owned()))
    }

    fn check(&self, key: &str, errors: &mut Vec<SpannedError>) {
        if let Some(error) = &self.error {
            errors.push(SpannedError::at(self.text.span(), format!("{key} {error}")));
        }
    }
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::<String>::deserialize(deserializer).map(Self::new)
    }
}

fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write it like \"10d\", \"36h\" or \"2w\"")
    })?;
    if duration.as_secs() > MAX_DAYS * 86_400 {
        return Err(format!("{text:?} is longer than {MAX_DAYS} days"));
    }
    SignedDuration::try_from(duration).map_err(|e| format!("{text:?}: {e}"))
}

impl FeedbackPlaybook {
    /// The fair-chance rule.
    pub fn fair_chance(&self) -> FairChanceRule {
        let f = &self.fair_chance;
        FairChanceRule {
            require_within_sla: f.require_within_sla,
            min_touches: *f.min_touches.get_ref(),
            min_span: f.min_days.value,
            engaged_earlier_counts: f.engaged_earlier_counts,
            proof_for_objections: f.proof_for_objections,
        }
    }

    /// The touches after which a conversion counts as "after persistence".
    pub fn persistence_touches(&self) -> u32 {
        *self.persistence_touches.get_ref()
    }

    /// The loss reasons that blame targeting, in file order.
    pub fn targeting_reasons(&self) -> Vec<OutcomeReason> {
        self.targeting_reasons
            .iter()
            .map(|r| *r.get_ref())
            .collect()
    }
}

impl Section for FeedbackPlaybook {
    const NAME: &'static str = "feedback";

    fn validate(&self) -> Vec<SpannedError> {
        let mut errors = Vec::new();
        let f = &self.fair_chance;
        let touches = *f.min_touches.get_ref();
        if touches > MAX_TOUCHES {
            errors.push(SpannedError::at(
                f.min_touches.span(),
                format!("fair_chance min_touches must be at most {MAX_TOUCHES}, not {touches}"),
            ));
        }
        f.min_days.check("fair_chance min_days", &mut errors);
        let persistence = *self.persistence_touches.get_ref();
        if !(1..=MAX_TOUCHES).contains(&persistence) {
            errors.push(SpannedError::at(
                self.persistence_touches.span(),
                format!("persistence_touches must be from 1 to {MAX_TOUCHES}, not {persistence}"),
            ));
        }
        for (i, reason) in self.targeting_reasons.iter().enumerate() {
            let value = *reason.get_ref();
            if value == OutcomeReason::NoResponse {
                errors.push(SpannedError::at(
                    reason.span(),
                    "targeting_reasons cannot include no_response: a lead that never answered \
                     is a follow-up problem, not a targeting one",
                ));
            } else if self.targeting_reasons[..i]
                .iter()
                .any(|r| *r.get_ref() == value)
            {
                errors.push(SpannedError::at(
                    reason.span(),
                    format!("targeting_reasons lists {value} twice"),
                ));
            }
        }
        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |span| span.start));
        errors
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::playbook::parse;

    /// A realistic `[feedback]` table, every key set; deploy/playbook.toml can carry a copy.
    pub const EXAMPLE: &str = r#"[feedback]
# A lead that reaches a meeting after at least this many follow-up touches counts as
# "converted after persistence" in the source and campaign reports.
persistence_touches = 4
# Loss reasons that blame targeting, but only for a lead that had a fair chance: a lead the
# system let down is a system failure whatever the CRM says. (no_response is never one:
# silence is a follow-up problem.)
targeting_reasons = ["not_icp", "no_budget", "no_authority", "no_need"]

[feedback.fair_chance]
# The lead was activated within its SLA (false: activated at all).
require_within_sla = true
# Followed up at least 6 times, spread over at least 10 days from the first touch to the last...
min_touches = 6
min_days = "10d"
# ...unless the buyer answered first (a reply of any sentiment, a meeting, an opt-out).
engaged_earlier_counts = true
# Every objection raised got proof answering its checkpoint, delivered after it was raised.
proof_for_objections = true
"#;

    pub(crate) fn example() -> FeedbackPlaybook {
        parse("p.toml", EXAMPLE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `EXAMPLE` with `from` (which must occur once) replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(
            EXAMPLE.matches(from).count(),
            1,
            "{from:?} must occur once in EXAMPLE"
        );
        EXAMPLE.replace(from, to)
    }

    /// Parses `marked`, where `@@` marks where the one expected problem is, and checks the
    /// problem is reported there (as `p.toml:line:col`) and mentions `needle`.
    #[track_caller]
    fn assert_error(marked: &str, needle: &str) {
        testkit::assert_playbook_error::<FeedbackPlaybook>(marked, needle);
    }

    #[test]
    fn the_example_parses_with_every_key() {
        let pb = example();
        assert_eq!(pb.fair_chance(), FairChanceRule::default());
        assert_eq!(pb.persistence_touches(), 4);
        assert_eq!(
            pb.targeting_reasons(),
            [
                OutcomeReason::NotIcp,
                OutcomeReason::NoBudget,
                OutcomeReason::NoAuthority,
                OutcomeReason::NoNeed
            ]
        );
        // Every key is set, so a changed value must come out changed.
        let custom: FeedbackPlaybook = parse(
            "p.toml",
            &EXAMPLE
                .replace("min_touches = 6", "min_touches = 8")
                .replace("min_days = \"10d\"", "min_days = \"2w\"")
                .replace("require_within_sla = true", "require_within_sla = false")
                .replace(
                    "engaged_earlier_counts = true",
                    "engaged_earlier_counts = false",
                )
                .replace(
                    "proof_for_objections = true",
                    "proof_for_objections = false",
                )
                .replace("persistence_touches = 4", "persistence_touches = 3")
                .replace(
                    "[\"not_icp\", \"no_budget\", \"no_authority\", \"no_need\"]",
                    "[\"not_icp\", \"competitor\"]",
                ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            custom.fair_chance(),
            FairChanceRule {
                require_within_sla: false,
                min_touches: 8,
                min_span: SignedDuration::from_hours(14 * 24),
                engaged_earlier_counts: false,
                proof_for_objections: false,
            }
        );
        assert_eq!(custom.persistence_touches(), 3);
        assert_eq!(
            custom.targeting_reasons(),
            [OutcomeReason::NotIcp, OutcomeReason::Competitor]
        );
    }

    #[test]
    fn the_default_is_valid_and_a_missing_table_reads_as_it() {
        let pb = FeedbackPlaybook::default();
        assert!(pb.validate().is_empty(), "{:?}", pb.validate());
        assert_eq!(pb.fair_chance(), FairChanceRule::default());
        assert_eq!(pb.fair_chance().min_span, SignedDuration::from_hours(240));
        let absent: FeedbackPlaybook = parse("p.toml", "[proof]\nx = 1\n").unwrap();
        assert_eq!(absent.fair_chance(), FairChanceRule::default());
        assert_eq!(absent.persistence_touches(), 4);
        assert_eq!(absent.targeting_reasons(), pb.targeting_reasons());
        let small: FeedbackPlaybook = parse(
            "p.toml",
            "[feedback.fair_chance]\nmin_touches = 0\nmin_days = \"0s\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.fair_chance().min_touches, 0);
        assert_eq!(small.fair_chance().min_span, SignedDuration::ZERO);
        assert!(small.fair_chance().require_within_sla);
        assert_eq!(small.persistence_touches(), 4);
    }

    #[test]
    fn values_are_checked_where_they_are() {
        let cases = [
            (
                edit("min_days = \"10d\"", "min_days = @@\"ten days\""),
                "fair_chance min_days \"ten days\" is not a duration",
            ),
            (
                edit("min_days = \"10d\"", "min_days = @@\"400d\""),
                "\"400d\" is longer than 365 days",
            ),
            (
                edit("min_days = \"10d\"", "min_days = @@10"),
                "invalid type: integer `10`, expected a string",
            ),
            (
                edit("min_touches = 6", "min_touches = @@101"),
                "fair_chance min_touches must be at most 100, not 101",
            ),
            (
                edit("min_touches = 6", "min_touches = @@-1"),
                "invalid value: integer `-1`, expected u32",
            ),
            (
                edit("persistence_touches = 4", "persistence_touches = @@0"),
                "persistence_touches must be from 1 to 100, not 0",
            ),
            (
                edit(
                    "require_within_sla = true",
                    "require_within_sla = @@\"yes\"",
                ),
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                edit(
                    "\"no_authority\", \"no_need\"]",
                    "\"no_authority\", @@\"budget\"]",
                ),
                "unknown variant `budget`",
            ),
            (
                edit(
                    "\"no_authority\", \"no_need\"]",
                    "\"no_authority\", @@\"no_response\"]",
                ),
                "targeting_reasons cannot include no_response",
            ),
            (
                edit(
                    "\"no_authority\", \"no_need\"]",
                    "\"no_authority\", @@\"not_icp\"]",
                ),
                "targeting_reasons lists not_icp twice",
            ),
            (
                edit(
                    "proof_for_objections = true",
                    "@@proof_for_objection = true",
                ),
                "unknown field `proof_for_objection`",
            ),
            (
                edit("persistence_touches = 4", "@@persistence = 4"),
                "unknown field `persistence`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn all_problems_are_reported_together_in_file_order() {
        let text = EXAMPLE
            .replace("persistence_touches = 4", "persistence_touches = 0")
            .replace("\"no_need\"]", "\"no_response\"]")
            .replace("min_days = \"10d\"", "min_days = \"soon\"");
        let err = parse::<FeedbackPlaybook>("p.toml", &text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("  p.toml:4:23: persistence_touches must be from 1 to 100"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("  p.toml:8:62: targeting_reasons cannot include no_response"),
            "{err}"
        );
        assert!(
            lines[2].starts_with("  p.toml:15:12: fair_chance min_days \"soon\""),
            "{err}"
        );
    }
}
