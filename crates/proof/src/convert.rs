//! Between proof's domain and its wire types: assets, belief states and events out; assets,
//! signals and checkpoints in.

use std::collections::HashMap;

use proto::proof::v1 as pb;
use runtime::grpc::to_proto_timestamp;
use uuid::Uuid;

use crate::domain::{
    Asset, AssetKind, BeliefDebt, BeliefState, Change, Checkpoint, Context, DeliveryOutcome,
    Effectiveness, Evidence, Stage,
};

pub fn stage_to_proto(s: Stage) -> pb::BeliefStage {
    match s {
        Stage::ProblemAwareness => pb::BeliefStage::ProblemAwareness,
        Stage::MechanismUnderstanding => pb::BeliefStage::MechanismUnderstanding,
        Stage::CapabilityTrust => pb::BeliefStage::CapabilityTrust,
    }
}

pub fn stage_from_proto(s: pb::BeliefStage) -> Option<Stage> {
    match s {
        pb::BeliefStage::Unspecified => None,
        pb::BeliefStage::ProblemAwareness => Some(Stage::ProblemAwareness),
        pb::BeliefStage::MechanismUnderstanding => Some(Stage::MechanismUnderstanding),
        pb::BeliefStage::CapabilityTrust => Some(Stage::CapabilityTrust),
    }
}

pub fn checkpoint_to_proto(c: Checkpoint) -> pb::Checkpoint {
    match c {
        Checkpoint::Price => pb::Checkpoint::Price,
        Checkpoint::ImplementationEffort => pb::Checkpoint::ImplementationEffort,
        Checkpoint::RiskOfFailure => pb::Checkpoint::RiskOfFailure,
        Checkpoint::SecurityCompliance => pb::Checkpoint::SecurityCompliance,
        Checkpoint::SwitchingCost => pb::Checkpoint::SwitchingCost,
        Checkpoint::InternalBuyIn => pb::Checkpoint::InternalBuyIn,
    }
}

pub fn checkpoint_from_proto(c: pb::Checkpoint) -> Option<Checkpoint> {
    match c {
        pb::Checkpoint::Unspecified => None,
        pb::Checkpoint::Price => Some(Checkpoint::Price),
        pb::Checkpoint::ImplementationEffort => Some(Checkpoint::ImplementationEffort),
        pb::Checkpoint::RiskOfFailure => Some(Checkpoint::RiskOfFailure),
        pb::Checkpoint::SecurityCompliance => Some(Checkpoint::SecurityCompliance),
        pb::Checkpoint::SwitchingCost => Some(Checkpoint::SwitchingCost),
        pb::Checkpoint::InternalBuyIn => Some(Checkpoint::InternalBuyIn),
    }
}

pub fn kind_to_proto(k: AssetKind) -> pb::AssetKind {
    match k {
        AssetKind::CaseStudy => pb::AssetKind::CaseStudy,
        AssetKind::Testimonial => pb::AssetKind::Testimonial,
        AssetKind::RoiCalculator => pb::AssetKind::RoiCalculator,
        AssetKind::SecurityPack => pb::AssetKind::SecurityPack,
        AssetKind::DemoVideo => pb::AssetKind::DemoVideo,
        AssetKind::ReferenceCall => pb::AssetKind::ReferenceCall,
        AssetKind::Benchmark => pb::AssetKind::Benchmark,
    }
}

pub fn kind_from_proto(k: pb::AssetKind) -> Option<AssetKind> {
    match k {
        pb::AssetKind::Unspecified => None,
        pb::AssetKind::CaseStudy => Some(AssetKind::CaseStudy),
        pb::AssetKind::Testimonial => Some(AssetKind::Testimonial),
        pb::AssetKind::RoiCalculator => Some(AssetKind::RoiCalculator),
        pb::AssetKind::SecurityPack => Some(AssetKind::SecurityPack),
        pb::AssetKind::DemoVideo => Some(AssetKind::DemoVideo),
        pb::AssetKind::ReferenceCall => Some(AssetKind::ReferenceCall),
        pb::AssetKind::Benchmark => Some(AssetKind::Benchmark),
    }
}

/// An asset on the wire, with its learned effectiveness when given.
pub fn asset_to_proto(asset: &Asset, effectiveness: &[(Context, Effectiveness)]) -> pb::Asset {
    pb::Asset {
        asset_id: asset.id.clone(),
        title: asset.title.clone(),
        kind: kind_to_proto(asset.kind) as i32,
        stage: stage_to_proto(asset.stage) as i32,
        checkpoints: asset
            .checkpoints
            .iter()
            .map(|c| checkpoint_to_proto(*c) as i32)
            .collect(),
        segments: asset.segments.clone(),
        industries: asset.industries.clone(),
        personas: asset.personas.clone(),
        url: asset.url.clone().unwrap_or_default(),
        active: asset.active,
        effectiveness: effectiveness
            .iter()
            .map(|(context, e)| pb::Effectiveness {
                stage: stage_to_proto(context.stage) as i32,
                checkpoint: context
                    .checkpoint
                    .map_or(pb::Checkpoint::Unspecified, checkpoint_to_proto)
                    as i32,
                successes: e.successes,
                failures: e.failures,
            })
            .collect(),
    }
}

/// Effectiveness rows grouped by asset.
pub fn by_asset(
    rows: Vec<(String, Context, Effectiveness)>,
) -> HashMap<String, Vec<(Context, Effectiveness)>> {
    let mut grouped: HashMap<String, Vec<(Context, Effectiveness)>> = HashMap::new();
    for (asset, context, e) in rows {
        grouped.entry(asset).or_default().push((context, e));
    }
    grouped
}

pub fn evidence_text(evidence: &Evidence) -> String {
    match evidence {
        Evidence::Reply { sentiment } => format!("a {} reply", sentiment_name(*sentiment)),
        Evidence::MeetingBooked => "a meeting was booked".into(),
        Evidence::Note => "a call note".into(),
        Evidence::Consumed { asset } => format!("consumed asset {asset}"),
        Evidence::ObjectionRaised { checkpoint } => {
            format!("raised a {checkpoint} objection: the problem is real to them")
        }
        Evidence::Implied { by } => format!("implied by {by}"),
    }
}

fn sentiment_name(s: crate::domain::Sentiment) -> &'static str {
    match s {
        crate::domain::Sentiment::Positive => "positive",
        crate::domain::Sentiment::Neutral => "neutral",
        crate::domain::Sentiment::Negative => "negative",
    }
}

fn debt_to_proto(
    debt: &BeliefDebt,
    at_handoff: bool,
    computed_at: jiff::Timestamp,
) -> pb::BeliefDebt {
    pb::BeliefDebt {
        missing_stages: debt
            .missing_stages
            .iter()
            .map(|s| stage_to_proto(*s) as i32)
            .collect(),
        unanswered_objections: debt
            .unanswered
            .iter()
            .map(|o| pb::Objection {
                checkpoint: checkpoint_to_proto(o.checkpoint) as i32,
                verbatim: o.verbatim.clone().into(),
                raised_at: Some(to_proto_timestamp(o.raised_at)),
                ..Default::default()
            })
            .collect(),
        at_handoff,
        computed_at: Some(to_proto_timestamp(computed_at)),
    }
}

pub fn state_to_proto(state: &BeliefState, now: jiff::Timestamp) -> pb::BeliefState {
    let debt = match &state.handed_off {
        Some(hand_off) => debt_to_proto(&hand_off.debt, true, hand_off.at),
        None => debt_to_proto(&state.debt(), false, now),
    };
    pb::BeliefState {
        lead_id: state.lead.to_string(),
        stage: state
            .stage()
            .map_or(pb::BeliefStage::Unspecified, stage_to_proto) as i32,
        installed: state
            .installed
            .iter()
            .map(|i| pb::InstalledStage {
                stage: stage_to_proto(i.stage) as i32,
                installed_at: Some(to_proto_timestamp(i.at)),
                evidence: evidence_text(&i.evidence),
            })
            .collect(),
        objections: state
            .objections
            .iter()
            .map(|o| pb::Objection {
                checkpoint: checkpoint_to_proto(o.checkpoint) as i32,
                verbatim: o.verbatim.clone().into(),
                raised_at: Some(to_proto_timestamp(o.raised_at)),
                answered_by_asset_id: o.answered_by.clone().unwrap_or_default(),
                answered_at: o.answered_at.map(to_proto_timestamp),
            })
            .collect(),
        deliveries: state
            .deliveries
            .iter()
            .map(|d| pb::Delivery {
                asset_id: d.asset.clone(),
                delivered_at: Some(to_proto_timestamp(d.at)),
                outcome: match d.outcome {
                    DeliveryOutcome::Pending => "pending",
                    DeliveryOutcome::Success => "success",
                    DeliveryOutcome::Failure => "failure",
                }
                .into(),
            })
            .collect(),
        debt: Some(debt),
        segment: state.profile.segment.clone(),
        industry: state.profile.industry.clone(),
        persona: state.profile.persona.clone(),
        handed_off_at: state.handed_off.as_ref().map(|h| to_proto_timestamp(h.at)),
    }
}

/// A prost message that can be appended to the event log.
pub trait EventPayload: Send {
    fn to_event(&self, aggregate: &str, at: jiff::Timestamp) -> runtime::NewEvent;
}

impl<M: prost::Name + Send> EventPayload for M {
    fn to_event(&self, aggregate: &str, at: jiff::Timestamp) -> runtime::NewEvent {
        runtime::NewEvent::new(aggregate.to_owned(), self, at)
    }
}

/// The wire event a change is published as; `None` for changes that only show in the state.
pub fn change_to_event(
    lead: Uuid,
    state: &BeliefState,
    change: &Change,
) -> Option<Box<dyn EventPayload>> {
    let lead_id = lead.to_string();
    let event: Box<dyn EventPayload> = match change {
        Change::BeliefAdvanced {
            stage,
            from,
            evidence,
            ..
        } => Box::new(pb::BeliefAdvanced {
            lead_id,
            from_stage: from.map_or(pb::BeliefStage::Unspecified, stage_to_proto) as i32,
            to_stage: stage_to_proto(*stage) as i32,
            evidence: evidence_text(evidence),
        }),
        Change::ObjectionRaised { objection, .. } => {
            let o = state
                .objections
                .get((*objection as usize).checked_sub(1)?)?;
            Box::new(pb::ObjectionRaised {
                lead_id,
                objection: Some(pb::Objection {
                    checkpoint: checkpoint_to_proto(o.checkpoint) as i32,
                    verbatim: o.verbatim.clone().into(),
                    raised_at: Some(to_proto_timestamp(o.raised_at)),
                    ..Default::default()
                }),
            })
        }
        Change::ProofRecommended {
            asset,
            context,
            reason,
        } => Box::new(pb::ProofRecommended {
            lead_id,
            asset_id: asset.clone(),
            reason: reason.clone(),
            checkpoint: context
                .checkpoint
                .map_or(pb::Checkpoint::Unspecified, checkpoint_to_proto)
                as i32,
        }),
        Change::ProofDelivered {
            asset,
            at,
            answered,
            ..
        } => Box::new(pb::ProofDelivered {
            lead_id,
            asset_id: asset.clone(),
            delivered_at: Some(to_proto_timestamp(*at)),
            answers: answered
                .iter()
                .filter_map(|n| state.objections.get((*n as usize).checked_sub(1)?))
                .map(|o| checkpoint_to_proto(o.checkpoint) as i32)
                .collect(),
        }),
        Change::HandedOff { at, debt } => Box::new(pb::BeliefDebtRecorded {
            lead_id,
            debt: Some(debt_to_proto(debt, true, *at)),
        }),
        Change::ObjectionAnswered { .. } | Change::ObjectionResolved { .. } => return None,
    };
    Some(event)
}

/// One of proof's stored events without what the lead said (for an erasure): objections'
/// verbatims are blanked and every quote in `quotes` is cut from reasons. `None` for event
/// types that carry none of it.
pub fn redact_event(type_name: &str, payload: &[u8], quotes: &[String]) -> Option<Vec<u8>> {
    use prost::{Message, Name};
    if type_name == pb::ObjectionRaised::full_name() {
        let mut event = pb::ObjectionRaised::decode(payload).ok()?;
        if let Some(objection) = event.objection.as_mut() {
            objection.verbatim.clear();
        }
        Some(event.encode_to_vec())
    } else if type_name == pb::BeliefDebtRecorded::full_name() {
        let mut event = pb::BeliefDebtRecorded::decode(payload).ok()?;
        for objection in event
            .debt
            .iter_mut()
            .flat_map(|d| d.unanswered_objections.iter_mut())
        {
            objection.verbatim.clear();
        }
        Some(event.encode_to_vec())
    } else if type_name == pb::ProofRecommended::full_name() {
        let mut event = pb::ProofRecommended::decode(payload).ok()?;
        // Longest first: the full verbatim before the shortened quote that is its prefix.
        let mut quotes: Vec<&String> = quotes.iter().filter(|q| !q.is_empty()).collect();
        quotes.sort_by_key(|q| std::cmp::Reverse(q.len()));
        for quote in quotes {
            event.reason = event.reason.replace(quote.as_str(), "[erased]");
        }
        Some(event.encode_to_vec())
    } else {
        None
    }
}
