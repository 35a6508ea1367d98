//! The proof catalog: the assets a lead can be given, what belief stage each serves, which
//! fear checkpoints it answers, and who it is for.
//!
//! The catalog is the playbook's `[[proof.assets]]` plus assets added at run time
//! (UpsertAsset). The playbook is what operators keep in git, so it is the source of truth for
//! its ids: a run-time upsert cannot override a playbook asset ([`check_upsert`]), and if a
//! playbook reload adds an id a run-time asset already had, the playbook's wins
//! ([`merge_catalog`]).
//!
//! Tags: an asset with no tags in a dimension (segment, industry, persona) fits every lead; an
//! asset with tags fits only a lead whose value is one of them, so a lead whose value is
//! unknown does not fit it (a CFO-only ROI calculator is not sent to someone we know nothing
//! about). More matching tags mean a more specific asset, which ranks higher.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Checkpoint, LeadProfile, ProofError, Stage, same, wire_enum};

/// The longest asset id accepted: ids travel in events and URLs.
const MAX_ID_LEN: usize = 100;

/// What form a piece of proof takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    CaseStudy,
    Testimonial,
    RoiCalculator,
    SecurityPack,
    DemoVideo,
    ReferenceCall,
    Benchmark,
}

wire_enum!(AssetKind, "asset kind", [
    CaseStudy => "case_study",
    Testimonial => "testimonial",
    RoiCalculator => "roi_calculator",
    SecurityPack => "security_pack",
    DemoVideo => "demo_video",
    ReferenceCall => "reference_call",
    Benchmark => "benchmark",
]);

/// A dimension an asset can be tagged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    Segment,
    Industry,
    Persona,
}

wire_enum!(Tag, "tag", [
    Segment => "segment",
    Industry => "industry",
    Persona => "persona",
]);

/// One piece of proof in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Stable id: non-empty, no spaces, unique in the catalog.
    pub id: String,
    pub title: String,
    pub kind: AssetKind,
    /// The belief stage it builds.
    pub stage: Stage,
    /// The fear checkpoints it answers; none for proof that only builds its stage.
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// Segments it is for; empty: every segment.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Industries it is for; empty: every industry.
    #[serde(default)]
    pub industries: Vec<String>,
    /// Personas it is for; empty: every persona.
    #[serde(default)]
    pub personas: Vec<String>,
    #[serde(default)]
    pub url: Option<String>,
    /// An inactive asset is kept (deliveries and effectiveness refer to it) but never
    /// recommended.
    #[serde(default = "active_by_default")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

/// How an asset fits a lead's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It fits; `matched` tags name the lead's segment, industry or persona (0 when the asset
    /// is untagged: it fits everyone).
    Fits { matched: u32 },
    /// It is for other leads: the first dimension whose tags the lead's value is not among.
    Mismatch {
        tag: Tag,
        wanted: Vec<String>,
        lead: String,
    },
}

impl Asset {
    /// The asset's tags in one dimension.
    pub fn tags(&self, tag: Tag) -> &[String] {
        match tag {
            Tag::Segment => &self.segments,
            Tag::Industry => &self.industries,
            Tag::Persona => &self.personas,
        }
    }

    /// Whether it answers a fear checkpoint.
    pub fn answers(&self, checkpoint: Checkpoint) -> bool {
        self.checkpoints.contains(&checkpoint)
    }

    /// How it fits a lead (see the module docs).
    pub fn fit(&self, profile: &LeadProfile) -> Fit {
        let mut matched = 0;
        for tag in Tag::ALL.iter().copied() {
            let wanted = self.tags(tag);
            if wanted.is_empty() {
                continue;
            }
            let lead = profile.value(tag);
            if !lead.trim().is_empty() && wanted.iter().any(|w| same(w, lead)) {
                matched += 1;
            } else {
                return Fit::Mismatch {
                    tag,
                    wanted: wanted.to_vec(),
                    lead: lead.trim().to_owned(),
                };
            }
        }
        Fit::Fits { matched }
    }

    /// Checks an asset that arrives at run time the way the playbook checks its own.
    pub fn validate(&self) -> Result<(), ProofError> {
        let invalid = |why: String| ProofError::InvalidAsset {
            id: self.id.clone(),
            why,
        };
        if let Some(why) = id_problem(&self.id) {
            return Err(invalid(why));
        }
        if self.title.trim().is_empty() {
            return Err(invalid("the title cannot be blank".into()));
        }
        if let Some(why) = duplicate_checkpoint(&self.checkpoints) {
            return Err(invalid(why));
        }
        for tag in Tag::ALL.iter().copied() {
            if self.tags(tag).iter().any(|t| t.trim().is_empty()) {
                return Err(invalid(format!(
                    "a {tag} tag cannot be blank; leave the {tag} tags empty to fit every lead"
                )));
            }
        }
        if let Some(why) = self.url.as_deref().and_then(url_problem) {
            return Err(invalid(why));
        }
        Ok(())
    }
}

/// What is wrong with an asset id, if anything.
pub(crate) fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        Some(format!(
            "asset id {id:?} must be non-empty and without spaces"
        ))
    } else if id.len() > MAX_ID_LEN {
        Some(format!("asset id must be at most {MAX_ID_LEN} bytes"))
    } else {
        None
    }
}

/// What is wrong with an asset url, if anything: owners click it, so it must be a web link.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => None,
        _ => Some(format!(
            "url {url:?} must be a web link starting with https:// (or http://)"
        )),
    }
}

/// A checkpoint listed twice, if any.
pub(crate) fn duplicate_checkpoint(checkpoints: &[Checkpoint]) -> Option<String> {
    checkpoints
        .iter()
        .enumerate()
        .find(|(i, c)| checkpoints[..*i].contains(c))
        .map(|(_, c)| format!("checkpoint {c} is listed twice"))
}

/// Checks an UpsertAsset: the asset is valid and its id is not one the playbook defines.
pub fn check_upsert(asset: &Asset, playbook: &[Asset]) -> Result<(), ProofError> {
    asset.validate()?;
    if playbook.iter().any(|a| a.id == asset.id) {
        return Err(ProofError::PlaybookAsset(asset.id.clone()));
    }
    Ok(())
}

/// The catalog in force: the playbook's assets in their order, then the run-time ones (in
/// the order given) whose ids the playbook does not define.
pub fn merge_catalog(playbook: Vec<Asset>, runtime: Vec<Asset>) -> Vec<Asset> {
    let mut catalog = playbook;
    let defined = catalog.len();
    for asset in runtime {
        if !catalog[..defined].iter().any(|a| a.id == asset.id) {
            catalog.push(asset);
        }
    }
    catalog
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fits { matched: 0 } => f.write_str("fits every lead"),
            Self::Fits { matched } => write!(f, "matches {matched} of the lead's tags"),
            Self::Mismatch { tag, wanted, lead } if lead.is_empty() => {
                write!(
                    f,
                    "for {tag} {}, and the lead's {tag} is unknown",
                    wanted.join(" or ")
                )
            }
            Self::Mismatch { tag, wanted, lead } => {
                write!(f, "for {tag} {}, not {lead}", wanted.join(" or "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::asset;

    #[test]
    fn untagged_fits_everyone_and_tags_must_match() {
        let lead = LeadProfile::new(" Enterprise ", "logistics", "");
        let any = asset("any", Stage::ProblemAwareness, &[]);
        assert_eq!(any.fit(&lead), Fit::Fits { matched: 0 });
        assert_eq!(any.fit(&LeadProfile::default()), Fit::Fits { matched: 0 });

        let mut both = any.clone();
        both.segments = vec!["enterprise".into(), "mid_market".into()];
        both.industries = vec!["LOGISTICS".into()];
        assert_eq!(both.fit(&lead), Fit::Fits { matched: 2 });

        let mut cfo = any.clone();
        cfo.personas = vec!["cfo".into()];
        let fit = cfo.fit(&lead);
        assert_eq!(
            fit,
            Fit::Mismatch {
                tag: Tag::Persona,
                wanted: vec!["cfo".into()],
                lead: String::new()
            }
        );
        assert_eq!(
            fit.to_string(),
            "for persona cfo, and the lead's persona is unknown"
        );

        let mut smb = any.clone();
        smb.segments = vec!["smb".into()];
        assert_eq!(
            smb.fit(&lead).to_string(),
            "for segment smb, not Enterprise"
        );
    }

    #[test]
    fn wire_names_round_trip_and_unknown_ones_say_what_is_accepted() {
        for kind in AssetKind::ALL {
            assert_eq!(kind.as_str().parse::<AssetKind>(), Ok(*kind));
        }
        assert_eq!(
            " Capability_Trust ".parse::<Stage>(),
            Ok(Stage::CapabilityTrust)
        );
        assert_eq!("internal_buy_in".parse(), Ok(Checkpoint::InternalBuyIn));
        let err = "whitepaper".parse::<AssetKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "asset kind \"whitepaper\" is not known; use one of case_study, testimonial, \
             roi_calculator, security_pack, demo_video, reference_call, benchmark"
        );
    }

    #[test]
    fn run_time_assets_are_checked_and_cannot_override_the_playbook() {
        let ok = asset(
            "roi-cfo",
            Stage::MechanismUnderstanding,
            &[Checkpoint::Price],
        );
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (
                Asset {
                    id: "roi cfo".into(),
                    ..ok.clone()
                },
                "must be non-empty and without spaces",
            ),
            (
                Asset {
                    title: " ".into(),
                    ..ok.clone()
                },
                "title cannot be blank",
            ),
            (
                Asset {
                    checkpoints: vec![Checkpoint::Price, Checkpoint::Price],
                    ..ok.clone()
                },
                "checkpoint price is listed twice",
            ),
            (
                Asset {
                    url: Some("ftp://x".into()),
                    ..ok.clone()
                },
                "must be a web link",
            ),
            (
                Asset {
                    personas: vec!["".into()],
                    ..ok.clone()
                },
                "a persona tag cannot be blank",
            ),
        ];
        for (bad, needle) in cases {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} in {err}");
        }
        let playbook = vec![ok.clone()];
        assert_eq!(
            check_upsert(&ok, &playbook),
            Err(ProofError::PlaybookAsset("roi-cfo".into()))
        );
        let other = asset("other", Stage::ProblemAwareness, &[]);
        assert_eq!(check_upsert(&other, &playbook), Ok(()));

        let mut shadow = ok.clone();
        shadow.title = "run-time copy".into();
        let catalog = merge_catalog(playbook, vec![shadow, other]);
        let ids: Vec<_> = catalog
            .iter()
            .map(|a| (a.id.as_str(), a.title.as_str()))
            .collect();
        assert_eq!(ids, [("roi-cfo", "roi-cfo"), ("other", "other")]);
    }

    #[test]
    fn an_asset_reads_from_json_with_defaults() {
        let a: Asset = serde_json::from_str(
            r#"{"id":"x","title":"X","kind":"demo_video","stage":"mechanism_understanding"}"#,
        )
        .unwrap();
        assert!(a.active && a.checkpoints.is_empty() && a.url.is_none());
        assert_eq!(a.kind, AssetKind::DemoVideo);
    }
}
