//! The `[proof]` table of the playbook: the proof catalog, how far apart proof goes out to one
//! lead, how long a delivery has to show it worked, and how boldly new or uncertain assets are
//! tried. The rules that apply them live in [`crate::domain`].
//!
//! Operators edit this in git, so every value that can be wrong keeps its place in the file
//! and [`Section::validate`] reports `file:line:col` for each problem, all of them at once.
//! Durations are parsed while reading, but a bad one is kept as an error rather than failing
//! the read, for the same reason.
//!
//! Every key has a default, so a small playbook names only what it changes. A playbook without
//! assets is valid (the default); the catalog is then whatever is added at run time.

use std::collections::BTreeSet;

use jiff::SignedDuration;
use runtime::playbook::{Section, SpannedError};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::domain::asset::{id_problem, url_problem};
use crate::domain::{Asset, AssetKind, Checkpoint, Prior, Stage, Tag};

/// The longest duration accepted: beyond a year a window means nothing, and the bound keeps
/// timestamp arithmetic far from overflowing.
const MAX_DAYS: u64 = 365;
/// The largest prior pseudo-count: beyond it no amount of evidence would move a new asset.
const MAX_PRIOR: f64 = 1000.0;

/// The `[proof]` section of the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofPlaybook {
    /// `spacing`: the least time between two deliveries to one lead; NextProof answers "wait
    /// until" before it has passed (an objection raised since the last delivery is answered
    /// at once: proof asked for is not noise). Default `"3d"`; `"0s"` turns spacing off.
    #[serde(default = "default_spacing")]
    spacing: Parsed,
    /// `outcome_window`: how long after a delivery a belief advance, a positive or neutral
    /// reply or a meeting counts as its success; a delivery without one by then failed.
    /// Default `"7d"`; longer than zero.
    #[serde(default = "default_outcome_window")]
    outcome_window: Parsed,
    /// `tag_bonus`: what each of the lead's tags an asset names (segment, industry, persona)
    /// adds to its score, so specific proof ranks above generic proof that does as well.
    /// Default 0.1; between 0 and 1.
    #[serde(default = "default_tag_bonus")]
    tag_bonus: Spanned<f64>,
    /// `[proof.exploration]`.
    #[serde(default)]
    exploration: Exploration,
    /// `[[proof.assets]]`: the catalog.
    #[serde(default)]
    assets: Vec<AssetEntry>,
}

/// What a playbook without a `[proof]` table reads as: every default and no assets.
impl Default for ProofPlaybook {
    fn default() -> Self {
        Self {
            spacing: default_spacing(),
            outcome_window: default_outcome_window(),
            tag_bonus: default_tag_bonus(),
            exploration: Exploration::default(),
            assets: Vec::new(),
        }
    }
}

fn default_spacing() -> Parsed {
    Parsed::built_in("3d")
}

fn default_outcome_window() -> Parsed {
    Parsed::built_in("7d")
}

fn default_tag_bonus() -> Spanned<f64> {
    unplaced(0.1)
}

/// A built-in value, not from the file. Built-ins are valid, so its empty span never ends up
/// in an error.
fn unplaced<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// `[proof.exploration]`: how Thompson sampling treats assets it knows little about. Each
/// asset's record in a context reads as `Beta(successes + prior_successes, failures +
/// prior_failures)` (defaults 1 and 1: a new asset starts at an even chance, so it gets tried,
/// and fades as failures come in). `max_deviation` bounds exploration: a draw may stray from
/// the asset's mean by at most this much (default 1.0: plain Thompson sampling; 0: rank by the
/// mean alone). Priors are above 0 and at most 1000; `max_deviation` is between 0 and 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exploration {
    prior_successes: Spanned<f64>,
    prior_failures: Spanned<f64>,
    max_deviation: Spanned<f64>,
}

impl Default for Exploration {
    fn default() -> Self {
        Self {
            prior_successes: unplaced(1.0),
            prior_failures: unplaced(1.0),
            max_deviation: unplaced(1.0),
        }
    }
}

/// One `[[proof.assets]]` entry.
///
/// - `id`: non-empty, no spaces, unique; deliveries and effectiveness refer to it.
/// - `title`: what the owner sees.
/// - `kind`: `case_study`, `testimonial`, `roi_calculator`, `security_pack`, `demo_video`,
///   `reference_call` or `benchmark`.
/// - `stage`: the belief stage it builds: `problem_awareness`, `mechanism_understanding` or
///   `capability_trust`.
/// - `checkpoints`: the fear checkpoints it answers (`price`, `implementation_effort`,
///   `risk_of_failure`, `security_compliance`, `switching_cost`, `internal_buy_in`); default
///   none.
/// - `segments`, `industries`, `personas`: who it is for; empty (the default) fits every lead.
/// - `url`: optional web link.
/// - `active`: default true; an inactive asset is never recommended.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    id: Spanned<String>,
    title: Spanned<String>,
    kind: AssetKind,
    stage: Stage,
    #[serde(default)]
    checkpoints: Vec<Spanned<Checkpoint>>,
    #[serde(default)]
    segments: Vec<Spanned<String>>,
    #[serde(default)]
    industries: Vec<Spanned<String>>,
    #[serde(default)]
    personas: Vec<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default = "active_by_default")]
    active: bool,
}

fn active_by_default() -> bool {
    true
}

/// A playbook duration (humantime: `"3d"`, `"36h"`, `"1w"`), parsed when read. One that does
/// not parse keeps its error (reported by `validate` with its place, alongside every other
/// problem) and reads as a day, so nothing downstream can panic on it.
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
                value: SignedDuration::from_hours(24),
                error: Some(error),
            },
        }
    }

    fn built_in(text: &str) -> Self {
        Self::new(unplaced(text.to_owned()))
    }

    /// Reports a parse error, and a zero duration unless `zero_ok`.
    fn check(&self, key: &str, zero_ok: bool, errors: &mut Vec<SpannedError>) {
        let text = self.text.get_ref();
        if let Some(error) = &self.error {
            errors.push(SpannedError::at(self.text.span(), format!("{key} {error}")));
        } else if !zero_ok && self.value.is_zero() {
            errors.push(SpannedError::at(
                self.text.span(),
                format!("{key} {text:?} must be longer than zero"),
            ));
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
        format!("{text:?} is not a duration ({e}); write it like \"3d\", \"36h\" or \"1w\"")
    })?;
    if duration.as_secs() > MAX_DAYS * 86_400 {
        return Err(format!("{text:?} is longer than {MAX_DAYS} days"));
    }
    SignedDuration::try_from(duration).map_err(|e| format!("{text:?}: {e}"))
}

impl ProofPlaybook {
    /// The least time between two deliveries to one lead.
    pub fn spacing(&self) -> SignedDuration {
        self.spacing.value
    }

    /// How long after a delivery its success may show.
    pub fn outcome_window(&self) -> SignedDuration {
        self.outcome_window.value
    }

    /// What each matching tag adds to an asset's score.
    pub fn tag_bonus(&self) -> f64 {
        *self.tag_bonus.get_ref()
    }

    /// The pseudo-counts every asset's record starts from.
    pub fn prior(&self) -> Prior {
        Prior {
            successes: *self.exploration.prior_successes.get_ref(),
            failures: *self.exploration.prior_failures.get_ref(),
        }
    }

    /// How far an asset's Thompson draw may stray from its mean.
    pub fn max_deviation(&self) -> f64 {
        *self.exploration.max_deviation.get_ref()
    }

    /// The playbook's catalog, in file order.
    pub fn assets(&self) -> Vec<Asset> {
        self.assets.iter().map(AssetEntry::asset).collect()
    }

    /// The playbook's asset with this id.
    pub fn asset(&self, id: &str) -> Option<Asset> {
        self.assets
            .iter()
            .find(|a| a.id.get_ref() == id)
            .map(AssetEntry::asset)
    }
}

impl AssetEntry {
    /// The catalog entry.
    pub fn asset(&self) -> Asset {
        let strings =
            |v: &[Spanned<String>]| v.iter().map(|s| s.get_ref().trim().to_owned()).collect();
        Asset {
            id: self.id.get_ref().clone(),
            title: self.title.get_ref().trim().to_owned(),
            kind: self.kind,
            stage: self.stage,
            checkpoints: self.checkpoints.iter().map(|c| *c.get_ref()).collect(),
            segments: strings(&self.segments),
            industries: strings(&self.industries),
            personas: strings(&self.personas),
            url: self.url.as_ref().map(|u| u.get_ref().trim().to_owned()),
            active: self.active,
        }
    }

    fn tags(&self, tag: Tag) -> &[Spanned<String>] {
        match tag {
            Tag::Segment => &self.segments,
            Tag::Industry => &self.industries,
            Tag::Persona => &self.personas,
        }
    }
}

impl Section for ProofPlaybook {
    const NAME: &'static str = "proof";

    fn validate(&self) -> Vec<SpannedError> {
        let mut errors = Vec::new();
        self.spacing.check("spacing", true, &mut errors);
        self.outcome_window
            .check("outcome_window", false, &mut errors);
        fraction(&self.tag_bonus, "tag_bonus", &mut errors);
        let e = &self.exploration;
        for (key, value) in [
            ("exploration prior_successes", &e.prior_successes),
            ("exploration prior_failures", &e.prior_failures),
        ] {
            let v = *value.get_ref();
            if !v.is_finite() || v <= 0.0 || v > MAX_PRIOR {
                errors.push(SpannedError::at(
                    value.span(),
                    format!("{key} must be above 0 and at most {MAX_PRIOR}, not {v}"),
                ));
            }
        }
        fraction(&e.max_deviation, "exploration max_deviation", &mut errors);

        let mut ids = BTreeSet::new();
        for asset in &self.assets {
            check_asset(asset, &mut ids, &mut errors);
        }
        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |span| span.start));
        errors
    }
}

/// Checks a number between 0 and 1.
fn fraction(value: &Spanned<f64>, key: &str, errors: &mut Vec<SpannedError>) {
    let v = *value.get_ref();
    if !(0.0..=1.0).contains(&v) {
        errors.push(SpannedError::at(
            value.span(),
            format!("{key} must be between 0 and 1, not {v}"),
        ));
    }
}

fn check_asset<'a>(
    asset: &'a AssetEntry,
    ids: &mut BTreeSet<&'a str>,
    errors: &mut Vec<SpannedError>,
) {
    let id = asset.id.get_ref().as_str();
    if let Some(problem) = id_problem(id) {
        errors.push(SpannedError::at(asset.id.span(), problem));
    } else if !ids.insert(id) {
        errors.push(SpannedError::at(
            asset.id.span(),
            format!("asset id {id:?} is defined twice"),
        ));
    }
    if asset.title.get_ref().trim().is_empty() {
        errors.push(SpannedError::at(
            asset.title.span(),
            format!("asset {id:?} needs a title"),
        ));
    }
    for (i, checkpoint) in asset.checkpoints.iter().enumerate() {
        let value = checkpoint.get_ref();
        if asset.checkpoints[..i].iter().any(|c| c.get_ref() == value) {
            errors.push(SpannedError::at(
                checkpoint.span(),
                format!("asset {id:?} lists checkpoint {value} twice"),
            ));
        }
    }
    for tag in Tag::ALL.iter().copied() {
        for value in asset.tags(tag) {
            if value.get_ref().trim().is_empty() {
                errors.push(SpannedError::at(
                    value.span(),
                    format!(
                        "asset {id:?} has a blank {tag} tag; leave the list empty to fit every lead"
                    ),
                ));
            }
        }
    }
    if let Some(url) = &asset.url
        && let Some(problem) = url_problem(url.get_ref())
    {
        errors.push(SpannedError::at(url.span(), problem));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::playbook::parse;

    /// A realistic `[proof]` table, every key set; deploy/playbook.toml carries a copy.
    pub const EXAMPLE: &str = r#"[proof]
# At most one unsolicited proof per lead every 2 days: proof before the concern is noise.
# An objection raised since the last delivery is answered at once.
spacing = "2d"
# A belief advance, a positive or neutral reply, or a meeting within 10 days of a delivery
# counts as its success; none by then counts as a failure.
outcome_window = "10d"
# Each of the lead's segment / industry / persona an asset names adds this to its score.
tag_bonus = 0.1

[proof.exploration]
# Every asset starts as Beta(1, 1): a new asset gets tried, a weak one fades.
prior_successes = 1.0
prior_failures = 1.0
# A Thompson draw may stray from the asset's mean by at most this much (1.0: plain
# sampling, 0: always the best mean).
max_deviation = 0.5

# --- problem awareness: the buyer sees the problem and that it is worth solving ---

[[proof.assets]]
id = "benchmark-cost-of-slow-follow-up"
title = "Benchmark: what slow lead follow-up costs a B2B pipeline"
kind = "benchmark"
stage = "problem_awareness"
url = "https://example.com/proof/cost-of-slow-follow-up"

[[proof.assets]]
id = "testimonial-logistics-pipeline-leak"
title = "\"We were losing a third of our demo requests\": a logistics VP of sales"
kind = "testimonial"
stage = "problem_awareness"
industries = ["logistics"]

# --- mechanism understanding: how the product solves it ---

[[proof.assets]]
id = "demo-routing-in-five-minutes"
title = "Demo video: from form fill to a called lead in five minutes"
kind = "demo_video"
stage = "mechanism_understanding"
checkpoints = ["implementation_effort"]
url = "https://example.com/proof/demo-routing"

[[proof.assets]]
id = "roi-calculator-finance"
title = "ROI calculator: pipeline recovered against licence cost"
kind = "roi_calculator"
stage = "mechanism_understanding"
checkpoints = ["price"]
personas = ["cfo", "vp_finance"]
url = "https://example.com/proof/roi"

[[proof.assets]]
id = "case-study-acme-freight"
title = "Acme Freight: live in nine days, replacing a homegrown router"
kind = "case_study"
stage = "mechanism_understanding"
checkpoints = ["implementation_effort", "switching_cost"]
segments = ["mid_market"]
industries = ["logistics"]

[[proof.assets]]
id = "demo-crm-migration"
title = "Demo video: moving cadences over from your current CRM"
kind = "demo_video"
stage = "mechanism_understanding"
checkpoints = ["switching_cost"]

[[proof.assets]]
id = "case-study-clinic-group-roi"
title = "Clinic group: payback in one quarter (retired: figures out of date)"
kind = "case_study"
stage = "mechanism_understanding"
checkpoints = ["price"]
industries = ["healthcare"]
active = false

# --- capability trust: this vendor can deliver it for them ---

[[proof.assets]]
id = "security-pack-enterprise"
title = "Security pack: SOC 2 Type II, pen test summary, DPA, SSO and audit logs"
kind = "security_pack"
stage = "capability_trust"
checkpoints = ["security_compliance"]
segments = ["enterprise"]
url = "https://example.com/trust/enterprise"

[[proof.assets]]
id = "security-overview"
title = "Security overview: how lead data is stored, encrypted and erased"
kind = "security_pack"
stage = "capability_trust"
checkpoints = ["security_compliance"]
url = "https://example.com/trust"

[[proof.assets]]
id = "reference-call-enterprise"
title = "Reference call with a customer's head of revenue operations"
kind = "reference_call"
stage = "capability_trust"
checkpoints = ["risk_of_failure", "internal_buy_in"]
segments = ["enterprise"]

[[proof.assets]]
id = "benchmark-uptime-and-latency"
title = "Twelve months of uptime and routing latency, independently measured"
kind = "benchmark"
stage = "capability_trust"
checkpoints = ["risk_of_failure"]

[[proof.assets]]
id = "testimonial-ops-lead-buy-in"
title = "How three ops leads won their CFO and IT over"
kind = "testimonial"
stage = "capability_trust"
checkpoints = ["internal_buy_in"]
personas = ["ops_lead", "revops"]

[[proof.assets]]
id = "case-study-regional-bank"
title = "Regional bank: passed vendor risk review and went live in a quarter"
kind = "case_study"
stage = "capability_trust"
checkpoints = ["risk_of_failure", "security_compliance"]
segments = ["enterprise"]
industries = ["financial_services"]
"#;

    pub(crate) fn example() -> ProofPlaybook {
        parse("p.toml", EXAMPLE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `EXAMPLE` with `from` (which must occur once) replaced by `to`; an empty `from`
    /// appends.
    fn edit(from: &str, to: &str) -> String {
        if from.is_empty() {
            return format!("{EXAMPLE}{to}");
        }
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
        testkit::assert_playbook_error::<ProofPlaybook>(marked, needle);
    }

    #[test]
    fn the_example_parses_with_every_key() {
        let pb = example();
        assert_eq!(pb.spacing(), SignedDuration::from_hours(48));
        assert_eq!(pb.outcome_window(), SignedDuration::from_hours(240));
        assert_eq!(pb.tag_bonus(), 0.1);
        assert_eq!(
            pb.prior(),
            Prior {
                successes: 1.0,
                failures: 1.0
            }
        );
        assert_eq!(pb.max_deviation(), 0.5);

        let assets = pb.assets();
        assert_eq!(assets.len(), 13);
        // The sample covers every kind, stage and checkpoint.
        for kind in AssetKind::ALL {
            assert!(assets.iter().any(|a| a.kind == *kind), "{kind}");
        }
        for stage in Stage::ALL {
            assert!(assets.iter().any(|a| a.stage == *stage), "{stage}");
        }
        for checkpoint in Checkpoint::ALL {
            assert!(
                assets.iter().any(|a| a.answers(*checkpoint)),
                "{checkpoint}"
            );
        }
        let roi = pb.asset("roi-calculator-finance").unwrap();
        assert_eq!(roi.kind, AssetKind::RoiCalculator);
        assert_eq!(roi.stage, Stage::MechanismUnderstanding);
        assert_eq!(roi.checkpoints, [Checkpoint::Price]);
        assert_eq!(roi.personas, ["cfo", "vp_finance"]);
        assert_eq!(roi.url.as_deref(), Some("https://example.com/proof/roi"));
        assert!(roi.active);
        assert!(!pb.asset("case-study-clinic-group-roi").unwrap().active);
        assert!(assets.iter().all(|a| a.validate().is_ok()));
    }

    #[test]
    fn the_default_is_valid_and_has_no_assets() {
        let pb = ProofPlaybook::default();
        assert!(pb.validate().is_empty(), "{:?}", pb.validate());
        assert!(pb.assets().is_empty());
        assert_eq!(pb.spacing(), SignedDuration::from_hours(72));
        assert_eq!(pb.outcome_window(), SignedDuration::from_hours(168));
        assert_eq!((pb.tag_bonus(), pb.max_deviation()), (0.1, 1.0));
        let absent: ProofPlaybook = parse("p.toml", "[followup]\nx = 1\n").unwrap();
        assert!(absent.assets().is_empty());
        let small: ProofPlaybook = parse(
            "p.toml",
            "[proof]\nspacing = \"0s\"\n[[proof.assets]]\nid = \"a\"\ntitle = \"A\"\n\
             kind = \"benchmark\"\nstage = \"problem_awareness\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.spacing(), SignedDuration::ZERO);
        assert_eq!(small.assets()[0].checkpoints, []);
        assert!(small.assets()[0].active);
    }

    #[test]
    fn assets_are_checked() {
        let cases = [
            (
                edit(
                    "id = \"security-overview\"",
                    "id = @@\"security-pack-enterprise\"",
                ),
                "asset id \"security-pack-enterprise\" is defined twice",
            ),
            (
                edit("id = \"security-overview\"", "id = @@\"security overview\""),
                "asset id \"security overview\" must be non-empty and without spaces",
            ),
            (
                edit("kind = \"reference_call\"", "kind = @@\"reference\""),
                "unknown variant `reference`",
            ),
            (
                edit(
                    "stage = \"capability_trust\"\ncheckpoints = [\"internal_buy_in\"]",
                    "stage = @@\"trust\"\ncheckpoints = [\"internal_buy_in\"]",
                ),
                "unknown variant `trust`",
            ),
            (
                edit(
                    "checkpoints = [\"switching_cost\"]\n",
                    "checkpoints = [@@\"switching\"]\n",
                ),
                "unknown variant `switching`",
            ),
            (
                edit(
                    "checkpoints = [\"risk_of_failure\", \"internal_buy_in\"]",
                    "checkpoints = [\"risk_of_failure\", @@\"risk_of_failure\"]",
                ),
                "lists checkpoint risk_of_failure twice",
            ),
            (
                edit(
                    "personas = [\"cfo\", \"vp_finance\"]",
                    "personas = [\"cfo\", @@\" \"]",
                ),
                "has a blank persona tag",
            ),
            (
                edit(
                    "url = \"https://example.com/trust\"\n",
                    "url = @@\"example.com/trust\"\n",
                ),
                "must be a web link starting with https://",
            ),
            (
                edit(
                    "title = \"Security overview: how lead data is stored, encrypted and erased\"",
                    "title = @@\"\"",
                ),
                "asset \"security-overview\" needs a title",
            ),
            (
                edit(
                    "kind = \"benchmark\"\nstage = \"problem_awareness\"",
                    "kind = \"benchmark\"\n@@stages = \"problem_awareness\"",
                ),
                "unknown field `stages`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn durations_and_numbers_are_checked() {
        let cases = [
            (
                edit("spacing = \"2d\"", "spacing = @@\"two days\""),
                "spacing \"two days\" is not a duration",
            ),
            (
                edit("outcome_window = \"10d\"", "outcome_window = @@\"0s\""),
                "outcome_window \"0s\" must be longer than zero",
            ),
            (
                edit("outcome_window = \"10d\"", "outcome_window = @@\"400d\""),
                "\"400d\" is longer than 365 days",
            ),
            (
                edit("tag_bonus = 0.1", "tag_bonus = @@1.5"),
                "tag_bonus must be between 0 and 1, not 1.5",
            ),
            (
                edit("prior_failures = 1.0", "prior_failures = @@0.0"),
                "exploration prior_failures must be above 0",
            ),
            (
                edit("max_deviation = 0.5", "max_deviation = @@-0.1"),
                "exploration max_deviation must be between 0 and 1",
            ),
            (
                edit("max_deviation = 0.5", "@@deviation = 0.5"),
                "unknown field `deviation`",
            ),
            (
                edit("spacing = \"2d\"", "spacing = @@2"),
                "invalid type: integer `2`, expected a string",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn all_problems_are_reported_together_in_file_order() {
        let text = EXAMPLE
            .replace("spacing = \"2d\"", "spacing = \"soon\"")
            .replace("tag_bonus = 0.1", "tag_bonus = 2.0")
            .replace("id = \"security-overview\"", "id = \"demo-crm-migration\"");
        let err = parse::<ProofPlaybook>("p.toml", &text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("  p.toml:4:11: spacing \"soon\""),
            "{err}"
        );
        assert!(lines[1].starts_with("  p.toml:9:13: tag_bonus"), "{err}");
        assert!(
            lines[2].contains("asset id \"demo-crm-migration\" is defined twice"),
            "{err}"
        );
    }
}
