//! The playbook's data-quality, completeness and ICP rules, applied to a normalised lead.
//!
//! A lead that fails [`quality_problems`] is well-formed but not good enough to work: it goes
//! to the review queue instead of being refused, so nobody loses a lead to a strict rule.
//! Every rule addresses lead fields by path (`contact.company`, `attributes.employees`, ...);
//! [`field_value`] is the single place that knows what a path means.

use std::borrow::Cow;

use super::{
    ConsentBasis, IcpTier, IntentKind, IntentStrength, LeadInput, Problem, PurchaseTimeframe,
};
use crate::playbook::{Condition, IntakePlaybook, UnknownSources};

/// Longest attribute name a submission may use (see `validate`), so the longest `attributes.*`
/// path a rule can usefully name.
const ATTRIBUTE_KEY_MAX: usize = 64;

/// The value at `path` in `input`, or `None` when `path` names no field. Enums read as their
/// snake_case names (`demo_request`), with `unspecified` as the empty string; an attribute the
/// lead does not have reads as the empty string, as any attribute name is a valid path.
pub fn field_value<'a>(input: &'a LeadInput, path: &str) -> Option<Cow<'a, str>> {
    if let Some(key) = path.strip_prefix("attributes.") {
        let len = key.chars().count();
        if len == 0 || len > ATTRIBUTE_KEY_MAX {
            return None;
        }
        return Some(Cow::Borrowed(
            input.attributes.get(key).map_or("", String::as_str),
        ));
    }
    let c = &input.contact;
    let s = &input.source;
    let text: &'a str = match path {
        "contact.name" => &c.name,
        "contact.email" => &c.email,
        "contact.phone" => &c.phone,
        "contact.company" => &c.company,
        "contact.title" => &c.title,
        "contact.country" => &c.country,
        "contact.timezone" => &c.timezone,
        "source.source" => &s.source,
        "source.channel" => &s.channel,
        "source.campaign" => &s.campaign,
        "source.ad" => &s.ad,
        "source.landing_page" => &s.landing_page,
        "source.referrer" => &s.referrer,
        "source.message" => &s.message,
        "source.utm.source" => &s.utm.source,
        "source.utm.medium" => &s.utm.medium,
        "source.utm.campaign" => &s.utm.campaign,
        "source.utm.term" => &s.utm.term,
        "source.utm.content" => &s.utm.content,
        "intent.kind" => intent_kind_name(input.intent.kind),
        "intent.strength" => intent_strength_name(input.intent.strength),
        "intent.detail" => &input.intent.detail,
        "purchase_timeframe" => timeframe_name(input.purchase_timeframe),
        "consent.basis" => consent_basis_name(input.consent.basis),
        "consent.wording" => &input.consent.wording,
        "consent.captured_at" => {
            return Some(
                input
                    .consent
                    .captured_at
                    .map_or(Cow::Borrowed(""), |t| t.to_string().into()),
            );
        }
        _ => return None,
    };
    Some(Cow::Borrowed(text))
}

/// Whether `path` names a field of a lead (what the playbook may refer to).
pub fn is_known_field(path: &str) -> bool {
    field_value(&LeadInput::default(), path).is_some()
}

/// The data-quality rules a well-formed lead fails, for the review queue: its source's
/// required fields, blocked email domains, and (if the playbook says so) an unknown source.
pub fn quality_problems(input: &LeadInput, playbook: &IntakePlaybook) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = input.source.source.as_str();
    let rules = playbook.source(name);

    if rules.is_none() && playbook.unknown_sources() == UnknownSources::Reject {
        let known: Vec<&str> = playbook.sources().map(|(n, _)| n).collect();
        let hint = if known.is_empty() {
            "the playbook lists no sources".to_owned()
        } else {
            format!("use one of {}", known.join(", "))
        };
        problems.push(Problem::new(
            "source.source",
            "unknown_source",
            format!(
                "source {name} is not in the playbook; {hint}, or have it added to the playbook"
            ),
        ));
    }

    for requirement in rules.into_iter().flat_map(|r| r.required()) {
        if requirement
            .alternatives()
            .any(|path| is_present(input, path))
        {
            continue;
        }
        let paths: Vec<&str> = requirement.alternatives().collect();
        let wanted = match paths.as_slice() {
            [init @ .., last] if !init.is_empty() => format!("{} or {last}", init.join(", ")),
            _ => requirement.as_str().to_owned(),
        };
        problems.push(Problem::new(
            paths[0],
            "missing_required_field",
            format!("source {name} requires {wanted}; add it"),
        ));
    }

    if let Some((_, domain)) = input.contact.email.rsplit_once('@') {
        let domain = domain.to_lowercase();
        let blocked = playbook
            .blocked_email_domains()
            .chain(rules.into_iter().flat_map(|r| r.blocked_email_domains()))
            .find(|b| is_same_or_subdomain(&domain, b));
        if let Some(blocked) = blocked {
            problems.push(Problem::new(
                "contact.email",
                "blocked_email_domain",
                format!(
                    "email addresses at {} are not accepted as leads; give a work email address",
                    blocked.to_lowercase()
                ),
            ));
        }
    }
    problems
}

/// How complete the lead is, 0..=100: the rounded share of the playbook's completeness weight
/// carried by fields the lead has.
pub fn completeness_score(input: &LeadInput, playbook: &IntakePlaybook) -> u32 {
    let weights = playbook.completeness_weights();
    let total: u64 = weights.iter().map(|&(_, w)| u64::from(w)).sum();
    if total == 0 {
        return 0;
    }
    let present: u64 = weights
        .iter()
        .filter(|(path, _)| is_present(input, path))
        .map(|&(_, w)| u64::from(w))
        .sum();
    // round half up: (present * 100 / total) + 0.5, in integers
    ((present * 200 + total) / (2 * total)) as u32
}

/// The tier of the first ICP rule whose conditions all hold; [`IcpTier::Outside`] if none does.
pub fn icp_tier(input: &LeadInput, playbook: &IntakePlaybook) -> IcpTier {
    playbook
        .icp_rules()
        .iter()
        .find(|rule| rule.conditions().all(|c| holds(c, input)))
        .map_or(IcpTier::Outside, |rule| rule.tier())
}

fn holds(condition: &Condition, input: &LeadInput) -> bool {
    let Some(value) = field_value(input, condition.field()) else {
        return false;
    };
    let value = value.trim();
    if let Some(present) = condition.present()
        && present == value.is_empty()
    {
        return false;
    }
    let lower = value.to_lowercase();
    if let Some(values) = condition.any_of()
        && !values.iter().any(|v| v.trim().to_lowercase() == lower)
    {
        return false;
    }
    if let Some(needles) = condition.contains_any()
        && !needles
            .iter()
            .any(|n| !n.trim().is_empty() && lower.contains(&n.trim().to_lowercase()))
    {
        return false;
    }
    if condition.min().is_some() || condition.max().is_some() {
        // `parse` also reads "NaN" and "inf", which are no head count or revenue.
        let Some(number) = value.parse::<f64>().ok().filter(|n| n.is_finite()) else {
            return false;
        };
        if condition.min().is_some_and(|min| number < min)
            || condition.max().is_some_and(|max| number > max)
        {
            return false;
        }
    }
    true
}

fn is_present(input: &LeadInput, path: &str) -> bool {
    field_value(input, path).is_some_and(|v| !v.trim().is_empty())
}

/// `domain` (lower-case) is `blocked` or one of its subdomains.
fn is_same_or_subdomain(domain: &str, blocked: &str) -> bool {
    let blocked = blocked.to_lowercase();
    match domain.strip_suffix(blocked.as_str()) {
        Some("") => true,
        Some(rest) => rest.ends_with('.'),
        None => false,
    }
}

fn intent_kind_name(kind: IntentKind) -> &'static str {
    match kind {
        IntentKind::Unspecified => "",
        IntentKind::DemoRequest => "demo_request",
        IntentKind::ContactSales => "contact_sales",
        IntentKind::PricingPage => "pricing_page",
        IntentKind::TrialSignup => "trial_signup",
        IntentKind::ContentDownload => "content_download",
        IntentKind::Webinar => "webinar",
        IntentKind::EventBadgeScan => "event_badge_scan",
        IntentKind::Other => "other",
    }
}

fn intent_strength_name(strength: IntentStrength) -> &'static str {
    match strength {
        IntentStrength::Unspecified => "",
        IntentStrength::Low => "low",
        IntentStrength::Medium => "medium",
        IntentStrength::High => "high",
    }
}

fn timeframe_name(timeframe: PurchaseTimeframe) -> &'static str {
    match timeframe {
        PurchaseTimeframe::Unspecified => "",
        PurchaseTimeframe::Immediate => "immediate",
        PurchaseTimeframe::ThisQuarter => "this_quarter",
        PurchaseTimeframe::ThisYear => "this_year",
        PurchaseTimeframe::Later => "later",
    }
}

fn consent_basis_name(basis: ConsentBasis) -> &'static str {
    match basis {
        ConsentBasis::Unspecified => "",
        ConsentBasis::OptIn => "opt_in",
        ConsentBasis::LegitimateInterest => "legitimate_interest",
        ConsentBasis::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Consent, Contact, IntentSignal, SourceContext, Utm};
    use runtime::playbook::parse;

    fn playbook(text: &str) -> IntakePlaybook {
        parse("test.toml", text).unwrap()
    }

    fn lead() -> LeadInput {
        LeadInput {
            contact: Contact {
                name: "Ada Lovelace".into(),
                email: "ada@acme.de".into(),
                country: "DE".into(),
                ..Contact::default()
            },
            source: SourceContext {
                source: "event-badge-scan".into(),
                ..SourceContext::default()
            },
            ..LeadInput::default()
        }
    }

    fn codes(problems: &[Problem]) -> Vec<(&str, &str)> {
        problems
            .iter()
            .map(|p| (p.code.as_str(), p.field.as_str()))
            .collect()
    }

    // --- field_value -------------------------------------------------------------------

    #[test]
    fn field_value_reads_every_kind_of_path() {
        let input = LeadInput {
            contact: Contact {
                name: "n".into(),
                email: "e@x.com".into(),
                phone: "+49301234567".into(),
                company: "co".into(),
                title: "ti".into(),
                country: "DE".into(),
                timezone: "Europe/Berlin".into(),
            },
            source: SourceContext {
                source: "src".into(),
                channel: "ch".into(),
                campaign: "ca".into(),
                ad: "ad".into(),
                landing_page: "lp".into(),
                referrer: "re".into(),
                utm: Utm {
                    source: "us".into(),
                    medium: "um".into(),
                    campaign: "uc".into(),
                    term: "ut".into(),
                    content: "uo".into(),
                },
                message: " msg ".into(),
            },
            intent: IntentSignal {
                kind: IntentKind::DemoRequest,
                strength: IntentStrength::High,
                detail: "de".into(),
            },
            purchase_timeframe: PurchaseTimeframe::ThisQuarter,
            consent: Consent {
                basis: ConsentBasis::OptIn,
                captured_at: Some("2025-03-01T10:00:00Z".parse().unwrap()),
                wording: "wo".into(),
            },
            attributes: [("industry".to_owned(), "Software".to_owned())].into(),
        };
        let expected = [
            ("contact.name", "n"),
            ("contact.email", "e@x.com"),
            ("contact.phone", "+49301234567"),
            ("contact.company", "co"),
            ("contact.title", "ti"),
            ("contact.country", "DE"),
            ("contact.timezone", "Europe/Berlin"),
            ("source.source", "src"),
            ("source.channel", "ch"),
            ("source.campaign", "ca"),
            ("source.ad", "ad"),
            ("source.landing_page", "lp"),
            ("source.referrer", "re"),
            ("source.message", " msg "),
            ("source.utm.source", "us"),
            ("source.utm.medium", "um"),
            ("source.utm.campaign", "uc"),
            ("source.utm.term", "ut"),
            ("source.utm.content", "uo"),
            ("intent.kind", "demo_request"),
            ("intent.strength", "high"),
            ("intent.detail", "de"),
            ("purchase_timeframe", "this_quarter"),
            ("consent.basis", "opt_in"),
            ("consent.wording", "wo"),
            ("consent.captured_at", "2025-03-01T10:00:00Z"),
            ("attributes.industry", "Software"),
            ("attributes.employees", ""),
        ];
        for (path, value) in expected {
            assert_eq!(field_value(&input, path).as_deref(), Some(value), "{path}");
            assert!(is_known_field(path), "{path}");
        }
        // text fields are borrowed, not copied
        assert!(matches!(
            field_value(&input, "contact.name"),
            Some(Cow::Borrowed(_))
        ));

        for path in [
            "contact",
            "contact.fax",
            "source.utm",
            "intent",
            "attributes",
            "attributes.",
            "Contact.name",
            "",
        ] {
            assert_eq!(field_value(&input, path), None, "{path}");
            assert!(!is_known_field(path), "{path}");
        }
        assert!(is_known_field(&format!("attributes.{}", "k".repeat(64))));
        assert!(!is_known_field(&format!("attributes.{}", "k".repeat(65))));
    }

    #[test]
    fn unspecified_enums_read_as_empty() {
        let input = LeadInput::default();
        for path in [
            "intent.kind",
            "intent.strength",
            "purchase_timeframe",
            "consent.basis",
            "consent.captured_at",
        ] {
            assert_eq!(field_value(&input, path).as_deref(), Some(""), "{path}");
        }
    }

    #[test]
    fn enum_names_are_their_serde_names() {
        fn serde_name<T: serde::Serialize>(value: T) -> String {
            serde_json::to_value(value)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        }
        use IntentKind as K;
        for kind in [
            K::DemoRequest,
            K::ContactSales,
            K::PricingPage,
            K::TrialSignup,
            K::ContentDownload,
            K::Webinar,
            K::EventBadgeScan,
            K::Other,
        ] {
            assert_eq!(intent_kind_name(kind), serde_name(kind));
        }
        for s in [
            IntentStrength::Low,
            IntentStrength::Medium,
            IntentStrength::High,
        ] {
            assert_eq!(intent_strength_name(s), serde_name(s));
        }
        use PurchaseTimeframe as T;
        for t in [T::Immediate, T::ThisQuarter, T::ThisYear, T::Later] {
            assert_eq!(timeframe_name(t), serde_name(t));
        }
        use ConsentBasis as B;
        for b in [B::OptIn, B::LegitimateInterest, B::None] {
            assert_eq!(consent_basis_name(b), serde_name(b));
        }
    }

    // --- quality_problems --------------------------------------------------------------

    const BADGE: &str = r#"
[intake.sources.event-badge-scan]
required = ["contact.company", "contact.email|contact.phone", "attributes.booth"]
"#;

    #[test]
    fn required_fields_of_the_source() {
        let pb = playbook(BADGE);
        let mut input = lead();
        let problems = quality_problems(&input, &pb);
        assert_eq!(
            codes(&problems),
            [
                ("missing_required_field", "contact.company"),
                ("missing_required_field", "attributes.booth")
            ]
        );
        assert_eq!(
            problems[0].description,
            "source event-badge-scan requires contact.company; add it"
        );

        input.contact.company = "Acme GmbH".into();
        input.attributes.insert("booth".into(), "B12".into());
        assert!(quality_problems(&input, &pb).is_empty());

        // a blank value is not a value
        input.contact.company = "  ".into();
        assert_eq!(
            codes(&quality_problems(&input, &pb)),
            [("missing_required_field", "contact.company")]
        );
    }

    #[test]
    fn alternatives_need_one_of_them() {
        let pb = playbook(BADGE);
        let mut input = lead();
        input.contact.company = "Acme".into();
        input.attributes.insert("booth".into(), "B12".into());

        input.contact.email.clear();
        let problems = quality_problems(&input, &pb);
        assert_eq!(
            codes(&problems),
            [("missing_required_field", "contact.email")]
        );
        assert_eq!(
            problems[0].description,
            "source event-badge-scan requires contact.email or contact.phone; add it"
        );

        input.contact.phone = "+49301234567".into();
        assert!(quality_problems(&input, &pb).is_empty());
    }

    #[test]
    fn other_sources_have_no_requirements() {
        let pb = playbook(BADGE);
        let mut input = lead();
        input.source.source = "webinar".into();
        assert!(quality_problems(&input, &pb).is_empty());
    }

    #[test]
    fn blocked_email_domains_global_and_per_source() {
        let pb = playbook(
            r#"
[intake]
blocked_email_domains = ["Mailinator.com"]

[intake.sources.webinar]
blocked_email_domains = ["gmail.com"]
"#,
        );
        let mut input = lead();
        input.source.source = "webinar".into();
        let blocked = |email: &str, source: &str| {
            let mut input = input.clone();
            input.contact.email = email.into();
            input.source.source = source.into();
            let problems = quality_problems(&input, &pb);
            assert!(
                problems
                    .iter()
                    .all(|p| p.code == "blocked_email_domain" && p.field == "contact.email")
            );
            !problems.is_empty()
        };
        assert!(blocked("x@mailinator.com", "webinar"));
        assert!(blocked("x@mailinator.com", "csv-import"));
        assert!(
            blocked("x@eu.mailinator.com", "csv-import"),
            "subdomains are blocked too"
        );
        assert!(
            !blocked("x@notmailinator.com", "csv-import"),
            "a suffix is not a subdomain"
        );
        assert!(!blocked("x@mailinator.com.evil.io", "csv-import"));
        assert!(blocked("x@gmail.com", "webinar"));
        assert!(
            !blocked("x@gmail.com", "csv-import"),
            "gmail is only blocked for webinars"
        );
        assert!(!blocked("x@acme.de", "webinar"));

        input.contact.email = "x@mailinator.com".into();
        let problems = quality_problems(&input, &pb);
        assert_eq!(
            problems[0].description,
            "email addresses at mailinator.com are not accepted as leads; give a work email address"
        );

        input.contact.email.clear();
        input.contact.phone = "+49301234567".into();
        assert!(
            quality_problems(&input, &pb).is_empty(),
            "no email, nothing to block"
        );
    }

    #[test]
    fn unknown_sources_rejected_or_accepted() {
        let sources = "[intake.sources.webinar]\n[intake.sources.csv-import]\n";
        let mut input = lead();
        input.source.source = "webnar".into();

        let accept = playbook(sources);
        assert!(quality_problems(&input, &accept).is_empty());

        let reject = playbook(&format!(
            "[intake]\nunknown_sources = \"reject\"\n{sources}"
        ));
        let problems = quality_problems(&input, &reject);
        assert_eq!(codes(&problems), [("unknown_source", "source.source")]);
        assert!(
            problems[0]
                .description
                .contains("source webnar is not in the playbook"),
            "{problems:?}"
        );
        assert!(
            problems[0].description.contains("csv-import, webinar"),
            "{problems:?}"
        );

        input.source.source = "webinar".into();
        assert!(quality_problems(&input, &reject).is_empty());
    }

    #[test]
    fn all_quality_problems_are_reported_together() {
        let pb = playbook(
            "[intake]\nunknown_sources = \"reject\"\nblocked_email_domains = [\"acme.de\"]\n",
        );
        let problems = quality_problems(&lead(), &pb);
        assert_eq!(
            codes(&problems),
            [
                ("unknown_source", "source.source"),
                ("blocked_email_domain", "contact.email")
            ]
        );
    }

    // --- completeness_score ------------------------------------------------------------

    #[test]
    fn completeness_with_default_weights() {
        let pb = IntakePlaybook::default();
        let mut input = LeadInput::default();
        assert_eq!(completeness_score(&input, &pb), 0);

        // name 15 + email 20 + country 5
        input.contact = lead().contact;
        assert_eq!(completeness_score(&input, &pb), 40);

        input.contact.phone = "+49301234567".into();
        input.contact.company = "Acme".into();
        input.contact.title = "CTO".into();
        input.contact.timezone = "Europe/Berlin".into();
        input.source.campaign = "q3".into();
        input.source.message = "hello".into();
        input.intent.kind = IntentKind::DemoRequest;
        assert_eq!(completeness_score(&input, &pb), 100);

        input.source.message = " \n ".into();
        assert_eq!(
            completeness_score(&input, &pb),
            95,
            "a blank message is no message"
        );
    }

    #[test]
    fn completeness_with_custom_weights_rounds_to_nearest() {
        let pb = playbook(
            "[intake.completeness]\n\"contact.email\" = 1\n\"contact.phone\" = 1\n\"attributes.employees\" = 1\n",
        );
        let mut input = LeadInput::default();
        assert_eq!(completeness_score(&input, &pb), 0);
        input.contact.email = "a@b.co".into();
        assert_eq!(completeness_score(&input, &pb), 33, "33.3 rounds down");
        input.contact.phone = "+49301234567".into();
        assert_eq!(completeness_score(&input, &pb), 67, "66.7 rounds up");
        input.attributes.insert("employees".into(), "250".into());
        assert_eq!(completeness_score(&input, &pb), 100);

        // the defaults no longer count: a name adds nothing
        input.contact.name = "Ada".into();
        assert_eq!(completeness_score(&input, &pb), 100);

        let half = playbook(
            "[intake.completeness]\n\"contact.email\" = 1\n\"contact.name\" = 7\n\"contact.title\" = 1\n\"contact.phone\" = 99\n\"contact.company\" = 92\n",
        );
        let mut input = LeadInput::default();
        input.contact.email = "a@b.co".into();
        input.contact.phone = "+49301234567".into();
        assert_eq!(completeness_score(&input, &half), 50, "exactly 50.0");
        input.contact.email.clear();
        input.contact.name = "Ada".into();
        input.contact.title = "CTO".into();
        // 107 / 200 = 53.5 rounds half up
        assert_eq!(completeness_score(&input, &half), 54);
    }

    // --- icp_tier ----------------------------------------------------------------------

    const ICP: &str = r#"
[[intake.icp]]
tier = "A"
when = [
  { field = "attributes.employees", min = 200, max = 5000 },
  { field = "contact.country", any_of = ["de", "AT", "CH"] },
]

[[intake.icp]]
tier = "B"
when = [
  { field = "contact.title", contains_any = ["Head of", "VP", "chief"] },
  { field = "attributes.industry", present = true },
]

[[intake.icp]]
tier = "C"
when = [{ field = "contact.company", present = true }]
"#;

    fn with(tweak: impl FnOnce(&mut LeadInput)) -> LeadInput {
        let mut input = lead();
        tweak(&mut input);
        input
    }

    #[test]
    fn icp_first_matching_rule_wins() {
        let pb = playbook(ICP);
        let a_and_b = with(|i| {
            i.attributes.insert("employees".into(), "800".into());
            i.attributes.insert("industry".into(), "Software".into());
            i.contact.title = "VP Sales".into();
            i.contact.company = "Acme".into();
        });
        assert_eq!(icp_tier(&a_and_b, &pb), IcpTier::A);
        let b_and_c = with(|i| {
            i.attributes.insert("industry".into(), "Software".into());
            i.contact.title = "VP Sales".into();
            i.contact.company = "Acme".into();
        });
        assert_eq!(icp_tier(&b_and_c, &pb), IcpTier::B);
        assert_eq!(
            icp_tier(&with(|i| i.contact.company = "Acme".into()), &pb),
            IcpTier::C
        );
    }

    #[test]
    fn icp_no_matching_rule_is_outside() {
        assert_eq!(icp_tier(&lead(), &playbook(ICP)), IcpTier::Outside);
        assert_eq!(
            icp_tier(&lead(), &IntakePlaybook::default()),
            IcpTier::Outside
        );
    }

    #[test]
    fn icp_min_and_max_are_inclusive_numbers() {
        let pb = playbook(ICP);
        let tier = |employees: &str, country: &str| {
            icp_tier(
                &with(|i| {
                    i.attributes.insert("employees".into(), employees.into());
                    i.contact.country = country.into();
                }),
                &pb,
            )
        };
        assert_eq!(tier("200", "DE"), IcpTier::A);
        assert_eq!(tier("5000", "DE"), IcpTier::A);
        assert_eq!(tier(" 1200.5 ", "CH"), IcpTier::A);
        assert_eq!(tier("199", "DE"), IcpTier::Outside);
        assert_eq!(tier("5001", "DE"), IcpTier::Outside);
        // not a number fails the condition rather than counting as zero
        for odd in ["", "many", "1,000", "NaN", "inf", "200-500"] {
            assert_eq!(tier(odd, "DE"), IcpTier::Outside, "{odd:?}");
        }
        let min_only = playbook(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"attributes.revenue\", min = 1e6 }]\n",
        );
        let rich = with(|i| {
            i.attributes.insert("revenue".into(), "25000000".into());
        });
        assert_eq!(icp_tier(&rich, &min_only), IcpTier::A);
        assert_eq!(
            icp_tier(&lead(), &min_only),
            IcpTier::Outside,
            "absent is not a number"
        );
        let max_only = playbook(
            "[[intake.icp]]\ntier = \"A\"\nwhen = [{ field = \"attributes.revenue\", max = 1e6 }]\n",
        );
        assert_eq!(icp_tier(&rich, &max_only), IcpTier::Outside);
        assert_eq!(
            icp_tier(&lead(), &max_only),
            IcpTier::Outside,
            "absent is not zero"
        );
    }

    #[test]
    fn icp_any_of_ignores_case() {
        let pb = playbook(ICP);
        let tier = |country: &str| {
            icp_tier(
                &with(|i| {
                    i.attributes.insert("employees".into(), "300".into());
                    i.contact.country = country.into();
                }),
                &pb,
            )
        };
        assert_eq!(tier("DE"), IcpTier::A, "rule says \"de\"");
        assert_eq!(tier("at"), IcpTier::A);
        assert_eq!(tier("FR"), IcpTier::Outside);
        assert_eq!(tier(""), IcpTier::Outside);
    }

    #[test]
    fn icp_contains_any_ignores_case() {
        let pb = playbook(ICP);
        let tier = |title: &str| {
            icp_tier(
                &with(|i| {
                    i.attributes.insert("industry".into(), "Software".into());
                    i.contact.title = title.into();
                }),
                &pb,
            )
        };
        assert_eq!(tier("head of marketing"), IcpTier::B);
        assert_eq!(tier("Chief Revenue Officer"), IcpTier::B);
        assert_eq!(tier("svp engineering"), IcpTier::B, "substring match");
        assert_eq!(tier("Engineer"), IcpTier::Outside);
    }

    #[test]
    fn icp_present_true_and_false() {
        let pb = playbook(
            "[[intake.icp]]\ntier = \"C\"\nwhen = [{ field = \"contact.phone\", present = false }, { field = \"intent.kind\", present = true }]\n",
        );
        let demo = with(|i| i.intent.kind = IntentKind::DemoRequest);
        assert_eq!(icp_tier(&demo, &pb), IcpTier::C);
        let with_phone = with(|i| {
            i.intent.kind = IntentKind::DemoRequest;
            i.contact.phone = "+49301234567".into();
        });
        assert_eq!(icp_tier(&with_phone, &pb), IcpTier::Outside);
        assert_eq!(
            icp_tier(&lead(), &pb),
            IcpTier::Outside,
            "unspecified intent is not present"
        );
    }

    #[test]
    fn icp_tests_in_one_condition_must_all_hold() {
        let pb = playbook(
            "[[intake.icp]]\ntier = \"B\"\nwhen = [{ field = \"intent.kind\", any_of = [\"demo_request\", \"contact_sales\"], contains_any = [\"demo\"] }]\n",
        );
        assert_eq!(
            icp_tier(&with(|i| i.intent.kind = IntentKind::DemoRequest), &pb),
            IcpTier::B
        );
        assert_eq!(
            icp_tier(&with(|i| i.intent.kind = IntentKind::ContactSales), &pb),
            IcpTier::Outside
        );
    }

    #[test]
    fn icp_rule_without_conditions_matches_everything() {
        let pb = playbook("[[intake.icp]]\ntier = \"C\"\n");
        assert_eq!(icp_tier(&LeadInput::default(), &pb), IcpTier::C);
    }

    #[test]
    fn the_sample_playbook_scores_a_mid_market_lead_as_a() {
        let pb: IntakePlaybook = parse(
            "deploy/playbook.toml",
            include_str!("../../../../deploy/playbook.toml"),
        )
        .unwrap();
        let input = with(|i| {
            i.source.source = "website-demo-form".into();
            i.contact.company = "Acme GmbH".into();
            i.contact.title = "Head of Sales".into();
            i.attributes.insert("employees".into(), "450".into());
            i.attributes.insert("industry".into(), "Software".into());
            i.intent.kind = IntentKind::DemoRequest;
        });
        assert!(
            quality_problems(&input, &pb).is_empty(),
            "{:?}",
            quality_problems(&input, &pb)
        );
        assert_eq!(icp_tier(&input, &pb), IcpTier::A);
        let mut startup = input.clone();
        startup.attributes.insert("employees".into(), "8".into());
        assert_ne!(icp_tier(&startup, &pb), IcpTier::A);
    }
}
