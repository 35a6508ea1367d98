//! Between feedback's domain and the wire: every upstream event in as observations (plus a
//! timeline line in words, without personal data), reports and verdicts out.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use prost::Message;
use proto::activation::v1 as apb;
use proto::events::v1::Event;
use proto::feedback::v1 as pb;
use proto::followup::v1 as fpb;
use proto::intake::v1 as ipb;
use proto::proof::v1 as ppb;
use runtime::grpc::{from_proto_timestamp, to_proto_timestamp};
use uuid::Uuid;

use crate::domain::{
    Attribution, EngagementKind, FunnelStep, GroupReport, LeadFact, Observation, Rejected, Review,
    TimelineEntry, Verdict,
};

/// A domain enum from a protobuf enum's name: `CHANNEL_CALL` with prefix `CHANNEL_` is `call`.
/// The wire and the domain spell their values alike, so one rule reads them all.
fn wire<T: FromStr>(name: &str, prefix: &str) -> Option<T> {
    name.strip_prefix(prefix)?.to_lowercase().parse().ok()
}

fn time(ts: Option<&prost_types::Timestamp>, fallback: Timestamp) -> Timestamp {
    ts.and_then(from_proto_timestamp).unwrap_or(fallback)
}

fn duration(d: Option<&prost_types::Duration>) -> SignedDuration {
    d.map_or(SignedDuration::ZERO, |d| {
        SignedDuration::new(d.seconds, d.nanos)
    })
}

fn lead_id(text: &str) -> Option<Uuid> {
    text.parse().ok()
}

/// What an upstream event tells feedback: its observations, and the line it adds to a lead's
/// timeline (with the lead), if any.
#[derive(Debug, Default)]
pub struct Decoded {
    pub observations: Vec<Observation>,
    pub timeline: Option<(Uuid, TimelineEntry)>,
    /// The lead's preserved context, from intake's `LeadAccepted`.
    pub context: Option<(Uuid, Vec<(String, String)>)>,
    /// Leads whose person was erased (intake's `ContactErased`), each with its timeline line.
    pub erased: Vec<(Uuid, TimelineEntry)>,
}

fn entry(service: &str, event_type: &str, at: Timestamp, summary: String) -> TimelineEntry {
    TimelineEntry {
        service: service.into(),
        event_type: event_type.into(),
        at,
        summary,
    }
}

/// Reads one event of any upstream service. Unknown types decode to nothing.
pub fn decode(event: &Event) -> Result<Decoded, prost::DecodeError> {
    let Some(payload) = &event.payload else {
        return Ok(Decoded::default());
    };
    let envelope_at = time(event.occurred_at.as_ref(), Timestamp::UNIX_EPOCH);
    let bytes = payload.value.as_slice();
    let name = payload.type_url.rsplit('/').next().unwrap_or_default();
    let (service, short) = {
        let mut parts = name.split('.');
        let service = parts.nth(1).unwrap_or_default().to_owned();
        (service, name.rsplit('.').next().unwrap_or_default())
    };
    let mut out = Decoded::default();
    let line = |lead: Uuid, at: Timestamp, summary: String| {
        Some((lead, entry(&service, short, at, summary)))
    };
    match name {
        "fairchance.intake.v1.LeadAccepted" => {
            let accepted = ipb::LeadAccepted::decode(bytes)?;
            // A submission accepted on review: the report counts it once, as this lead.
            let review = lead_id(&accepted.from_rejection_id).map(|rejection| Review {
                rejection,
                reasons: accepted.rejection_codes.clone(),
            });
            let Some(lead) = accepted.lead else {
                return Ok(out);
            };
            let Some(id) = lead_id(&lead.lead_id) else {
                return Ok(out);
            };
            let input = lead.input.clone().unwrap_or_default();
            let source = input.source.clone().unwrap_or_default();
            let intent = input.intent.clone().unwrap_or_default();
            let received_at = time(lead.received_at.as_ref(), envelope_at);
            let tier = ipb::IcpTier::try_from(lead.icp_tier)
                .ok()
                .and_then(|t| wire(t.as_str_name(), "ICP_TIER_"))
                .unwrap_or_default();
            out.observations.push(Observation::LeadAccepted {
                lead: id,
                source: source.source.clone(),
                campaign: source.campaign.clone(),
                channel: source.channel.clone(),
                received_at,
                icp_tier: tier,
                do_not_contact: lead.do_not_contact,
                review,
            });
            let kind = ipb::IntentKind::try_from(intent.kind)
                .map(|k| {
                    k.as_str_name()
                        .trim_start_matches("INTENT_KIND_")
                        .to_lowercase()
                })
                .unwrap_or_default();
            out.context = Some((
                id,
                vec![
                    ("source".into(), source.source.clone()),
                    ("campaign".into(), source.campaign.clone()),
                    ("channel".into(), source.channel.clone()),
                    ("landing page".into(), source.landing_page.clone()),
                    ("message".into(), source.message.clone()),
                    ("intent".into(), kind),
                    ("icp tier".into(), tier.to_string()),
                ],
            ));
            out.timeline = line(
                id,
                received_at,
                format!(
                    "accepted from {} (campaign {}){}",
                    source.source,
                    if source.campaign.is_empty() {
                        "none"
                    } else {
                        &source.campaign
                    },
                    if lead.do_not_contact {
                        "; do not contact"
                    } else {
                        ""
                    }
                ),
            );
        }
        "fairchance.intake.v1.LeadRejected" => {
            let Some(rejection) = ipb::LeadRejected::decode(bytes)?.rejection else {
                return Ok(out);
            };
            let Some(id) = lead_id(&rejection.rejection_id) else {
                return Ok(out);
            };
            let source = rejection.input.and_then(|i| i.source).unwrap_or_default();
            out.observations.push(Observation::LeadRejected(Rejected {
                rejection: id,
                source: source.source,
                campaign: source.campaign,
                channel: source.channel,
                received_at: time(rejection.received_at.as_ref(), envelope_at),
                reasons: rejection.problems.into_iter().map(|p| p.code).collect(),
            }));
        }
        "fairchance.intake.v1.LeadMerged" => {
            let merged = ipb::LeadMerged::decode(bytes)?;
            let Some(id) = lead_id(&merged.lead_id) else {
                return Ok(out);
            };
            let at = time(
                merged.touch.as_ref().and_then(|t| t.received_at.as_ref()),
                envelope_at,
            );
            out.observations.push(Observation::LeadMerged {
                lead: id,
                at,
                do_not_contact: merged.do_not_contact,
            });
            let from = merged
                .touch
                .and_then(|t| t.input)
                .and_then(|i| i.source)
                .map(|s| s.source)
                .unwrap_or_default();
            out.timeline = line(id, at, format!("came back through {from}"));
        }
        "fairchance.intake.v1.ContactOptedOut" => {
            let opted = ipb::ContactOptedOut::decode(bytes)?;
            let leads: Vec<Uuid> = opted.lead_ids.iter().filter_map(|l| lead_id(l)).collect();
            if let Some(first) = leads.first() {
                out.timeline = line(*first, envelope_at, "the contact opted out".into());
            }
            out.observations.push(Observation::ContactOptedOut {
                leads,
                at: envelope_at,
            });
        }
        "fairchance.intake.v1.ContactErased" => {
            let erased = ipb::ContactErased::decode(bytes)?;
            let summary = format!("personal data erased (erasure {})", erased.erasure_id);
            out.erased = erased
                .lead_ids
                .iter()
                .filter_map(|l| lead_id(l))
                .map(|lead| (lead, entry(&service, short, envelope_at, summary.clone())))
                .collect();
        }
        "fairchance.activation.v1.LeadAssigned" => {
            let Some(a) = apb::LeadAssigned::decode(bytes)?.activation else {
                return Ok(out);
            };
            let Some(id) = lead_id(&a.lead_id) else {
                return Ok(out);
            };
            let at = time(a.assigned_at.as_ref(), envelope_at);
            let summary = if a.owner_id.is_empty() {
                format!("queued in team {}", a.team_id)
            } else {
                format!(
                    "assigned to {} (team {}, SLA {}, deadline {})",
                    a.owner_id,
                    a.team_id,
                    a.sla_policy,
                    time(a.deadline.as_ref(), at)
                )
            };
            out.observations.push(Observation::LeadAssigned {
                lead: id,
                owner: a.owner_id,
                at,
            });
            out.timeline = line(id, at, summary);
        }
        "fairchance.activation.v1.LeadActivated" => {
            let e = apb::LeadActivated::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let at = time(e.activated_at.as_ref(), envelope_at);
            let tta = duration(e.time_to_activation.as_ref());
            out.observations.push(Observation::LeadActivated {
                lead: id,
                owner: e.owner_id.clone(),
                at,
                within_sla: e.within_sla,
                time_to_activation: tta,
            });
            out.timeline = line(
                id,
                at,
                format!(
                    "activated by {} {} after arrival, {}",
                    e.owner_id,
                    crate::domain::human(tta),
                    if e.within_sla { "within SLA" } else { "late" }
                ),
            );
        }
        "fairchance.activation.v1.SlaBreached" => {
            let e = apb::SlaBreached::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let cause = apb::FailureCause::try_from(e.cause)
                .ok()
                .and_then(|c| wire(c.as_str_name(), "FAILURE_CAUSE_"))
                .unwrap_or_default();
            let at = time(e.deadline.as_ref(), envelope_at);
            out.observations.push(Observation::SlaBreached {
                lead: id,
                at,
                cause,
            });
            out.timeline = line(id, at, format!("SLA breached: {cause}"));
        }
        "fairchance.activation.v1.EscalationRaised" => {
            let e = apb::EscalationRaised::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let cause = apb::FailureCause::try_from(e.cause)
                .ok()
                .and_then(|c| wire(c.as_str_name(), "FAILURE_CAUSE_"))
                .unwrap_or_default();
            out.observations.push(Observation::EscalationRaised {
                lead: id,
                at: envelope_at,
                cause,
            });
            out.timeline = line(
                id,
                envelope_at,
                format!("escalated to {} ({cause})", e.manager_id),
            );
        }
        "fairchance.activation.v1.LeadReassigned" => {
            let e = apb::LeadReassigned::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let cause = apb::FailureCause::try_from(e.cause)
                .ok()
                .and_then(|c| wire(c.as_str_name(), "FAILURE_CAUSE_"))
                .unwrap_or_default();
            out.observations.push(Observation::LeadReassigned {
                lead: id,
                to_owner: e.to_owner_id.clone(),
                at: envelope_at,
                cause,
            });
            out.timeline = line(
                id,
                envelope_at,
                format!("reassigned to {} ({cause})", e.to_owner_id),
            );
        }
        "fairchance.activation.v1.LeadDoNotContact" => {
            let e = apb::LeadDoNotContact::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            out.observations.push(Observation::LeadDoNotContact {
                lead: id,
                at: envelope_at,
                reason: e.reason.clone(),
            });
            out.timeline = line(id, envelope_at, format!("do not contact ({})", e.reason));
        }
        "fairchance.followup.v1.LeadEnrolled" => {
            let Some(plan) = fpb::LeadEnrolled::decode(bytes)?.plan else {
                return Ok(out);
            };
            let Some(id) = lead_id(&plan.lead_id) else {
                return Ok(out);
            };
            let at = time(plan.enrolled_at.as_ref(), envelope_at);
            out.observations.push(Observation::LeadEnrolled {
                lead: id,
                cadence: plan.cadence_id.clone(),
                at,
            });
            out.timeline = line(id, at, format!("enrolled in cadence {}", plan.cadence_id));
        }
        "fairchance.followup.v1.FollowUpDue" => {
            let Some(task) = fpb::FollowUpDue::decode(bytes)?.task else {
                return Ok(out);
            };
            let Some(id) = lead_id(&task.lead_id) else {
                return Ok(out);
            };
            let step = task.step.unwrap_or_default();
            let at = time(step.fired_at.as_ref(), envelope_at);
            let channel = apb::Channel::try_from(step.channel)
                .ok()
                .and_then(|c| wire(c.as_str_name(), "CHANNEL_"))
                .unwrap_or_default();
            let strategy = fpb::Strategy::try_from(step.strategy)
                .ok()
                .and_then(|s| wire(s.as_str_name(), "STRATEGY_"))
                .unwrap_or_default();
            out.observations.push(Observation::FollowUpDue {
                lead: id,
                channel,
                strategy,
                at,
            });
            out.timeline = line(
                id,
                at,
                format!(
                    "{}: {channel} ({strategy}) due for {}",
                    step.item, task.owner_id
                ),
            );
        }
        "fairchance.followup.v1.TaskCompleted" => {
            let Some(task) = fpb::TaskCompleted::decode(bytes)?.task else {
                return Ok(out);
            };
            let Some(id) = lead_id(&task.lead_id) else {
                return Ok(out);
            };
            let step = task.step.unwrap_or_default();
            let at = time(step.completed_at.as_ref(), envelope_at);
            let outcome = fpb::TaskOutcome::try_from(step.outcome)
                .ok()
                .and_then(|o| wire(o.as_str_name(), "TASK_OUTCOME_"))
                .unwrap_or_default();
            out.observations.push(Observation::TaskCompleted {
                lead: id,
                outcome,
                at,
            });
            out.timeline = line(id, at, format!("{}: {outcome}", step.item));
        }
        "fairchance.followup.v1.StrategyChanged" => {
            let e = fpb::StrategyChanged::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let to = fpb::Strategy::try_from(e.to_strategy)
                .ok()
                .and_then(|s| wire(s.as_str_name(), "STRATEGY_"))
                .unwrap_or_default();
            out.observations.push(Observation::StrategyChanged {
                lead: id,
                to,
                at: envelope_at,
            });
            out.timeline = line(
                id,
                envelope_at,
                format!("strategy changed to {to}: {}", e.reason),
            );
        }
        "fairchance.followup.v1.EngagementRecorded" => {
            let e = fpb::EngagementRecorded::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let at = time(e.occurred_at.as_ref(), envelope_at);
            let kind = fpb::EngagementKind::try_from(e.kind).unwrap_or_default();
            let name = match kind {
                fpb::EngagementKind::Reply => {
                    let sentiment = fpb::ReplySentiment::try_from(e.sentiment)
                        .map(|s| {
                            s.as_str_name()
                                .trim_start_matches("REPLY_SENTIMENT_")
                                .to_lowercase()
                        })
                        .unwrap_or_default();
                    format!("reply_{sentiment}")
                }
                other => other
                    .as_str_name()
                    .trim_start_matches("ENGAGEMENT_KIND_")
                    .to_lowercase(),
            };
            if let Ok(kind) = name.parse::<EngagementKind>() {
                out.observations
                    .push(Observation::EngagementRecorded { lead: id, kind, at });
            }
            out.timeline = line(id, at, format!("{}: {}", name.replace('_', " "), e.effect));
        }
        "fairchance.followup.v1.MomentumEscalated" => {
            let e = fpb::MomentumEscalated::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            out.observations.push(Observation::MomentumEscalated {
                lead: id,
                at: envelope_at,
            });
            out.timeline = line(
                id,
                envelope_at,
                format!(
                    "momentum {:.2} below {:.2}: {} alerted",
                    e.momentum, e.threshold, e.manager_id
                ),
            );
        }
        "fairchance.followup.v1.CadenceStopped" => {
            let e = fpb::CadenceStopped::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            out.observations.push(Observation::CadenceStopped {
                lead: id,
                reason: e.reason.clone(),
                at: envelope_at,
            });
            out.timeline = line(id, envelope_at, format!("cadence stopped: {}", e.reason));
        }
        "fairchance.followup.v1.RecycledToNurture" => {
            let e = fpb::RecycledToNurture::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            out.observations.push(Observation::RecycledToNurture {
                lead: id,
                reason: e.reason.clone(),
                at: envelope_at,
            });
            out.timeline = line(
                id,
                envelope_at,
                format!("recycled to nurture ({})", e.reason),
            );
        }
        "fairchance.proof.v1.ProofDelivered" => {
            let e = ppb::ProofDelivered::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let at = time(e.delivered_at.as_ref(), envelope_at);
            let answers = e
                .answers
                .iter()
                .filter_map(|c| ppb::Checkpoint::try_from(*c).ok())
                .filter_map(|c| wire(c.as_str_name(), "CHECKPOINT_"))
                .collect();
            out.observations.push(Observation::ProofDelivered {
                lead: id,
                asset: e.asset_id.clone(),
                at,
                answers,
            });
            out.timeline = line(id, at, format!("proof delivered: {}", e.asset_id));
        }
        "fairchance.proof.v1.ObjectionRaised" => {
            let e = ppb::ObjectionRaised::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let objection = e.objection.unwrap_or_default();
            let at = time(objection.raised_at.as_ref(), envelope_at);
            if let Some(checkpoint) = ppb::Checkpoint::try_from(objection.checkpoint)
                .ok()
                .and_then(|c| wire(c.as_str_name(), "CHECKPOINT_"))
            {
                out.observations.push(Observation::ObjectionRaised {
                    lead: id,
                    checkpoint,
                    at,
                });
                out.timeline = line(id, at, format!("objection: {checkpoint}"));
            }
        }
        "fairchance.proof.v1.BeliefDebtRecorded" => {
            let e = ppb::BeliefDebtRecorded::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            let debt = e.debt.unwrap_or_default();
            let at = time(debt.computed_at.as_ref(), envelope_at);
            let missing_stages: Vec<_> = debt
                .missing_stages
                .iter()
                .filter_map(|s| ppb::BeliefStage::try_from(*s).ok())
                .filter_map(|s| wire(s.as_str_name(), "BELIEF_STAGE_"))
                .collect();
            let unanswered_objections: Vec<_> = debt
                .unanswered_objections
                .iter()
                .filter_map(|o| ppb::Checkpoint::try_from(o.checkpoint).ok())
                .filter_map(|c| wire(c.as_str_name(), "CHECKPOINT_"))
                .collect();
            out.timeline = line(
                id,
                at,
                format!(
                    "reached sales with {} stage(s) not installed and {} objection(s) unanswered",
                    missing_stages.len(),
                    unanswered_objections.len()
                ),
            );
            out.observations.push(Observation::BeliefDebtRecorded {
                lead: id,
                at,
                missing_stages,
                unanswered_objections,
            });
        }
        "fairchance.proof.v1.BeliefAdvanced" => {
            let e = ppb::BeliefAdvanced::decode(bytes)?;
            let Some(id) = lead_id(&e.lead_id) else {
                return Ok(out);
            };
            if let Some(to) = ppb::BeliefStage::try_from(e.to_stage)
                .ok()
                .and_then(|s| wire(s.as_str_name(), "BELIEF_STAGE_"))
            {
                out.observations.push(Observation::BeliefAdvanced {
                    lead: id,
                    to,
                    at: envelope_at,
                });
                out.timeline = line(id, envelope_at, format!("belief: {to} ({})", e.evidence));
            }
        }
        _ => {}
    }
    Ok(out)
}

fn share(s: &crate::domain::Share) -> f64 {
    s.ratio().unwrap_or(0.0)
}

fn duration_to_proto(d: Option<SignedDuration>) -> Option<prost_types::Duration> {
    d.map(|d| prost_types::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    })
}

pub fn group_to_proto(g: &GroupReport) -> pb::GroupReport {
    pb::GroupReport {
        group: g.key.clone(),
        received: g.received,
        rejected: g.rejected,
        rejections: g
            .rejections_by_reason
            .iter()
            .map(|(reason, count)| pb::ReasonCount {
                reason: reason.clone(),
                count: *count,
            })
            .collect(),
        accepted: g.accepted,
        activated_within_sla_share: share(&g.activated_within_sla),
        median_time_to_activation: duration_to_proto(g.median_time_to_activation),
        p90_time_to_activation: duration_to_proto(g.p90_time_to_activation),
        never_activated_share: share(&g.never_activated),
        touches_before_first_response: g.touches_before_first_response.value().unwrap_or(0.0),
        converted_after_persistence: g.converted_after_persistence.count,
        fair_chance_leads: g.verdicts.fair,
        fair_chance_conversion: share(&g.fair_chance_conversion),
        not_fair_leads: g.verdicts.not_fair,
        not_fair_conversion: share(&g.not_fair_conversion),
        handed_off_with_debt_share: share(&g.belief_debt.with_debt),
        missing_stages_at_handoff: g.belief_debt.missing_stages.value().unwrap_or(0.0),
        top_objections: g
            .top_objections
            .iter()
            .map(|(checkpoint, count)| pb::ReasonCount {
                reason: checkpoint.to_string(),
                count: *count,
            })
            .collect(),
        lead_quality_losses: g.attribution.lead_quality,
        system_failure_losses: g.attribution.system_failure,
        undetermined_losses: g.attribution.undetermined,
    }
}

pub fn funnel_step_to_proto(step: &FunnelStep, previous: Option<&FunnelStep>) -> pb::FunnelStage {
    let dropped = previous
        .and_then(|p| p.drop_off.as_ref())
        .map_or(0, |d| d.count);
    let drop_share = previous
        .and_then(|p| p.drop_off.as_ref())
        .and_then(|d| d.ratio())
        .unwrap_or(0.0);
    pb::FunnelStage {
        stage: step.stage.to_string(),
        count: step.count,
        dropped,
        drop_share,
    }
}

/// A lead's verdict and attribution on the wire.
pub fn verdict_to_proto(
    fact: &LeadFact,
    verdict: &Verdict,
    attribution: Option<&Attribution>,
) -> pb::LeadVerdict {
    let (v, reasons) = match verdict {
        Verdict::Fair => (pb::Verdict::Fair, Vec::new()),
        Verdict::NotFair { reasons } => (
            pb::Verdict::NotFair,
            reasons.iter().map(ToString::to_string).collect(),
        ),
        Verdict::Undetermined { why } => (pb::Verdict::Undetermined, vec![why.clone()]),
    };
    let (attribution, attribution_reason) = match attribution {
        None => (pb::Attribution::Unspecified, String::new()),
        Some(Attribution::LeadQuality { why }) => (pb::Attribution::LeadQuality, why.clone()),
        Some(Attribution::SystemFailure { why }) => (pb::Attribution::SystemFailure, why.clone()),
        Some(Attribution::Undetermined { why }) => (pb::Attribution::Undetermined, why.clone()),
    };
    let latest = fact.latest_outcome();
    pb::LeadVerdict {
        lead_id: fact.lead.to_string(),
        source: fact.source.clone(),
        campaign: fact.campaign.clone(),
        channel: fact.channel.clone(),
        received_at: fact.received_at.map(to_proto_timestamp),
        verdict: v as i32,
        reasons,
        outcome: latest
            .and_then(|o| {
                pb::OutcomeStage::from_str_name(&format!(
                    "OUTCOME_STAGE_{}",
                    o.stage.as_str().to_uppercase()
                ))
            })
            .unwrap_or(pb::OutcomeStage::Unspecified) as i32,
        outcome_reason: latest
            .and_then(|o| o.reason)
            .and_then(|r| {
                pb::OutcomeReason::from_str_name(&format!(
                    "OUTCOME_REASON_{}",
                    r.as_str().to_uppercase()
                ))
            })
            .unwrap_or(pb::OutcomeReason::Unspecified) as i32,
        attribution: attribution as i32,
        attribution_reason,
    }
}

/// A domain value from a wire enum value, for requests.
pub fn from_wire<T: FromStr>(name: &str, prefix: &str) -> Option<T> {
    wire(name, prefix)
}
