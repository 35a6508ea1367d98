//! The `[intake]` table of the playbook: which lead sources exist and what each must provide,
//! which email domains are never worth a lead, how long a resubmission still counts as the
//! same lead, how completeness is weighted and which leads fit the ideal customer profile.
//!
//! Operators edit this in git, so every value that can be wrong keeps its place in the file
//! ([`toml::Spanned`]) and [`Section::validate`] reports `file:line:col` for it. The rules that
//! apply these settings to a lead live in [`crate::domain::quality`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use runtime::playbook::{Section, SpannedError};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::domain::IcpTier;
use crate::domain::quality::is_known_field;

/// Completeness weights used when the playbook has no `[intake.completeness]` table. They sum
/// to 100, so each is also the share of the score its field is worth.
pub const DEFAULT_COMPLETENESS: &[(&str, u32)] = &[
    ("contact.name", 15),
    ("contact.email", 20),
    ("contact.phone", 15),
    ("contact.company", 15),
    ("contact.title", 10),
    ("contact.country", 5),
    ("contact.timezone", 5),
    ("source.campaign", 5),
    ("source.message", 5),
    ("intent.kind", 5),
];

const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Beyond ten years "the same lead" means nothing, and a bound keeps timestamp arithmetic
/// from overflowing.
const MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Same bound as `source.source` in a submission: a longer name could never match.
const SOURCE_NAME_MAX: usize = 128;

/// The `[intake]` section of the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakePlaybook {
    #[serde(deserialize_with = "duplicate_window")]
    duplicate_window: SignedDuration,
    unknown_sources: UnknownSources,
    blocked_email_domains: Vec<Spanned<String>>,
    sources: BTreeMap<Spanned<String>, SourceRules>,
    completeness: Option<Spanned<BTreeMap<Spanned<String>, Spanned<u32>>>>,
    icp: Vec<IcpRule>,
}

impl Default for IntakePlaybook {
    fn default() -> Self {
        Self {
            duplicate_window: SignedDuration::try_from(DEFAULT_DUPLICATE_WINDOW)
                .expect("30 days fit a SignedDuration"),
            unknown_sources: UnknownSources::default(),
            blocked_email_domains: Vec::new(),
            sources: BTreeMap::new(),
            completeness: None,
            icp: Vec::new(),
        }
    }
}

/// What to do with a lead whose `source.source` is not under `[intake.sources]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSources {
    /// Take it like any other lead (new sources show up before the playbook knows them).
    #[default]
    Accept,
    /// Send it to the review queue, so a typo in a form integration is noticed.
    Reject,
}

/// The rules of one lead source, `[intake.sources.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceRules {
    required: Vec<Spanned<String>>,
    blocked_email_domains: Vec<Spanned<String>>,
}

/// One entry of a source's `required` list: a field path, or alternatives `a|b` of which at
/// least one must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement<'a>(&'a str);

/// One `[[intake.icp]]` rule: the tier a lead gets when all its conditions hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcpRule {
    tier: Spanned<TierName>,
    #[serde(default)]
    when: Vec<Spanned<Condition>>,
}

/// The tiers a rule may give; [`IcpTier::Outside`] is what no rule matching means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum TierName {
    A,
    B,
    C,
}

/// A test on one field of a lead; every test it has must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    field: Spanned<String>,
    #[serde(default)]
    any_of: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    contains_any: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    min: Option<Spanned<f64>>,
    #[serde(default)]
    max: Option<Spanned<f64>>,
    #[serde(default)]
    present: Option<bool>,
}

impl IntakePlaybook {
    /// How long after a lead's first receipt a submission of the same contact is merged into
    /// it as a touch rather than becoming a new lead. A `SignedDuration` because it is added
    /// to `jiff::Timestamp`s; always positive and at most ten years.
    pub fn duplicate_window(&self) -> SignedDuration {
        self.duplicate_window
    }

    pub fn unknown_sources(&self) -> UnknownSources {
        self.unknown_sources
    }

    /// Domains blocked for every source, as written (compare them case-insensitively).
    pub fn blocked_email_domains(&self) -> impl Iterator<Item = &str> {
        self.blocked_email_domains
            .iter()
            .map(|d| d.get_ref().as_str())
    }

    /// The rules of the source named exactly `name` (the trimmed `source.source`).
    pub fn source(&self, name: &str) -> Option<&SourceRules> {
        self.sources.get(name)
    }

    /// Every configured source, by name.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &SourceRules)> {
        self.sources
            .iter()
            .map(|(name, rules)| (name.get_ref().as_str(), rules))
    }

    /// The completeness weights in force: the playbook's, or [`DEFAULT_COMPLETENESS`] when it
    /// has none.
    pub fn completeness_weights(&self) -> Vec<(&str, u32)> {
        match &self.completeness {
            Some(weights) => weights
                .get_ref()
                .iter()
                .map(|(field, weight)| (field.get_ref().as_str(), *weight.get_ref()))
                .collect(),
            None => DEFAULT_COMPLETENESS.to_vec(),
        }
    }

    /// The ICP rules in playbook order; the first whose conditions all hold decides the tier.
    pub fn icp_rules(&self) -> &[IcpRule] {
        &self.icp
    }
}

impl SourceRules {
    pub fn required(&self) -> impl Iterator<Item = Requirement<'_>> {
        self.required.iter().map(|r| Requirement(r.get_ref()))
    }

    /// Domains blocked for this source on top of the global list.
    pub fn blocked_email_domains(&self) -> impl Iterator<Item = &str> {
        self.blocked_email_domains
            .iter()
            .map(|d| d.get_ref().as_str())
    }
}

impl<'a> Requirement<'a> {
    /// The field paths of which at least one must be present, in the order written.
    pub fn alternatives(self) -> impl Iterator<Item = &'a str> {
        self.0.split('|').map(str::trim)
    }

    /// The entry as written, e.g. `contact.email|contact.phone`.
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

impl IcpRule {
    pub fn tier(&self) -> IcpTier {
        match self.tier.get_ref() {
            TierName::A => IcpTier::A,
            TierName::B => IcpTier::B,
            TierName::C => IcpTier::C,
        }
    }

    /// The conditions that must all hold; none means the rule matches every lead.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition> {
        self.when.iter().map(Spanned::get_ref)
    }
}

impl Condition {
    /// Field path the tests apply to, e.g. `attributes.employees`.
    pub fn field(&self) -> &str {
        self.field.get_ref()
    }

    /// Holds when the value equals one of these, ignoring case.
    pub fn any_of(&self) -> Option<&[String]> {
        self.any_of.as_ref().map(|v| v.get_ref().as_slice())
    }

    /// Holds when the value contains one of these, ignoring case.
    pub fn contains_any(&self) -> Option<&[String]> {
        self.contains_any.as_ref().map(|v| v.get_ref().as_slice())
    }

    /// Holds when the value is a number of at least this.
    pub fn min(&self) -> Option<f64> {
        self.min.as_ref().map(|v| *v.get_ref())
    }

    /// Holds when the value is a number of at most this.
    pub fn max(&self) -> Option<f64> {
        self.max.as_ref().map(|v| *v.get_ref())
    }

    /// Holds when the value's presence (non-blank) is this.
    pub fn present(&self) -> Option<bool> {
        self.present
    }
}

impl Section for IntakePlaybook {
    const NAME: &'static str = "intake";

    fn validate(&self) -> Vec<SpannedError> {
        let mut errors = Vec::new();
        check_domains(&self.blocked_email_domains, &mut errors);

        for (name, rules) in &self.sources {
            let text = name.get_ref();
            if text.trim().is_empty() || text.trim() != text {
                errors.push(SpannedError::at(
                    name.span(),
                    "source names cannot be blank or start or end with spaces: submissions are \
                     trimmed and would never match",
                ));
            } else if text.chars().count() > SOURCE_NAME_MAX {
                errors.push(SpannedError::at(
                    name.span(),
                    format!("source names are at most {SOURCE_NAME_MAX} characters long"),
                ));
            }
            for requirement in &rules.required {
                for path in Requirement(requirement.get_ref()).alternatives() {
                    if path.is_empty() {
                        errors.push(SpannedError::at(
                            requirement.span(),
                            "empty field path in required; write `a` or alternatives `a|b`",
                        ));
                    } else if !is_known_field(path) {
                        errors.push(unknown_field(requirement.span(), path));
                    }
                }
            }
            check_domains(&rules.blocked_email_domains, &mut errors);
        }

        if let Some(weights) = &self.completeness {
            if weights.get_ref().is_empty() {
                errors.push(SpannedError::at(
                    weights.span(),
                    "completeness needs at least one weight; remove the table to use the defaults",
                ));
            }
            for (field, weight) in weights.get_ref() {
                if !is_known_field(field.get_ref()) {
                    errors.push(unknown_field(field.span(), field.get_ref()));
                }
                if !(1..=100).contains(weight.get_ref()) {
                    errors.push(SpannedError::at(
                        weight.span(),
                        format!(
                            "completeness weight of {} must be between 1 and 100 (leave a field \
                             out to not count it)",
                            field.get_ref()
                        ),
                    ));
                }
            }
        }

        let mut catch_all = false;
        for rule in &self.icp {
            if catch_all {
                errors.push(SpannedError::at(
                    rule.tier.span(),
                    "this ICP rule can never match: an earlier rule without conditions matches \
                     every lead",
                ));
            }
            catch_all |= rule.when.is_empty();
            for condition in &rule.when {
                check_condition(condition, &mut errors);
            }
        }
        // Sources are checked in name order; operators read the errors top to bottom.
        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |span| span.start));
        errors
    }
}

fn check_condition(condition: &Spanned<Condition>, errors: &mut Vec<SpannedError>) {
    let c = condition.get_ref();
    let field = c.field.get_ref();
    if !is_known_field(field) {
        errors.push(unknown_field(c.field.span(), field));
    }
    if c.any_of.is_none()
        && c.contains_any.is_none()
        && c.min.is_none()
        && c.max.is_none()
        && c.present.is_none()
    {
        errors.push(SpannedError::at(
            condition.span(),
            format!(
                "condition on {field} tests nothing; give any_of, contains_any, min, max or present"
            ),
        ));
    }
    if let Some(values) = &c.any_of
        && values.get_ref().is_empty()
    {
        errors.push(SpannedError::at(
            values.span(),
            "any_of needs at least one value",
        ));
    }
    if let Some(values) = &c.contains_any {
        if values.get_ref().is_empty() {
            errors.push(SpannedError::at(
                values.span(),
                "contains_any needs at least one value",
            ));
        } else if values.get_ref().iter().any(|v| v.trim().is_empty()) {
            errors.push(SpannedError::at(
                values.span(),
                "contains_any values cannot be blank: every text contains the empty text",
            ));
        }
    }
    for bound in [&c.min, &c.max].into_iter().flatten() {
        if !bound.get_ref().is_finite() {
            errors.push(SpannedError::at(
                bound.span(),
                "min and max must be finite numbers",
            ));
        }
    }
    if let (Some(min), Some(max)) = (&c.min, &c.max)
        && min.get_ref() > max.get_ref()
    {
        errors.push(SpannedError::at(
            min.span(),
            format!(
                "min {} is greater than max {}; no value can match",
                min.get_ref(),
                max.get_ref()
            ),
        ));
    }
}

fn check_domains(domains: &[Spanned<String>], errors: &mut Vec<SpannedError>) {
    for domain in domains {
        let d = domain.get_ref();
        let bare = !d.is_empty()
            && !d.contains('@')
            && !d.starts_with('.')
            && !d.ends_with('.')
            && !d.chars().any(char::is_whitespace);
        if !bare {
            errors.push(SpannedError::at(
                domain.span(),
                "blocked_email_domains entries are bare domains such as mailinator.com (their \
                 subdomains are blocked too)",
            ));
        }
    }
}

fn unknown_field(span: std::ops::Range<usize>, path: &str) -> SpannedError {
    SpannedError::at(
        span,
        format!(
            "unknown field path `{path}`; use a path such as contact.company, source.utm.campaign, \
             intent.kind or attributes.<name>"
        ),
    )
}

fn duplicate_window<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SignedDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duplicate_window(&text).map_err(serde::de::Error::custom)
}

fn parse_duplicate_window(text: &str) -> Result<SignedDuration, String> {
    let window = humantime::parse_duration(text).map_err(|e| {
        format!(
            "duplicate_window {text:?} is not a duration ({e}); write it like \"30d\" or \"72h\""
        )
    })?;
    if window.is_zero() || window > MAX_DUPLICATE_WINDOW {
        return Err(format!(
            "duplicate_window must be longer than zero and at most 3650d, not {text:?}"
        ));
    }
    SignedDuration::try_from(window).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::playbook::parse;

    const SAMPLE: &str = include_str!("../../../deploy/playbook.toml");

    fn err(text: &str) -> String {
        parse::<IntakePlaybook>("p.toml", text)
            .unwrap_err()
            .to_string()
    }

    /// Asserts the error text has exactly one problem, at `line:col`, mentioning `needle`.
    #[track_caller]
    fn assert_error(text: &str, line_col: &str, needle: &str) {
        let e = err(text);
        assert_eq!(
            e.matches("\n  p.toml").count(),
            1,
            "expected one problem: {e}"
        );
        assert!(
            e.contains(&format!("p.toml:{line_col}: ")),
            "expected at {line_col}: {e}"
        );
        assert!(e.contains(needle), "expected {needle:?}: {e}");
    }

    #[test]
    fn the_sample_playbook_parses() {
        let pb: IntakePlaybook = parse("deploy/playbook.toml", SAMPLE).unwrap();
        assert_eq!(pb.duplicate_window(), SignedDuration::from_hours(30 * 24));
        assert_eq!(pb.unknown_sources(), UnknownSources::Reject);
        assert!(pb.blocked_email_domains().any(|d| d == "mailinator.com"));
        let names: Vec<_> = pb.sources().map(|(name, _)| name).collect();
        for name in [
            "website-demo-form",
            "pricing-page-chat",
            "event-badge-scan",
            "webinar",
            "content-download",
            "partner-referral",
            "csv-import",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let badge = pb.source("event-badge-scan").unwrap();
        let required: Vec<Vec<&str>> = badge
            .required()
            .map(|r| r.alternatives().collect())
            .collect();
        assert!(
            required.contains(&vec!["contact.email", "contact.phone"]),
            "{required:?}"
        );
        let tiers: Vec<_> = pb.icp_rules().iter().map(IcpRule::tier).collect();
        assert!(
            tiers.contains(&IcpTier::A)
                && tiers.contains(&IcpTier::B)
                && tiers.contains(&IcpTier::C)
        );
        let total: u32 = pb.completeness_weights().iter().map(|(_, w)| w).sum();
        assert!(total > 0);
    }

    #[test]
    fn an_absent_section_is_the_default() {
        let pb: IntakePlaybook = parse("p.toml", "[routing]\nx = 1\n").unwrap();
        assert_eq!(pb.duplicate_window(), SignedDuration::from_hours(30 * 24));
        assert_eq!(pb.unknown_sources(), UnknownSources::Accept);
        assert_eq!(pb.completeness_weights(), DEFAULT_COMPLETENESS.to_vec());
        assert!(pb.icp_rules().is_empty() && pb.sources().next().is_none());
        let empty: IntakePlaybook = parse("p.toml", "[intake]\n").unwrap();
        assert_eq!(empty.duplicate_window(), pb.duplicate_window());
    }

    #[test]
    fn every_setting_is_read() {
        let text = r#"
[intake]
duplicate_window = "12h"
unknown_sources = "reject"
blocked_email_domains = ["mailinator.com", "Example.org"]

[intake.sources.webinar]
required = ["contact.company", " contact.email | contact.phone "]
blocked_email_domains = ["gmail.com"]

[intake.completeness]
"contact.email" = 60
"attributes.employees" = 40

[[intake.icp]]
tier = "B"
when = [{ field = "attributes.employees", min = 50, max = 199.5, present = true },
        { field = "contact.title", contains_any = ["head", "vp"], any_of = ["CTO"] }]

[[intake.icp]]
tier = "C"
"#;
        let pb: IntakePlaybook = parse("p.toml", text).unwrap();
        assert_eq!(pb.duplicate_window(), SignedDuration::from_hours(12));
        assert_eq!(
            pb.blocked_email_domains().collect::<Vec<_>>(),
            ["mailinator.com", "Example.org"]
        );
        let webinar = pb.source("webinar").unwrap();
        assert!(pb.source("Webinar").is_none());
        let required: Vec<Vec<&str>> = webinar
            .required()
            .map(|r| r.alternatives().collect())
            .collect();
        assert_eq!(
            required,
            [
                vec!["contact.company"],
                vec!["contact.email", "contact.phone"]
            ]
        );
        assert_eq!(
            webinar.blocked_email_domains().collect::<Vec<_>>(),
            ["gmail.com"]
        );
        assert_eq!(
            pb.completeness_weights(),
            [("attributes.employees", 40), ("contact.email", 60)]
        );
        let rules = pb.icp_rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].tier(), IcpTier::B);
        let c: Vec<&Condition> = rules[0].conditions().collect();
        assert_eq!(c[0].field(), "attributes.employees");
        assert_eq!(
            (c[0].min(), c[0].max(), c[0].present()),
            (Some(50.0), Some(199.5), Some(true))
        );
        assert_eq!(c[1].contains_any().unwrap(), ["head", "vp"]);
        assert_eq!(c[1].any_of().unwrap(), ["CTO"]);
        assert_eq!(rules[1].tier(), IcpTier::C);
        assert_eq!(rules[1].conditions().count(), 0);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        assert_error(
            "[intake]\nduplicate_window = \"1d\"\nduplicate_windw = \"2d\"\n",
            "3:1",
            "unknown field `duplicate_windw`",
        );
        assert_error(
            "[intake.sources.webinar]\nrequired = []\nrequires = []\n",
            "3:1",
            "unknown field `requires`",
        );
        assert_error(
            "[intake]\n\n[[intake.icp]]\ntier = \"A\"\nname = \"x\"\n",
            "5:1",
            "unknown field `name`",
        );
        assert_error(
            "[intake]\nicp = [{ tier = \"A\", when = [{ field = \"contact.country\", one_of = [\"DE\"] }] }]\n",
            "2:59",
            "unknown field `one_of`",
        );
    }

    #[test]
    fn bad_values_are_rejected_with_their_line() {
        assert_error(
            "[intake]\n\nunknown_sources = \"drop\"\n",
            "3:19",
            "unknown variant `drop`",
        );
        assert_error(
            "[intake]\n[[intake.icp]]\ntier = \"D\"\n",
            "3:8",
            "unknown variant `D`",
        );
        assert_error(
            "[intake]\n[[intake.icp]]\ntier = \"Outside\"\n",
            "3:8",
            "unknown variant `Outside`",
        );
        assert_error(
            "[intake.completeness]\n\"contact.name\" = -5\n",
            "2:18",
            "integer `-5`",
        );
    }

    #[test]
    fn an_invalid_duration_points_at_the_value() {
        assert_error(
            "[intake]\n\nduplicate_window = \"30 dayz\"\n",
            "3:20",
            "not a duration",
        );
        assert_error(
            "[intake]\nduplicate_window = \"0s\"\n",
            "2:20",
            "longer than zero",
        );
        assert_error(
            "[intake]\nduplicate_window = \"3651d\"\n",
            "2:20",
            "at most 3650d",
        );
        assert_error(
            "[intake]\nduplicate_window = 30\n",
            "2:20",
            "expected a string",
        );
    }

    #[test]
    fn unknown_field_paths_point_at_the_path() {
        assert_error(
            "[intake.sources.webinar]\nrequired = [\"contact.company\",\n  \"contact.mail|contact.phone\"]\n",
            "3:3",
            "unknown field path `contact.mail`",
        );
        assert_error(
            "[intake.sources.webinar]\nrequired = [\"contact.email|\"]\n",
            "2:13",
            "empty field path",
        );
        assert_error(
            "[intake.completeness]\n\"contact.name\" = 10\n\"contact.fax\" = 5\n",
            "3:1",
            "unknown field path `contact.fax`",
        );
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [\n  { field = \"attributes.employees\", min = 10 },\n  { field = \"company.size\", min = 10 },\n]\n",
            "5:13",
            "unknown field path `company.size`",
        );
    }

    #[test]
    fn conditions_must_test_something_sensible() {
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [\n  { field = \"contact.country\" },\n]\n",
            "4:3",
            "condition on contact.country tests nothing",
        );
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"attributes.employees\", min = 5000, max = 200 }]\n",
            "3:49",
            "min 5000 is greater than max 200",
        );
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"contact.country\", any_of = [] }]\n",
            "3:47",
            "any_of needs at least one value",
        );
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"contact.title\", contains_any = [\"\"] }]\n",
            "3:51",
            "contains_any values cannot be blank",
        );
        assert_error(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"attributes.employees\", max = nan }]\n",
            "3:49",
            "finite",
        );
    }

    #[test]
    fn completeness_weights_are_between_1_and_100() {
        assert_error(
            "[intake.completeness]\n\"contact.name\" = 0\n",
            "2:18",
            "between 1 and 100",
        );
        assert_error(
            "[intake.completeness]\n\"contact.name\" = 50\n\"contact.email\" = 101\n",
            "3:19",
            "between 1 and 100",
        );
        assert_error(
            "[intake]\ncompleteness = {}\n",
            "2:16",
            "at least one weight",
        );
    }

    #[test]
    fn rules_after_a_catch_all_are_unreachable() {
        assert_error(
            "[[intake.icp]]\ntier = \"C\"\n\n[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"contact.country\", present = true }]\n",
            "5:8",
            "can never match",
        );
    }

    #[test]
    fn source_names_and_blocked_domains_must_be_usable() {
        assert_error("[intake.sources.\" webinar\"]\n", "1:17", "cannot be blank");
        assert_error("[intake.sources.\"\"]\n", "1:17", "cannot be blank");
        assert_error(
            &format!("[intake.sources.{}]\n", "s".repeat(129)),
            "1:17",
            "at most 128 characters",
        );
        assert_error(
            "[intake]\nblocked_email_domains = [\"ok.com\", \"@mailinator.com\"]\n",
            "2:36",
            "bare domains",
        );
        assert_error(
            "[intake.sources.webinar]\nblocked_email_domains = [\"gmail.com \"]\n",
            "2:26",
            "bare domains",
        );
    }

    #[test]
    fn all_semantic_errors_are_reported_together() {
        let e = err(
            "[intake.sources.webinar]\nrequired = [\"contact.nme\"]\n\n[intake.completeness]\n\"contact.name\" = 0\n",
        );
        assert!(
            e.contains("p.toml:2:13: unknown field path `contact.nme`"),
            "{e}"
        );
        assert!(
            e.contains("p.toml:5:18: completeness weight of contact.name"),
            "{e}"
        );

        // in file order, although sources are kept by name
        let e = err(
            "[intake.sources.zeta]\nrequired = [\"x\"]\n[intake.sources.alpha]\nrequired = [\"y\"]\n",
        );
        let zeta = e.find("p.toml:2:").expect(&e);
        let alpha = e.find("p.toml:4:").expect(&e);
        assert!(zeta < alpha, "{e}");
    }

    #[test]
    fn duplicate_window_accepts_humantime_units() {
        assert_eq!(
            parse_duplicate_window("2weeks").unwrap(),
            SignedDuration::from_hours(14 * 24)
        );
        assert_eq!(
            parse_duplicate_window("1d 12h").unwrap(),
            SignedDuration::from_hours(36)
        );
        assert_eq!(
            parse_duplicate_window("3650d").unwrap(),
            SignedDuration::from_hours(3650 * 24)
        );
    }
}
