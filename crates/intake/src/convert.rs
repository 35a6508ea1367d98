//! Conversions between intake's domain types and its wire types (`proto::intake::v1`), used
//! by the gRPC edge and for the event payloads on the log.

use proto::intake::v1 as pb;
use runtime::grpc::{from_proto_timestamp, to_proto_timestamp};

use crate::domain::{
    Consent, ConsentBasis, Contact, IcpTier, IntentKind, IntentSignal, IntentStrength, Lead,
    LeadInput, Problem, PurchaseTimeframe, Rejection, RejectionState, SourceContext, Touch, Utm,
};

/// A wire lead input as a domain one. Unknown enum numbers (from a newer client) read as
/// unspecified rather than failing the whole lead.
pub fn lead_input_from_proto(input: pb::LeadInput) -> LeadInput {
    let timeframe = input.purchase_timeframe();
    let contact = input.contact.unwrap_or_default();
    let source = input.source.unwrap_or_default();
    let utm = source.utm.unwrap_or_default();
    let intent = input.intent.unwrap_or_default();
    let consent = input.consent.unwrap_or_default();
    LeadInput {
        contact: Contact {
            name: contact.name.into(),
            email: contact.email.into(),
            phone: contact.phone.into(),
            company: contact.company,
            title: contact.title,
            country: contact.country,
            timezone: contact.timezone,
        },
        source: SourceContext {
            source: source.source,
            channel: source.channel,
            campaign: source.campaign,
            ad: source.ad,
            landing_page: source.landing_page,
            referrer: source.referrer,
            utm: Utm {
                source: utm.source,
                medium: utm.medium,
                campaign: utm.campaign,
                term: utm.term,
                content: utm.content,
            },
            message: source.message.into(),
        },
        intent: IntentSignal {
            kind: intent_kind_from_proto(intent.kind()),
            strength: match intent.strength() {
                pb::IntentStrength::Unspecified => IntentStrength::Unspecified,
                pb::IntentStrength::Low => IntentStrength::Low,
                pb::IntentStrength::Medium => IntentStrength::Medium,
                pb::IntentStrength::High => IntentStrength::High,
            },
            detail: intent.detail.into(),
        },
        purchase_timeframe: match timeframe {
            pb::PurchaseTimeframe::Unspecified => PurchaseTimeframe::Unspecified,
            pb::PurchaseTimeframe::Immediate => PurchaseTimeframe::Immediate,
            pb::PurchaseTimeframe::ThisQuarter => PurchaseTimeframe::ThisQuarter,
            pb::PurchaseTimeframe::ThisYear => PurchaseTimeframe::ThisYear,
            pb::PurchaseTimeframe::Later => PurchaseTimeframe::Later,
        },
        consent: Consent {
            basis: match consent.basis() {
                pb::ConsentBasis::Unspecified => ConsentBasis::Unspecified,
                pb::ConsentBasis::OptIn => ConsentBasis::OptIn,
                pb::ConsentBasis::LegitimateInterest => ConsentBasis::LegitimateInterest,
                pb::ConsentBasis::None => ConsentBasis::None,
            },
            captured_at: consent.captured_at.as_ref().and_then(from_proto_timestamp),
            wording: consent.wording,
        },
        attributes: input.attributes.into_iter().collect(),
    }
}

fn intent_kind_from_proto(kind: pb::IntentKind) -> IntentKind {
    match kind {
        pb::IntentKind::Unspecified => IntentKind::Unspecified,
        pb::IntentKind::DemoRequest => IntentKind::DemoRequest,
        pb::IntentKind::ContactSales => IntentKind::ContactSales,
        pb::IntentKind::PricingPage => IntentKind::PricingPage,
        pb::IntentKind::TrialSignup => IntentKind::TrialSignup,
        pb::IntentKind::ContentDownload => IntentKind::ContentDownload,
        pb::IntentKind::Webinar => IntentKind::Webinar,
        pb::IntentKind::EventBadgeScan => IntentKind::EventBadgeScan,
        pb::IntentKind::Other => IntentKind::Other,
    }
}

pub fn lead_input_to_proto(input: &LeadInput) -> pb::LeadInput {
    let c = &input.contact;
    let s = &input.source;
    pb::LeadInput {
        contact: Some(pb::Contact {
            name: c.name.clone().into(),
            email: c.email.clone().into(),
            phone: c.phone.clone().into(),
            company: c.company.clone(),
            title: c.title.clone(),
            country: c.country.clone(),
            timezone: c.timezone.clone(),
        }),
        source: Some(pb::SourceContext {
            source: s.source.clone(),
            channel: s.channel.clone(),
            campaign: s.campaign.clone(),
            ad: s.ad.clone(),
            landing_page: s.landing_page.clone(),
            referrer: s.referrer.clone(),
            // Absent stays absent, so a lead reads back as it was sent.
            utm: Some(pb::Utm {
                source: s.utm.source.clone(),
                medium: s.utm.medium.clone(),
                campaign: s.utm.campaign.clone(),
                term: s.utm.term.clone(),
                content: s.utm.content.clone(),
            })
            .filter(|utm| *utm != pb::Utm::default()),
            message: s.message.clone().into(),
        }),
        intent: Some(pb::IntentSignal {
            kind: match input.intent.kind {
                IntentKind::Unspecified => pb::IntentKind::Unspecified,
                IntentKind::DemoRequest => pb::IntentKind::DemoRequest,
                IntentKind::ContactSales => pb::IntentKind::ContactSales,
                IntentKind::PricingPage => pb::IntentKind::PricingPage,
                IntentKind::TrialSignup => pb::IntentKind::TrialSignup,
                IntentKind::ContentDownload => pb::IntentKind::ContentDownload,
                IntentKind::Webinar => pb::IntentKind::Webinar,
                IntentKind::EventBadgeScan => pb::IntentKind::EventBadgeScan,
                IntentKind::Other => pb::IntentKind::Other,
            } as i32,
            strength: match input.intent.strength {
                IntentStrength::Unspecified => pb::IntentStrength::Unspecified,
                IntentStrength::Low => pb::IntentStrength::Low,
                IntentStrength::Medium => pb::IntentStrength::Medium,
                IntentStrength::High => pb::IntentStrength::High,
            } as i32,
            detail: input.intent.detail.clone().into(),
        })
        .filter(|intent| *intent != pb::IntentSignal::default()),
        purchase_timeframe: match input.purchase_timeframe {
            PurchaseTimeframe::Unspecified => pb::PurchaseTimeframe::Unspecified,
            PurchaseTimeframe::Immediate => pb::PurchaseTimeframe::Immediate,
            PurchaseTimeframe::ThisQuarter => pb::PurchaseTimeframe::ThisQuarter,
            PurchaseTimeframe::ThisYear => pb::PurchaseTimeframe::ThisYear,
            PurchaseTimeframe::Later => pb::PurchaseTimeframe::Later,
        } as i32,
        consent: Some(pb::Consent {
            basis: match input.consent.basis {
                ConsentBasis::Unspecified => pb::ConsentBasis::Unspecified,
                ConsentBasis::OptIn => pb::ConsentBasis::OptIn,
                ConsentBasis::LegitimateInterest => pb::ConsentBasis::LegitimateInterest,
                ConsentBasis::None => pb::ConsentBasis::None,
            } as i32,
            captured_at: input.consent.captured_at.map(to_proto_timestamp),
            wording: input.consent.wording.clone(),
        })
        .filter(|consent| *consent != pb::Consent::default()),
        attributes: input.attributes.clone().into_iter().collect(),
    }
}

pub fn icp_tier_to_proto(tier: IcpTier) -> pb::IcpTier {
    match tier {
        IcpTier::A => pb::IcpTier::A,
        IcpTier::B => pb::IcpTier::B,
        IcpTier::C => pb::IcpTier::C,
        IcpTier::Outside => pb::IcpTier::Outside,
    }
}

pub fn touch_to_proto(touch: &Touch) -> pb::Touch {
    pb::Touch {
        touch_id: touch.id.to_string(),
        received_at: Some(to_proto_timestamp(touch.received_at)),
        input: Some(lead_input_to_proto(&touch.input)),
    }
}

pub fn lead_to_proto(lead: &Lead) -> pb::Lead {
    pb::Lead {
        lead_id: lead.id.to_string(),
        input: Some(lead_input_to_proto(&lead.input)),
        received_at: Some(to_proto_timestamp(lead.received_at)),
        completeness_score: lead.completeness_score,
        icp_tier: icp_tier_to_proto(lead.icp_tier) as i32,
        do_not_contact: lead.do_not_contact,
        touches: lead.touches.iter().map(touch_to_proto).collect(),
    }
}

pub fn problem_to_proto(p: &Problem) -> pb::Problem {
    pb::Problem {
        field: p.field.clone(),
        code: p.code.clone(),
        description: p.description.clone(),
    }
}

pub fn rejection_state_to_proto(state: RejectionState) -> pb::RejectionState {
    match state {
        RejectionState::Pending => pb::RejectionState::Pending,
        RejectionState::Accepted => pb::RejectionState::Accepted,
        RejectionState::Dismissed => pb::RejectionState::Dismissed,
    }
}

pub fn rejection_to_proto(r: &Rejection) -> pb::Rejection {
    pb::Rejection {
        rejection_id: r.id.to_string(),
        input: Some(lead_input_to_proto(&r.input)),
        received_at: Some(to_proto_timestamp(r.received_at)),
        problems: r.problems.iter().map(problem_to_proto).collect(),
        state: rejection_state_to_proto(r.state) as i32,
        lead_id: r.lead_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

/// Blanks a submission's personal data on the wire, by the domain's rule.
fn erase_input(input: &mut Option<pb::LeadInput>) {
    if let Some(wire) = input.as_mut() {
        let mut domain = lead_input_from_proto(std::mem::take(wire));
        domain.erase_personal_data();
        *wire = lead_input_to_proto(&domain);
    }
}

/// One of intake's stored events without the personal data it carries (for an erasure), or
/// `None` when the event type holds none or does not decode.
pub fn redact_event(type_name: &str, payload: &[u8]) -> Option<Vec<u8>> {
    use prost::Message;
    match type_name {
        "fairchance.intake.v1.LeadAccepted" => {
            let mut event = pb::LeadAccepted::decode(payload).ok()?;
            if let Some(lead) = event.lead.as_mut() {
                erase_input(&mut lead.input);
                for touch in &mut lead.touches {
                    erase_input(&mut touch.input);
                }
            }
            Some(event.encode_to_vec())
        }
        "fairchance.intake.v1.LeadMerged" => {
            let mut event = pb::LeadMerged::decode(payload).ok()?;
            if let Some(touch) = event.touch.as_mut() {
                erase_input(&mut touch.input);
            }
            Some(event.encode_to_vec())
        }
        "fairchance.intake.v1.LeadRejected" => {
            let mut event = pb::LeadRejected::decode(payload).ok()?;
            if let Some(rejection) = event.rejection.as_mut() {
                erase_input(&mut rejection.input);
            }
            Some(event.encode_to_vec())
        }
        "fairchance.intake.v1.ContactOptedOut" => {
            let mut event = pb::ContactOptedOut::decode(payload).ok()?;
            event.email.clear();
            event.phone.clear();
            Some(event.encode_to_vec())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_lead_input_survives_the_round_trip() {
        let input = pb::LeadInput {
            contact: Some(pb::Contact {
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
                phone: "+4930123456".into(),
                company: "Analytical Engines".into(),
                title: "CTO".into(),
                country: "DE".into(),
                timezone: "Europe/Berlin".into(),
            }),
            source: Some(pb::SourceContext {
                source: "website-demo-form".into(),
                channel: "paid_search".into(),
                campaign: "q4-brand".into(),
                ad: "ad-7".into(),
                landing_page: "https://example.com/demo".into(),
                referrer: "https://google.com".into(),
                utm: Some(pb::Utm {
                    source: "google".into(),
                    medium: "cpc".into(),
                    campaign: "q4".into(),
                    term: "lead routing".into(),
                    content: "v2".into(),
                }),
                message: "  We need routing for 40 reps.\n".into(),
            }),
            intent: Some(pb::IntentSignal {
                kind: pb::IntentKind::DemoRequest as i32,
                strength: pb::IntentStrength::High as i32,
                detail: "pricing tier question".into(),
            }),
            purchase_timeframe: pb::PurchaseTimeframe::ThisQuarter as i32,
            consent: Some(pb::Consent {
                basis: pb::ConsentBasis::OptIn as i32,
                captured_at: Some(prost_types::Timestamp {
                    seconds: 1_790_000_000,
                    nanos: 5000,
                }),
                wording: "v3".into(),
            }),
            attributes: [("industry".to_owned(), "software".to_owned())]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            lead_input_to_proto(&lead_input_from_proto(input.clone())),
            input
        );
    }
}
