//! Cadence selection: which cadence a lead is enrolled in.
//!
//! The playbook's rules are tried in order and the first whose conditions all hold decides
//! (an absent condition holds for every lead); a lead no rule matches follows the default
//! cadence. Values compare trimmed and case-insensitively, as operators write them.

use super::LeadFacts;
use crate::playbook::{Cadence, FollowupPlaybook, Rule};

/// The cadence for a lead: the first matching rule's, else the default. `None` only when the
/// playbook has no cadences (or, unvalidated, names one it does not define).
pub fn select_cadence<'a>(playbook: &'a FollowupPlaybook, lead: &LeadFacts) -> Option<&'a Cadence> {
    playbook
        .rules()
        .iter()
        .find(|rule| rule.matches(lead))
        .map(Rule::cadence)
        .or(playbook.default_cadence())
        .and_then(|id| playbook.cadence(id))
}

/// Why [`select_cadence`] picks what it picks, for the audit trail: the matching rule, or
/// the default.
pub fn chosen_by(playbook: &FollowupPlaybook, lead: &LeadFacts) -> String {
    match playbook.rules().iter().find(|rule| rule.matches(lead)) {
        Some(rule) => format!("rule {}", rule.name()),
        None => "default cadence".into(),
    }
}

impl Rule {
    /// Whether the rule applies to a lead.
    pub fn matches(&self, lead: &LeadFacts) -> bool {
        holds(self.intents(), &lead.intent_kind)
            && holds(self.sources().iter().map(String::as_str), &lead.source)
            && holds(self.segments().iter().map(String::as_str), &lead.segment)
            && holds(self.icp_tiers(), &lead.icp_tier)
    }
}

/// A condition holds when it lists nothing or lists the lead's value.
fn holds<'a>(wanted: impl Iterator<Item = &'a str>, have: &str) -> bool {
    let mut wanted = wanted.peekable();
    wanted.peek().is_none() || wanted.any(|w| w.trim().eq_ignore_ascii_case(have.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::tests::example;

    fn lead(intent: &str, source: &str, segment: &str, tier: &str) -> LeadFacts {
        LeadFacts {
            intent_kind: intent.into(),
            source: source.into(),
            segment: segment.into(),
            icp_tier: tier.into(),
            ..LeadFacts::default()
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_the_default_takes_the_rest() {
        let pb = example();
        let cases = [
            // intent and tier
            (lead("demo_request", "web", "", "A"), "hot-demo"),
            (lead("contact_sales", "web", "", "b"), "hot-demo"),
            // the tier does not match: on to the next rules, then the default
            (lead("demo_request", "web", "", "C"), "standard"),
            // intent alone
            (
                lead("event_badge_scan", "saastr", "", "A"),
                "event-followup",
            ),
            // intent and segment
            (lead("pricing_page", "web", " Enterprise ", "C"), "hot-demo"),
            (lead("pricing_page", "web", "smb", "C"), "standard"),
            // source alone, whatever the rest
            (
                lead("webinar", "Partner-Referral", "", "outside"),
                "hot-demo",
            ),
            // rule order: a badge scan from a partner matches "events" first
            (
                lead("event_badge_scan", "partner-referral", "", "C"),
                "event-followup",
            ),
            // nothing matches
            (lead("", "", "", ""), "standard"),
        ];
        for (facts, want) in cases {
            let cadence = select_cadence(&pb, &facts).map(Cadence::id);
            assert_eq!(cadence, Some(want), "{facts:?}");
        }
    }

    #[test]
    fn no_cadences_select_nothing() {
        let pb = FollowupPlaybook::default();
        assert!(select_cadence(&pb, &lead("demo_request", "", "", "A")).is_none());
    }
}
