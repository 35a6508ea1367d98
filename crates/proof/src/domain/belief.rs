//! A lead's belief state: the stages installed and the evidence for each, the objections the
//! buyer raised, the proof delivered, and the belief debt when the lead reaches sales. Every
//! operation takes `now`, changes the state and returns the [`Change`]s to publish; the
//! service stores the state as JSON, one document per lead.
//!
//! How evidence installs stages (installing a stage installs the earlier ones it implies, each
//! recorded as [`Evidence::Implied`]):
//!
//! | evidence | installs |
//! |---|---|
//! | activation (an owner acted on the lead) | nothing: the conversation starts, so problem-awareness proof fits from here, but a first touch is not belief |
//! | a positive or neutral reply | problem awareness: a buyer who answers with interest or a question recognises the problem |
//! | a negative reply | nothing |
//! | a meeting booked | problem awareness (and the lead reaches sales: see hand-off) |
//! | handed on to sales (followup stopped with a hand-off) | nothing (the lead reaches sales) |
//! | an objection raised | problem awareness: nobody weighs the price or the risk of fixing a problem they do not have |
//! | a note (call notes, the rep's judgement) showing a stage | that stage |
//! | an asset consumed (delivered and engaged with) | the asset's stage, but at most the stage after the highest installed: proof read out of order teaches only the next step |
//!
//! Objections are open until proof answering their checkpoint is delivered at or after the
//! moment they were raised (proof sent before the concern existed was noise, not an answer);
//! they are then answered. A later signal may resolve an objection, answered or not: the buyer
//! said the concern is settled.
//!
//! Belief debt is what sales inherits: the stages not installed and the objections still open
//! (raised and neither answered with proof nor resolved). It is snapshot once, when the lead
//! reaches sales (a meeting booked or a hand-off), and can be read live at any time.

use std::fmt;

use jiff::Timestamp;
use runtime::pii::Pii;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Asset, Change, Checkpoint, Context, DeliveryOutcome, LeadProfile, OutcomeEvidence, ProofError,
    Stage,
};

/// How many characters of an objection's verbatim a reason quotes.
const QUOTE_CHARS: usize = 80;

/// One lead's belief. Self-contained: it carries the lead's profile and everything that
/// happened, so it can be read and decided on alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeliefState {
    /// Format version of the stored JSON; bumped (with a migration on read) when the shape
    /// changes incompatibly.
    pub version: u32,
    pub lead: Uuid,
    pub profile: LeadProfile,
    pub created_at: Timestamp,
    /// When an owner first acted on the lead (activation's `LeadActivated`).
    pub activated_at: Option<Timestamp>,
    /// The installed stages, earliest stage first; always a prefix of [`Stage::ALL`].
    pub installed: Vec<InstalledStage>,
    /// Every objection raised; objection `n` is `objections[n - 1]`.
    pub objections: Vec<Objection>,
    /// Every delivery, in the order they were made (by `at`).
    pub deliveries: Vec<Delivery>,
    /// Every signal recorded, in the order recorded.
    pub signals: Vec<RecordedSignal>,
    /// Set once, when the lead reached sales.
    pub handed_off: Option<HandOff>,
}

/// A stage the evidence shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledStage {
    pub stage: Stage,
    pub at: Timestamp,
    pub evidence: Evidence,
}

/// What showed a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Evidence {
    Reply {
        sentiment: Sentiment,
    },
    MeetingBooked,
    /// A call note or the rep's judgement.
    Note,
    /// The lead consumed an asset (delivered and engaged with it).
    Consumed {
        asset: String,
    },
    ObjectionRaised {
        checkpoint: Checkpoint,
    },
    /// A later stage was shown, which implies this one.
    Implied {
        by: Stage,
    },
}

/// How a reply reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Positive,
    /// Neither yes nor no: a question, "send me more".
    Neutral,
    Negative,
}

/// Something that tells proof about the buyer's belief: RecordBeliefSignal, and events from
/// activation and followup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Signal {
    /// An owner acted on the lead (activation's `LeadActivated`).
    Activated,
    Reply {
        sentiment: Sentiment,
    },
    MeetingBooked,
    /// Followup stopped the cadence and handed the lead on to sales.
    HandedOn,
    /// The lead engaged with an asset (opened, watched, attended); `stage` is the asset's.
    AssetEngaged {
        asset: String,
        stage: Stage,
    },
    /// A call note or the rep's judgement, showing a stage when it says one.
    Note {
        shows: Option<Stage>,
    },
    /// The buyer said the concern at `checkpoint` is settled.
    ObjectionResolved {
        checkpoint: Checkpoint,
    },
}

impl Signal {
    /// The kind, as the wire names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Activated => "activated",
            Self::Reply { .. } => "reply",
            Self::MeetingBooked => "meeting_booked",
            Self::HandedOn => "handed_on",
            Self::AssetEngaged { .. } => "asset_engaged",
            Self::Note { .. } => "note",
            Self::ObjectionResolved { .. } => "objection_resolved",
        }
    }
}

/// A signal and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSignal {
    pub at: Timestamp,
    pub signal: Signal,
}

/// A concern the buyer raised at a fear checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    /// 1 for the lead's first objection, 2 for the next, ...
    pub id: u32,
    pub checkpoint: Checkpoint,
    /// What the buyer said, as the rep wrote it down.
    pub verbatim: Pii,
    pub raised_at: Timestamp,
    /// The asset whose delivery answered it, and when.
    pub answered_by: Option<String>,
    pub answered_at: Option<Timestamp>,
    /// When the buyer said it is settled.
    pub resolved_at: Option<Timestamp>,
}

/// Where an objection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectionStatus {
    /// Raised, and no proof answering it delivered since.
    Open,
    /// Proof answering it was delivered.
    Answered,
    /// The buyer said it is settled.
    Resolved,
}

impl Objection {
    pub fn status(&self) -> ObjectionStatus {
        if self.resolved_at.is_some() {
            ObjectionStatus::Resolved
        } else if self.answered_by.is_some() {
            ObjectionStatus::Answered
        } else {
            ObjectionStatus::Open
        }
    }

    pub fn is_open(&self) -> bool {
        self.status() == ObjectionStatus::Open
    }

    /// The verbatim, shortened for a reason.
    pub(crate) fn quote(&self) -> String {
        let text = self.verbatim.trim();
        if text.chars().count() <= QUOTE_CHARS {
            text.to_owned()
        } else {
            let cut: String = text.chars().take(QUOTE_CHARS).collect();
            format!("{}…", cut.trim_end())
        }
    }
}

/// One piece of proof delivered to the lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// 1 for the first delivery recorded, 2 for the next, ...
    pub number: u32,
    pub asset: String,
    /// The asset's stage when it was delivered.
    pub asset_stage: Stage,
    pub at: Timestamp,
    /// What its outcome counts toward.
    pub context: Context,
    /// The asset had been delivered to this lead before.
    pub repeat: bool,
    /// The objections it answered.
    pub answered: Vec<u32>,
    /// When the lead engaged with it (the first time).
    pub engaged_at: Option<Timestamp>,
    pub outcome: DeliveryOutcome,
    /// When the outcome was decided: the evidence's time for a success, the end of the
    /// window for a failure.
    pub outcome_at: Option<Timestamp>,
    /// What made it a success.
    pub evidence: Option<OutcomeEvidence>,
}

/// The moment the lead reached sales, with the belief debt it carried then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOff {
    pub at: Timestamp,
    pub debt: BeliefDebt,
}

/// What sales inherits: belief not installed and objections not answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeliefDebt {
    /// The stages not installed, earliest first.
    pub missing_stages: Vec<Stage>,
    /// Objections raised and neither answered with proof nor resolved.
    pub unanswered: Vec<ObjectionDebt>,
}

/// An objection sales inherits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectionDebt {
    pub objection: u32,
    pub checkpoint: Checkpoint,
    pub verbatim: Pii,
    pub raised_at: Timestamp,
}

impl BeliefDebt {
    /// No debt: every stage installed and every objection answered or resolved.
    pub fn is_clear(&self) -> bool {
        self.missing_stages.is_empty() && self.unanswered.is_empty()
    }
}

impl fmt::Display for BeliefDebt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clear() {
            return f.write_str("no belief debt");
        }
        let mut parts = Vec::new();
        if !self.missing_stages.is_empty() {
            let stages: Vec<&str> = self.missing_stages.iter().map(|s| s.as_str()).collect();
            parts.push(format!("not installed: {}", stages.join(", ")));
        }
        if !self.unanswered.is_empty() {
            let objections: Vec<&str> = self
                .unanswered
                .iter()
                .map(|o| o.checkpoint.as_str())
                .collect();
            parts.push(format!(
                "objections without proof: {}",
                objections.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

impl BeliefState {
    /// The current format of the stored JSON.
    pub const VERSION: u32 = 1;

    /// A lead proof knows nothing about yet.
    pub fn new(lead: Uuid, profile: LeadProfile, now: Timestamp) -> Self {
        Self {
            version: Self::VERSION,
            lead,
            profile,
            created_at: now,
            activated_at: None,
            installed: Vec::new(),
            objections: Vec::new(),
            deliveries: Vec::new(),
            signals: Vec::new(),
            handed_off: None,
        }
    }

    /// Takes the known parts of a newer profile (an empty field keeps what was known); true
    /// when something changed.
    pub fn update_profile(&mut self, profile: &LeadProfile) -> bool {
        let before = self.profile.clone();
        for (mine, theirs) in [
            (&mut self.profile.segment, &profile.segment),
            (&mut self.profile.industry, &profile.industry),
            (&mut self.profile.persona, &profile.persona),
        ] {
            if !theirs.trim().is_empty() {
                *mine = theirs.trim().to_owned();
            }
        }
        self.profile != before
    }

    /// The highest stage installed; `None` before any evidence.
    pub fn stage(&self) -> Option<Stage> {
        self.installed.last().map(|i| i.stage)
    }

    pub fn is_installed(&self, stage: Stage) -> bool {
        self.installed.iter().any(|i| i.stage == stage)
    }

    /// The stage the lead is working toward: the stage after the highest installed
    /// (problem awareness when none is; capability trust once all are). It is also the
    /// highest stage proof may serve now (stage gating): an asset's stage may be at most one
    /// beyond the highest installed.
    pub fn frontier(&self) -> Stage {
        match self.stage() {
            None => Stage::ProblemAwareness,
            Some(stage) => stage.next().unwrap_or(Stage::CapabilityTrust),
        }
    }

    /// The objections still open, oldest first.
    pub fn open_objections(&self) -> impl Iterator<Item = &Objection> {
        self.objections.iter().filter(|o| o.is_open())
    }

    /// The most recent delivery.
    pub fn last_delivery(&self) -> Option<&Delivery> {
        self.deliveries.iter().max_by_key(|d| d.at)
    }

    /// When the asset was last delivered to this lead.
    pub fn delivered_at(&self, asset: &str) -> Option<Timestamp> {
        self.deliveries
            .iter()
            .filter(|d| d.asset == asset)
            .map(|d| d.at)
            .max()
    }

    /// Records a signal (see the module docs for what each installs).
    pub fn record_signal(&mut self, signal: Signal, now: Timestamp) -> Vec<Change> {
        let mut changes = Vec::new();
        self.signals.push(RecordedSignal {
            at: now,
            signal: signal.clone(),
        });
        match signal {
            Signal::Activated => {
                self.activated_at.get_or_insert(now);
            }
            Signal::Reply { sentiment } => {
                if sentiment != Sentiment::Negative {
                    self.install(
                        Stage::ProblemAwareness,
                        now,
                        Evidence::Reply { sentiment },
                        &mut changes,
                    );
                }
            }
            Signal::MeetingBooked => {
                self.install(
                    Stage::ProblemAwareness,
                    now,
                    Evidence::MeetingBooked,
                    &mut changes,
                );
                changes.extend(self.hand_off(now));
            }
            Signal::HandedOn => changes.extend(self.hand_off(now)),
            Signal::AssetEngaged { asset, stage } => {
                if let Some(delivery) = self
                    .deliveries
                    .iter_mut()
                    .filter(|d| d.asset == asset && d.at <= now)
                    .max_by_key(|d| d.at)
                {
                    delivery.engaged_at.get_or_insert(now);
                }
                let stage = stage.min(self.frontier());
                self.install(stage, now, Evidence::Consumed { asset }, &mut changes);
            }
            Signal::Note { shows: Some(stage) } => {
                self.install(stage, now, Evidence::Note, &mut changes);
            }
            Signal::Note { shows: None } => {}
            Signal::ObjectionResolved { checkpoint } => {
                for objection in &mut self.objections {
                    if objection.checkpoint == checkpoint && objection.resolved_at.is_none() {
                        objection.resolved_at = Some(now);
                        changes.push(Change::ObjectionResolved {
                            objection: objection.id,
                            checkpoint,
                            at: now,
                        });
                    }
                }
            }
        }
        changes
    }

    /// Records an objection the buyer raised (RecordObjection). It stays open until proof
    /// answering it is delivered; raising one shows problem awareness. The same concern
    /// raised twice is recorded twice: recurring objections are data.
    pub fn record_objection(
        &mut self,
        checkpoint: Checkpoint,
        verbatim: &str,
        now: Timestamp,
    ) -> Vec<Change> {
        let id = u32::try_from(self.objections.len() + 1).unwrap_or(u32::MAX);
        let verbatim = verbatim.trim().to_owned();
        self.objections.push(Objection {
            id,
            checkpoint,
            verbatim: verbatim.clone().into(),
            raised_at: now,
            answered_by: None,
            answered_at: None,
            resolved_at: None,
        });
        let mut changes = vec![Change::ObjectionRaised {
            objection: id,
            checkpoint,
            verbatim,
            at: now,
        }];
        self.install(
            Stage::ProblemAwareness,
            now,
            Evidence::ObjectionRaised { checkpoint },
            &mut changes,
        );
        changes
    }

    /// Records that `asset` was delivered at `at` (RecordProofDelivered; `at` is when it went
    /// out, which may be earlier than now). It answers the open objections at its checkpoints
    /// raised at or before `at`. A second delivery of the same asset is recorded and marked
    /// as a repeat; so is one of an inactive asset (it went out all the same: the record must
    /// say so). Delivery alone installs nothing: the lead has to engage with it.
    pub fn record_delivery(
        &mut self,
        asset: &Asset,
        at: Timestamp,
    ) -> Result<Vec<Change>, ProofError> {
        asset.validate()?;
        let repeat = self.delivered_at(&asset.id).is_some();
        let answerable: Vec<usize> = self
            .objections
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_open() && o.raised_at <= at && asset.answers(o.checkpoint))
            .map(|(i, _)| i)
            .collect();
        let context = Context {
            stage: self.frontier(),
            checkpoint: answerable.first().map(|&i| self.objections[i].checkpoint),
        };
        let mut answered_changes = Vec::new();
        let mut answered = Vec::new();
        for i in answerable {
            let objection = &mut self.objections[i];
            objection.answered_by = Some(asset.id.clone());
            objection.answered_at = Some(at);
            answered.push(objection.id);
            answered_changes.push(Change::ObjectionAnswered {
                objection: objection.id,
                checkpoint: objection.checkpoint,
                asset: asset.id.clone(),
                at,
            });
        }
        let number = u32::try_from(self.deliveries.len() + 1).unwrap_or(u32::MAX);
        // Kept in time order so outcomes and spacing read it in order; a delivery reported
        // late goes where it happened.
        let index = self.deliveries.partition_point(|d| d.at <= at);
        self.deliveries.insert(
            index,
            Delivery {
                number,
                asset: asset.id.clone(),
                asset_stage: asset.stage,
                at,
                context,
                repeat,
                answered: answered.clone(),
                engaged_at: None,
                outcome: DeliveryOutcome::Pending,
                outcome_at: None,
                evidence: None,
            },
        );
        let mut changes = vec![Change::ProofDelivered {
            delivery: number,
            asset: asset.id.clone(),
            at,
            context,
            repeat,
            inactive: !asset.active,
            answered,
        }];
        changes.extend(answered_changes);
        Ok(changes)
    }

    /// The lead reached sales: snapshots the belief debt, once. Later calls change nothing.
    pub fn hand_off(&mut self, now: Timestamp) -> Vec<Change> {
        if self.handed_off.is_some() {
            return Vec::new();
        }
        let debt = self.debt();
        self.handed_off = Some(HandOff {
            at: now,
            debt: debt.clone(),
        });
        vec![Change::HandedOff { at: now, debt }]
    }

    /// Forgets what the buyer said (an erasure): every objection's verbatim, here and in the
    /// debt recorded at hand-off, is blanked. Checkpoints, times and answers stay, so the
    /// belief state and the reports built on it keep their meaning. Returns the quotes that
    /// were blanked, as reasons and evidence cite them, for the caller to find in its events.
    pub fn erase_personal_data(&mut self) -> Vec<String> {
        let mut quotes = Vec::new();
        for objection in &mut self.objections {
            if !objection.verbatim.trim().is_empty() {
                quotes.push(objection.quote());
                quotes.push(objection.verbatim.trim().to_owned());
            }
            objection.verbatim = Pii::default();
        }
        if let Some(hand_off) = self.handed_off.as_mut() {
            for debt in &mut hand_off.debt.unanswered {
                debt.verbatim = Pii::default();
            }
        }
        quotes
    }

    /// The belief debt as it stands now.
    pub fn debt(&self) -> BeliefDebt {
        BeliefDebt {
            missing_stages: Stage::ALL
                .iter()
                .copied()
                .filter(|s| !self.is_installed(*s))
                .collect(),
            unanswered: self
                .open_objections()
                .map(|o| ObjectionDebt {
                    objection: o.id,
                    checkpoint: o.checkpoint,
                    verbatim: o.verbatim.clone(),
                    raised_at: o.raised_at,
                })
                .collect(),
        }
    }

    /// Installs `stage` and the stages before it that are not installed yet, earliest first.
    fn install(
        &mut self,
        stage: Stage,
        at: Timestamp,
        evidence: Evidence,
        changes: &mut Vec<Change>,
    ) {
        for s in stage.before().chain([stage]) {
            if self.is_installed(s) {
                continue;
            }
            let evidence = if s == stage {
                evidence.clone()
            } else {
                Evidence::Implied { by: stage }
            };
            let from = self.stage();
            self.installed.push(InstalledStage {
                stage: s,
                at,
                evidence: evidence.clone(),
            });
            changes.push(Change::BeliefAdvanced {
                stage: s,
                from,
                evidence,
                at,
            });
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply { sentiment } => write!(f, "a {} reply", sentiment.as_str()),
            Self::MeetingBooked => f.write_str("a meeting booked"),
            Self::Note => f.write_str("a call note"),
            Self::Consumed { asset } => write!(f, "engaged with {asset}"),
            Self::ObjectionRaised { checkpoint } => write!(f, "raised a {checkpoint} objection"),
            Self::Implied { by } => write!(f, "implied by {by}"),
        }
    }
}

impl Sentiment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{asset, at, state};

    fn stages(state: &BeliefState) -> Vec<Stage> {
        state.installed.iter().map(|i| i.stage).collect()
    }

    #[test]
    fn signals_install_stages_as_documented() {
        let mut s = state();
        assert_eq!((s.stage(), s.frontier()), (None, Stage::ProblemAwareness));

        assert!(s.record_signal(Signal::Activated, at("09:00")).is_empty());
        assert_eq!(s.activated_at, Some(at("09:00")));
        assert!(
            s.record_signal(
                Signal::Reply {
                    sentiment: Sentiment::Negative
                },
                at("09:30")
            )
            .is_empty()
        );
        assert!(
            s.record_signal(Signal::Note { shows: None }, at("09:40"))
                .is_empty()
        );
        assert_eq!(s.stage(), None);

        let changes = s.record_signal(
            Signal::Reply {
                sentiment: Sentiment::Neutral,
            },
            at("10:00"),
        );
        assert_eq!(
            changes,
            [Change::BeliefAdvanced {
                stage: Stage::ProblemAwareness,
                from: None,
                evidence: Evidence::Reply {
                    sentiment: Sentiment::Neutral
                },
                at: at("10:00"),
            }]
        );
        assert_eq!(s.frontier(), Stage::MechanismUnderstanding);
        // already installed: nothing more
        assert!(
            s.record_signal(
                Signal::Reply {
                    sentiment: Sentiment::Positive
                },
                at("10:30")
            )
            .is_empty()
        );

        // a note showing capability trust implies mechanism understanding
        let changes = s.record_signal(
            Signal::Note {
                shows: Some(Stage::CapabilityTrust),
            },
            at("11:00"),
        );
        let advanced: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::BeliefAdvanced {
                    stage,
                    from,
                    evidence,
                    ..
                } => (*stage, *from, evidence.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            advanced,
            [
                (
                    Stage::MechanismUnderstanding,
                    Some(Stage::ProblemAwareness),
                    Evidence::Implied {
                        by: Stage::CapabilityTrust
                    }
                ),
                (
                    Stage::CapabilityTrust,
                    Some(Stage::MechanismUnderstanding),
                    Evidence::Note
                ),
            ]
        );
        assert_eq!(s.frontier(), Stage::CapabilityTrust);
        assert_eq!(s.signals.len(), 6);
    }

    #[test]
    fn consuming_an_asset_installs_at_most_the_next_stage() {
        let mut s = state();
        let trust = asset(
            "security-pack",
            Stage::CapabilityTrust,
            &[Checkpoint::SecurityCompliance],
        );
        s.record_delivery(&trust, at("09:00")).unwrap();
        // Delivery alone installs nothing.
        assert_eq!(s.stage(), None);

        // Reading a capability-trust asset with nothing installed teaches problem awareness.
        let changes = s.record_signal(
            Signal::AssetEngaged {
                asset: "security-pack".into(),
                stage: Stage::CapabilityTrust,
            },
            at("10:00"),
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(stages(&s), [Stage::ProblemAwareness]);
        assert_eq!(
            s.installed[0].evidence,
            Evidence::Consumed {
                asset: "security-pack".into()
            }
        );
        assert_eq!(s.deliveries[0].engaged_at, Some(at("10:00")));

        // Engaging again moves one more step, and the first engagement time is kept.
        s.record_signal(
            Signal::AssetEngaged {
                asset: "security-pack".into(),
                stage: Stage::CapabilityTrust,
            },
            at("11:00"),
        );
        assert_eq!(
            stages(&s),
            [Stage::ProblemAwareness, Stage::MechanismUnderstanding]
        );
        assert_eq!(s.deliveries[0].engaged_at, Some(at("10:00")));

        // A problem-awareness asset consumed now changes nothing.
        let aware = asset("blog", Stage::ProblemAwareness, &[]);
        s.record_delivery(&aware, at("12:00")).unwrap();
        let changes = s.record_signal(
            Signal::AssetEngaged {
                asset: "blog".into(),
                stage: Stage::ProblemAwareness,
            },
            at("12:30"),
        );
        assert!(changes.is_empty());
    }

    #[test]
    fn an_objection_is_open_until_proof_for_it_is_delivered() {
        let mut s = state();
        let changes =
            s.record_objection(Checkpoint::Price, "  Too expensive for us  ", at("09:00"));
        assert_eq!(
            changes[0],
            Change::ObjectionRaised {
                objection: 1,
                checkpoint: Checkpoint::Price,
                verbatim: "Too expensive for us".into(),
                at: at("09:00"),
            }
        );
        // Raising it shows problem awareness.
        assert!(matches!(
            &changes[1],
            Change::BeliefAdvanced {
                stage: Stage::ProblemAwareness,
                evidence: Evidence::ObjectionRaised {
                    checkpoint: Checkpoint::Price
                },
                ..
            }
        ));
        s.record_objection(Checkpoint::SecurityCompliance, "SOC 2?", at("09:10"));
        s.record_objection(Checkpoint::Price, "CFO says no budget", at("09:20"));
        assert_eq!(s.open_objections().count(), 3);

        // A case study for implementation effort answers neither.
        let case = asset(
            "case",
            Stage::ProblemAwareness,
            &[Checkpoint::ImplementationEffort],
        );
        let changes = s.record_delivery(&case, at("10:00")).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(s.open_objections().count(), 3);

        // The ROI calculator answers both price objections.
        let roi = asset("roi", Stage::MechanismUnderstanding, &[Checkpoint::Price]);
        let changes = s.record_delivery(&roi, at("11:00")).unwrap();
        assert_eq!(
            changes,
            [
                Change::ProofDelivered {
                    delivery: 2,
                    asset: "roi".into(),
                    at: at("11:00"),
                    context: Context {
                        stage: Stage::MechanismUnderstanding,
                        checkpoint: Some(Checkpoint::Price)
                    },
                    repeat: false,
                    inactive: false,
                    answered: vec![1, 3],
                },
                Change::ObjectionAnswered {
                    objection: 1,
                    checkpoint: Checkpoint::Price,
                    asset: "roi".into(),
                    at: at("11:00")
                },
                Change::ObjectionAnswered {
                    objection: 3,
                    checkpoint: Checkpoint::Price,
                    asset: "roi".into(),
                    at: at("11:00")
                },
            ]
        );
        assert_eq!(s.objections[0].status(), ObjectionStatus::Answered);
        assert_eq!(s.objections[0].answered_by.as_deref(), Some("roi"));
        let open: Vec<_> = s.open_objections().map(|o| o.checkpoint).collect();
        assert_eq!(open, [Checkpoint::SecurityCompliance]);

        // A resolution settles it without proof.
        let changes = s.record_signal(
            Signal::ObjectionResolved {
                checkpoint: Checkpoint::SecurityCompliance,
            },
            at("12:00"),
        );
        assert_eq!(
            changes,
            [Change::ObjectionResolved {
                objection: 2,
                checkpoint: Checkpoint::SecurityCompliance,
                at: at("12:00")
            }]
        );
        assert_eq!(s.objections[1].status(), ObjectionStatus::Resolved);
        assert_eq!(s.open_objections().count(), 0);
    }

    #[test]
    fn proof_delivered_before_the_concern_does_not_answer_it() {
        let mut s = state();
        let roi = asset("roi", Stage::ProblemAwareness, &[Checkpoint::Price]);
        s.record_delivery(&roi, at("09:00")).unwrap();
        s.record_objection(Checkpoint::Price, "pricey", at("10:00"));
        assert_eq!(s.open_objections().count(), 1);
        // ... but a late report of a delivery made after it was raised does.
        let changes = s.record_delivery(&roi, at("10:30")).unwrap();
        assert!(
            matches!(&changes[0], Change::ProofDelivered { repeat: true, answered, .. } if answered == &[1])
        );
        assert_eq!(s.open_objections().count(), 0);
        assert!(s.deliveries[1].repeat);
    }

    #[test]
    fn deliveries_stay_in_time_order_and_note_repeats_and_inactive_assets() {
        let mut s = state();
        let a = asset("a", Stage::ProblemAwareness, &[]);
        let mut b = asset("b", Stage::ProblemAwareness, &[]);
        b.active = false;
        s.record_delivery(&a, at("12:00")).unwrap();
        let changes = s.record_delivery(&b, at("09:00")).unwrap();
        assert!(matches!(
            &changes[0],
            Change::ProofDelivered {
                delivery: 2,
                inactive: true,
                repeat: false,
                ..
            }
        ));
        let order: Vec<_> = s
            .deliveries
            .iter()
            .map(|d| (d.asset.as_str(), d.number))
            .collect();
        assert_eq!(order, [("b", 2), ("a", 1)]);
        assert_eq!(s.last_delivery().unwrap().asset, "a");
        assert_eq!(s.delivered_at("b"), Some(at("09:00")));

        let bad = Asset {
            id: "has space".into(),
            ..a
        };
        assert!(matches!(
            s.record_delivery(&bad, at("13:00")),
            Err(ProofError::InvalidAsset { .. })
        ));
    }

    #[test]
    fn belief_debt_is_snapshot_at_hand_off_and_live_after() {
        let mut s = state();
        s.record_signal(
            Signal::Reply {
                sentiment: Sentiment::Positive,
            },
            at("09:00"),
        );
        s.record_objection(
            Checkpoint::SecurityCompliance,
            "Our CISO needs the SOC 2 report",
            at("09:30"),
        );
        s.record_objection(Checkpoint::Price, "pricey", at("09:40"));
        let roi = asset("roi", Stage::MechanismUnderstanding, &[Checkpoint::Price]);
        s.record_delivery(&roi, at("10:00")).unwrap();

        let changes = s.record_signal(Signal::MeetingBooked, at("11:00"));
        let want = BeliefDebt {
            missing_stages: vec![Stage::MechanismUnderstanding, Stage::CapabilityTrust],
            unanswered: vec![ObjectionDebt {
                objection: 1,
                checkpoint: Checkpoint::SecurityCompliance,
                verbatim: "Our CISO needs the SOC 2 report".into(),
                raised_at: at("09:30"),
            }],
        };
        assert_eq!(
            changes,
            [Change::HandedOff {
                at: at("11:00"),
                debt: want.clone()
            }]
        );
        assert_eq!(
            s.handed_off,
            Some(HandOff {
                at: at("11:00"),
                debt: want.clone()
            })
        );
        assert_eq!(
            want.to_string(),
            "not installed: mechanism_understanding, capability_trust; objections without proof: \
             security_compliance"
        );

        // Sales keeps working: the live view moves on, the snapshot stays.
        let pack = asset(
            "soc2",
            Stage::CapabilityTrust,
            &[Checkpoint::SecurityCompliance],
        );
        s.record_delivery(&pack, at("12:00")).unwrap();
        s.record_signal(
            Signal::Note {
                shows: Some(Stage::CapabilityTrust),
            },
            at("13:00"),
        );
        assert!(s.debt().is_clear());
        assert_eq!(s.debt().to_string(), "no belief debt");
        assert!(s.record_signal(Signal::HandedOn, at("14:00")).is_empty());
        assert!(s.hand_off(at("15:00")).is_empty());
        assert_eq!(s.handed_off.as_ref().unwrap().debt, want);
    }

    #[test]
    fn the_profile_takes_only_known_values() {
        let mut s = state();
        s.profile = LeadProfile::new("enterprise", "", "cfo");
        assert!(s.update_profile(&LeadProfile::new("", " Logistics ", "")));
        assert_eq!(
            s.profile,
            LeadProfile::new("enterprise", "Logistics", "cfo")
        );
        assert!(!s.update_profile(&LeadProfile::default()));
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let mut s = state();
        s.record_objection(Checkpoint::Price, "pricey", at("09:00"));
        s.record_delivery(
            &asset("roi", Stage::MechanismUnderstanding, &[Checkpoint::Price]),
            at("10:00"),
        )
        .unwrap();
        s.record_signal(Signal::MeetingBooked, at("11:00"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<BeliefState>(&json).unwrap(), s);
    }
}
