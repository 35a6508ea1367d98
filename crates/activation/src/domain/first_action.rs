//! The first action: what an owner should do first with a lead, and whether what they did
//! counts as activating it.
//!
//! The plan comes from the playbook (by intent and source: channel, template, allowed
//! alternative channels) and carries talking points built from the lead's preserved
//! context, so the owner never starts blind. Activation is defined, not assumed: an action
//! activates the lead only when the current owner took it, on the planned channel or an
//! allowed alternative, and it references the planned template or the lead's context. An
//! action after the deadline still activates the lead but is recorded as late.

use std::sync::LazyLock;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Channel, IcpTier, IntentKind, IntentStrength, LeadFacts, OwnerId};
use crate::playbook::{ActivationPlaybook, PlanRule};

/// Longest quote of the lead's own message in a talking point; the full text stays in the
/// context packet.
const QUOTE_MAX_CHARS: usize = 280;

/// What the owner should do first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstActionPlan {
    /// Name of the playbook plan this came from, for the audit trail.
    pub plan: String,
    pub channel: Channel,
    pub template: String,
    /// Channels that also count as a first action (the lead gave no phone, ...).
    pub alternatives: Vec<Channel>,
    /// How an action refers to the lead's context packet: the lead id.
    pub context_ref: String,
    /// What the owner should know before reaching out, most important first; never empty.
    pub talking_points: Vec<String>,
}

/// The plan for a lead: the first playbook plan whose conditions hold. A validated playbook
/// ends with a plan without conditions; otherwise the last plan (or a built-in email plan)
/// applies, so every lead gets one.
pub fn plan_first_action(lead: &LeadFacts, playbook: &ActivationPlaybook) -> FirstActionPlan {
    static BUILT_IN: LazyLock<PlanRule> = LazyLock::new(PlanRule::built_in);
    let plans = playbook.plans();
    let rule = plans
        .iter()
        .find(|p| p.matches(lead))
        .or(plans.last())
        .unwrap_or(&BUILT_IN);
    FirstActionPlan {
        plan: rule.name().to_owned(),
        channel: rule.channel(),
        template: rule.template().to_owned(),
        alternatives: rule.alternatives().collect(),
        context_ref: lead.lead.to_string(),
        talking_points: talking_points(lead),
    }
}

impl PlanRule {
    /// Whether the plan applies to a lead; an absent condition holds for every lead.
    pub fn matches(&self, lead: &LeadFacts) -> bool {
        (self.intents().is_empty() || self.intents().contains(&lead.intent))
            && (self.sources().is_empty()
                || self
                    .sources()
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(lead.source.trim())))
    }
}

/// Talking points from the lead's context: what they asked, their intent, the page and
/// campaign that brought them, and who the company is. A lead with no context at all gets
/// a point saying so, so the owner knows to start with discovery.
pub fn talking_points(lead: &LeadFacts) -> Vec<String> {
    let mut points = Vec::new();
    let message = squash(&lead.message);
    if !message.is_empty() {
        points.push(format!(
            "They wrote: \"{}\"",
            truncate(&message, QUOTE_MAX_CHARS)
        ));
    }
    if let Some(intent) = intent_point(lead) {
        points.push(intent);
    }
    let page = lead.landing_page.trim();
    if !page.is_empty() {
        points.push(format!("Page: {page}"));
    }
    let campaign = lead.campaign.trim();
    if !campaign.is_empty() {
        points.push(format!("Campaign: {campaign}"));
    }
    if let Some(source) = source_point(lead) {
        points.push(source);
    }
    if let Some(company) = company_point(lead) {
        points.push(company);
    }
    if points.is_empty() {
        points.push(
            "No context was captured with this lead: open by asking what made them get in \
             touch."
                .to_owned(),
        );
    }
    points
}

fn intent_point(lead: &LeadFacts) -> Option<String> {
    let detail = squash(&lead.intent_detail);
    if lead.intent == IntentKind::Unspecified
        && lead.strength == IntentStrength::Unspecified
        && detail.is_empty()
    {
        return None;
    }
    let mut text = format!("Intent: {}", lead.intent.label());
    let strength = match lead.strength {
        IntentStrength::Unspecified => None,
        IntentStrength::Low => Some("low"),
        IntentStrength::Medium => Some("medium"),
        IntentStrength::High => Some("high"),
    };
    if let Some(strength) = strength {
        text.push_str(&format!(" ({strength})"));
    }
    if !detail.is_empty() {
        text.push_str(&format!(" - {}", truncate(&detail, QUOTE_MAX_CHARS)));
    }
    Some(text)
}

fn source_point(lead: &LeadFacts) -> Option<String> {
    let (source, channel) = (lead.source.trim(), lead.channel.trim());
    match (source.is_empty(), channel.is_empty()) {
        (true, true) => None,
        (false, true) => Some(format!("Came in via {source}")),
        (true, false) => Some(format!("Came in via {channel}")),
        (false, false) => Some(format!("Came in via {source} ({channel})")),
    }
}

fn company_point(lead: &LeadFacts) -> Option<String> {
    let mut facts = Vec::new();
    match lead.icp_tier {
        IcpTier::A => facts.push("ICP tier A".to_owned()),
        IcpTier::B => facts.push("ICP tier B".to_owned()),
        IcpTier::C => facts.push("ICP tier C".to_owned()),
        IcpTier::Outside => {}
    }
    let employees = lead.attribute("employees");
    if !employees.is_empty() {
        facts.push(format!("{employees} employees"));
    }
    for key in ["industry", "segment"] {
        let value = lead.attribute(key);
        if !value.is_empty() {
            facts.push(format!("{key} {value}"));
        }
    }
    let company = lead.company.trim();
    if company.is_empty() && facts.is_empty() {
        return None;
    }
    if lead.icp_tier == IcpTier::Outside {
        facts.push("outside the ICP".to_owned());
    }
    let name = if company.is_empty() {
        "name not given"
    } else {
        company
    };
    Some(format!("Company: {name} ({})", facts.join(", ")))
}

/// Collapses runs of whitespace (line breaks in a form message) into single spaces.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A first action as an owner's tooling reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstAction {
    pub owner: OwnerId,
    pub channel: Channel,
    /// The template used or the lead's context reference (its id).
    pub reference: String,
    pub at: Timestamp,
}

/// The SLA timer of an assignment: when the clock started (the lead arrived) and when the
/// first action is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    pub started_at: Timestamp,
    pub deadline: Timestamp,
}

/// A first action that activated the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationOutcome {
    /// False for a late activation: the action came after the deadline.
    pub within_sla: bool,
    /// From the lead's arrival to the action (zero if the reported time is earlier).
    pub time_to_activation: SignedDuration,
}

/// Why a reported action does not activate the lead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Irrelevant {
    #[error("{by} is not the lead's current owner ({})", holder(current.as_ref()))]
    NotCurrentOwner {
        by: OwnerId,
        current: Option<OwnerId>,
    },
    #[error(
        "channel {channel} is neither the planned {planned} nor an allowed alternative ({})",
        list(alternatives)
    )]
    ChannelNotPlanned {
        channel: Channel,
        planned: Channel,
        alternatives: Vec<Channel>,
    },
    #[error(
        "reference {reference:?} is neither the planned template {template:?} nor the lead's \
         context {context_ref:?}"
    )]
    NoContextReference {
        reference: String,
        template: String,
        context_ref: String,
    },
}

fn holder(current: Option<&OwnerId>) -> String {
    current.map_or("it has none".to_owned(), |c| format!("it is {c}"))
}

fn list(channels: &[Channel]) -> String {
    if channels.is_empty() {
        return "none".to_owned();
    }
    channels
        .iter()
        .map(Channel::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides whether `action` activates a lead planned as `plan`, held by `current_owner`,
/// under `clock`. The checks run in the order of the reasons in [`Irrelevant`] and the first
/// that fails is reported.
pub fn check_first_action(
    plan: &FirstActionPlan,
    current_owner: Option<&OwnerId>,
    clock: &SlaClock,
    action: &FirstAction,
) -> Result<ActivationOutcome, Irrelevant> {
    if current_owner != Some(&action.owner) {
        return Err(Irrelevant::NotCurrentOwner {
            by: action.owner.clone(),
            current: current_owner.cloned(),
        });
    }
    if action.channel != plan.channel && !plan.alternatives.contains(&action.channel) {
        return Err(Irrelevant::ChannelNotPlanned {
            channel: action.channel,
            planned: plan.channel,
            alternatives: plan.alternatives.clone(),
        });
    }
    let reference = action.reference.trim();
    let names_template = !plan.template.is_empty() && reference == plan.template;
    if !names_template && reference != plan.context_ref {
        return Err(Irrelevant::NoContextReference {
            reference: action.reference.clone(),
            template: plan.template.clone(),
            context_ref: plan.context_ref.clone(),
        });
    }
    Ok(ActivationOutcome {
        within_sla: action.at <= clock.deadline,
        time_to_activation: action
            .at
            .duration_since(clock.started_at)
            .max(SignedDuration::ZERO),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn playbook() -> ActivationPlaybook {
        crate::playbook::tests::sample()
    }

    const LEAD: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    fn demo_lead() -> LeadFacts {
        LeadFacts {
            lead: LEAD,
            email_domain: "acme.de".into(),
            country: "DE".into(),
            company: "Acme GmbH".into(),
            source: "website-demo-form".into(),
            channel: "paid-search".into(),
            campaign: "spring-launch".into(),
            landing_page: "https://fairchance.example/demo".into(),
            message: "We need SSO for 300 users.\n\nCan you show the admin console?".into(),
            intent: IntentKind::DemoRequest,
            intent_detail: Default::default(),
            strength: IntentStrength::High,
            icp_tier: IcpTier::A,
            attributes: BTreeMap::from([
                ("employees".into(), "300".into()),
                ("industry".into(), "manufacturing".into()),
            ]),
            do_not_contact: false,
        }
    }

    #[test]
    fn plans_follow_intent_and_source() {
        use Channel::*;
        let pb = playbook();
        let with = |intent: IntentKind, source: &str| LeadFacts {
            intent,
            source: source.into(),
            ..LeadFacts::default()
        };
        let cases = [
            (
                with(IntentKind::DemoRequest, "website-demo-form"),
                "call-demo",
                Call,
                "demo-call-opener",
                vec![Email, Sms],
            ),
            (
                with(IntentKind::ContactSales, ""),
                "call-demo",
                Call,
                "demo-call-opener",
                vec![Email, Sms],
            ),
            (
                with(IntentKind::EventBadgeScan, "event-badge-scan"),
                "event-follow-up",
                Email,
                "event-recap",
                vec![Linkedin, Call],
            ),
            (
                with(IntentKind::Other, "Partner-Referral"),
                "partner-intro",
                Email,
                "partner-intro",
                vec![Call],
            ),
            (
                with(IntentKind::PricingPage, "pricing-page-chat"),
                "pricing-follow-up",
                Call,
                "pricing-questions",
                vec![Email],
            ),
            (
                with(IntentKind::ContentDownload, "content-download"),
                "nurture-email",
                Email,
                "content-follow-up",
                vec![Linkedin],
            ),
            (
                with(IntentKind::Unspecified, ""),
                "nurture-email",
                Email,
                "content-follow-up",
                vec![Linkedin],
            ),
        ];
        for (lead, name, channel, template, alternatives) in cases {
            let plan = plan_first_action(&lead, &pb);
            assert_eq!(
                (
                    plan.plan.as_str(),
                    plan.channel,
                    plan.template.as_str(),
                    plan.alternatives
                ),
                (name, channel, template, alternatives),
                "{lead:?}"
            );
            assert_eq!(plan.context_ref, Uuid::nil().to_string());
        }
    }

    #[test]
    fn talking_points_carry_the_preserved_context() {
        let plan = plan_first_action(&demo_lead(), &playbook());
        assert_eq!(
            plan.talking_points,
            [
                "They wrote: \"We need SSO for 300 users. Can you show the admin console?\"",
                "Intent: demo request (high)",
                "Page: https://fairchance.example/demo",
                "Campaign: spring-launch",
                "Came in via website-demo-form (paid-search)",
                "Company: Acme GmbH (ICP tier A, 300 employees, industry manufacturing)",
            ]
        );
    }

    #[test]
    fn talking_points_use_what_there_is_and_are_never_empty() {
        let long = "x".repeat(400);
        let cases: Vec<(LeadFacts, Vec<String>)> = vec![
            (
                LeadFacts::default(),
                vec![
                    "No context was captured with this lead: open by asking what made them get \
                     in touch."
                        .into(),
                ],
            ),
            (
                LeadFacts {
                    message: long.clone().into(),
                    ..LeadFacts::default()
                },
                vec![format!("They wrote: \"{}...\"", &long[..280])],
            ),
            (
                LeadFacts {
                    intent_detail: "asked about SAP".into(),
                    ..LeadFacts::default()
                },
                vec!["Intent: unspecified interest - asked about SAP".into()],
            ),
            (
                LeadFacts {
                    channel: "linkedin-ads".into(),
                    company: "Initech".into(),
                    ..LeadFacts::default()
                },
                vec![
                    "Came in via linkedin-ads".into(),
                    "Company: Initech (outside the ICP)".into(),
                ],
            ),
            (
                LeadFacts {
                    icp_tier: IcpTier::C,
                    attributes: BTreeMap::from([("segment".into(), "smb".into())]),
                    ..LeadFacts::default()
                },
                vec!["Company: name not given (ICP tier C, segment smb)".into()],
            ),
        ];
        for (lead, want) in cases {
            assert_eq!(talking_points(&lead), want, "{lead:?}");
        }
    }

    fn clock() -> SlaClock {
        SlaClock {
            started_at: ts("2026-03-25T09:00:00Z"),
            deadline: ts("2026-03-25T09:05:00Z"),
        }
    }

    fn action(owner: &str, channel: Channel, reference: &str, at: &str) -> FirstAction {
        FirstAction {
            owner: owner.into(),
            channel,
            reference: reference.into(),
            at: ts(at),
        }
    }

    #[test]
    fn a_relevant_action_activates_in_time_or_late() {
        let plan = plan_first_action(&demo_lead(), &playbook());
        let lena = OwnerId::from("lena");
        let ctx = LEAD.to_string();
        let cases = [
            (
                action(
                    "lena",
                    Channel::Call,
                    "demo-call-opener",
                    "2026-03-25T09:03:00Z",
                ),
                true,
                180,
            ),
            // an allowed alternative referencing the context
            (
                action("lena", Channel::Email, &ctx, "2026-03-25T09:04:59Z"),
                true,
                299,
            ),
            (
                action(
                    "lena",
                    Channel::Sms,
                    " demo-call-opener ",
                    "2026-03-25T09:05:00Z",
                ),
                true,
                300,
            ),
            // after the deadline: still activated, but late
            (
                action(
                    "lena",
                    Channel::Call,
                    "demo-call-opener",
                    "2026-03-25T09:05:01Z",
                ),
                false,
                301,
            ),
            (
                action("lena", Channel::Call, &ctx, "2026-03-26T09:00:00Z"),
                false,
                86_400,
            ),
            // a clock that ran behind: no negative time to activation
            (
                action("lena", Channel::Call, &ctx, "2026-03-25T08:59:00Z"),
                true,
                0,
            ),
        ];
        for (action, within_sla, secs) in cases {
            assert_eq!(
                check_first_action(&plan, Some(&lena), &clock(), &action),
                Ok(ActivationOutcome {
                    within_sla,
                    time_to_activation: SignedDuration::from_secs(secs)
                }),
                "{action:?}"
            );
        }
    }

    #[test]
    fn an_irrelevant_action_is_rejected_with_the_reason() {
        let plan = plan_first_action(&demo_lead(), &playbook());
        let lena = OwnerId::from("lena");
        let at = "2026-03-25T09:01:00Z";
        let cases = [
            (
                Some(&lena),
                action("jonas", Channel::Call, "demo-call-opener", at),
                "jonas is not the lead's current owner (it is lena)",
            ),
            (
                None,
                action("jonas", Channel::Call, "demo-call-opener", at),
                "jonas is not the lead's current owner (it has none)",
            ),
            (
                Some(&lena),
                action("lena", Channel::Linkedin, "demo-call-opener", at),
                "channel linkedin is neither the planned call nor an allowed alternative (email, sms)",
            ),
            (
                Some(&lena),
                action("lena", Channel::Call, "generic-hello", at),
                "reference \"generic-hello\" is neither the planned template \"demo-call-opener\" \
                 nor the lead's context \"01900000-0000-7000-8000-000000000001\"",
            ),
            (
                Some(&lena),
                action("lena", Channel::Call, "", at),
                "reference \"\" is neither the planned template",
            ),
        ];
        for (owner, action, want) in cases {
            let err = check_first_action(&plan, owner, &clock(), &action).unwrap_err();
            assert!(err.to_string().starts_with(want), "{err}");
        }
    }

    #[test]
    fn an_empty_template_is_not_a_reference() {
        let mut plan = plan_first_action(&demo_lead(), &playbook());
        plan.template = String::new();
        let lena = OwnerId::from("lena");
        let err = check_first_action(
            &plan,
            Some(&lena),
            &clock(),
            &action("lena", Channel::Call, "", "2026-03-25T09:01:00Z"),
        );
        assert!(matches!(err, Err(Irrelevant::NoContextReference { .. })));
        let msg = Irrelevant::ChannelNotPlanned {
            channel: Channel::Sms,
            planned: Channel::Email,
            alternatives: vec![],
        };
        assert!(msg.to_string().ends_with("(none)"), "{msg}");
    }
}
