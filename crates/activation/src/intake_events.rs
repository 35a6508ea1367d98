//! Reading intake's events: the facts activation's rules need, and the context packet the
//! owner works from, taken from a `LeadAccepted` (or a `LeadMerged` touch).

use proto::activation::v1 as apb;
use proto::intake::v1 as ipb;
use uuid::Uuid;

use crate::domain::{IcpTier, IntentKind, IntentStrength, LeadFacts};

/// Why an intake event cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BadEvent {
    #[error("the event has no lead")]
    MissingLead,
    #[error("the lead id is not a UUID")]
    BadLeadId,
}

fn intent_kind(kind: ipb::IntentKind) -> IntentKind {
    match kind {
        ipb::IntentKind::Unspecified => IntentKind::Unspecified,
        ipb::IntentKind::DemoRequest => IntentKind::DemoRequest,
        ipb::IntentKind::ContactSales => IntentKind::ContactSales,
        ipb::IntentKind::PricingPage => IntentKind::PricingPage,
        ipb::IntentKind::TrialSignup => IntentKind::TrialSignup,
        ipb::IntentKind::ContentDownload => IntentKind::ContentDownload,
        ipb::IntentKind::Webinar => IntentKind::Webinar,
        ipb::IntentKind::EventBadgeScan => IntentKind::EventBadgeScan,
        ipb::IntentKind::Other => IntentKind::Other,
    }
}

fn strength(s: ipb::IntentStrength) -> IntentStrength {
    match s {
        ipb::IntentStrength::Unspecified => IntentStrength::Unspecified,
        ipb::IntentStrength::Low => IntentStrength::Low,
        ipb::IntentStrength::Medium => IntentStrength::Medium,
        ipb::IntentStrength::High => IntentStrength::High,
    }
}

fn tier(t: ipb::IcpTier) -> IcpTier {
    match t {
        ipb::IcpTier::A => IcpTier::A,
        ipb::IcpTier::B => IcpTier::B,
        ipb::IcpTier::C => IcpTier::C,
        ipb::IcpTier::Unspecified | ipb::IcpTier::Outside => IcpTier::Outside,
    }
}

fn tier_name(t: IcpTier) -> &'static str {
    match t {
        IcpTier::A => "A",
        IcpTier::B => "B",
        IcpTier::C => "C",
        IcpTier::Outside => "outside",
    }
}

fn strength_name(s: IntentStrength) -> &'static str {
    match s {
        IntentStrength::Unspecified => "",
        IntentStrength::Low => "low",
        IntentStrength::Medium => "medium",
        IntentStrength::High => "high",
    }
}

/// The facts and the context packet of an accepted lead.
pub fn from_accepted(
    event: &ipb::LeadAccepted,
) -> Result<(LeadFacts, apb::ContextPacket), BadEvent> {
    let lead = event.lead.as_ref().ok_or(BadEvent::MissingLead)?;
    let id: Uuid = lead.lead_id.parse().map_err(|_| BadEvent::BadLeadId)?;
    let input = lead.input.clone().unwrap_or_default();
    let contact = input.contact.clone().unwrap_or_default();
    let source = input.source.clone().unwrap_or_default();
    let intent = input.intent.clone().unwrap_or_default();
    let facts = LeadFacts {
        lead: id,
        email_domain: contact
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default(),
        country: contact.country.clone(),
        company: contact.company.clone(),
        source: source.source.clone(),
        channel: source.channel.clone(),
        campaign: source.campaign.clone(),
        landing_page: source.landing_page.clone(),
        message: source.message.clone().into(),
        intent: intent_kind(intent.kind()),
        intent_detail: intent.detail.clone().into(),
        strength: strength(intent.strength()),
        icp_tier: tier(lead.icp_tier()),
        attributes: input.attributes.clone().into_iter().collect(),
        do_not_contact: lead.do_not_contact,
    };
    let packet = apb::ContextPacket {
        name: contact.name,
        email: contact.email,
        phone: contact.phone,
        company: contact.company,
        title: contact.title,
        country: contact.country,
        timezone: contact.timezone,
        source: source.source,
        channel: source.channel,
        campaign: source.campaign,
        landing_page: source.landing_page,
        message: source.message,
        intent_kind: serde_name(facts.intent),
        intent_strength: strength_name(facts.strength).to_owned(),
        icp_tier: tier_name(facts.icp_tier).to_owned(),
        touches: lead.touches.iter().map(touch_line).collect(),
        attributes: facts
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    Ok((facts, packet))
}

/// A re-engagement in one line for the owner: where it came from and what was said.
pub fn touch_line(touch: &ipb::Touch) -> String {
    let input = touch.input.clone().unwrap_or_default();
    let source = input.source.unwrap_or_default();
    let mut line = format!(
        "again via {}",
        if source.source.is_empty() {
            "unknown source"
        } else {
            &source.source
        }
    );
    if !source.campaign.is_empty() {
        line.push_str(&format!(" ({})", source.campaign));
    }
    if !source.message.is_empty() {
        line.push_str(&format!(": \"{}\"", source.message.trim()));
    }
    line
}

fn serde_name(kind: IntentKind) -> String {
    match kind {
        IntentKind::Unspecified => String::new(),
        IntentKind::DemoRequest => "demo_request".into(),
        IntentKind::ContactSales => "contact_sales".into(),
        IntentKind::PricingPage => "pricing_page".into(),
        IntentKind::TrialSignup => "trial_signup".into(),
        IntentKind::ContentDownload => "content_download".into(),
        IntentKind::Webinar => "webinar".into(),
        IntentKind::EventBadgeScan => "event_badge_scan".into(),
        IntentKind::Other => "other".into(),
    }
}
