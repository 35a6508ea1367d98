//! Routing: which team a lead belongs to, and for a known account, which owner.
//!
//! Account matching comes first, because a company we already work with should hear from
//! the person who knows it, not from whoever is next in a rotation. Then the playbook's
//! routes are tried in order and the first that matches decides; a lead no route matches
//! goes to the default team. The [`Route`] records why, for the audit trail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LeadFacts, OwnerId, TeamId};
use crate::playbook::{ActivationPlaybook, RouteRule};

/// Where a lead goes and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub team: TeamId,
    /// The account owner, when the lead belongs to a known account.
    pub owner: Option<OwnerId>,
    pub reason: RouteReason,
}

/// Why a lead went where it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RouteReason {
    /// The email domain (or a parent domain of it) belongs to an account.
    Account { domain: String },
    /// The route at `index` (0-based, playbook order) named `name` matched.
    Rule { index: usize, name: String },
    /// No route matched: the playbook's default team.
    Default,
}

/// Routes a lead. `accounts` are the accounts upserted at run time (domain → owner, domains
/// lower-case); they take precedence over the playbook's for the same domain because they
/// are the newer information. An account whose owner the playbook does not know is skipped:
/// a lead cannot go to a stranger.
pub fn route(
    lead: &LeadFacts,
    playbook: &ActivationPlaybook,
    accounts: &BTreeMap<String, OwnerId>,
) -> Route {
    if let Some(route) = account_route(lead, playbook, accounts) {
        return route;
    }
    for (index, rule) in playbook.routes().iter().enumerate() {
        if rule.matches(lead) {
            return Route {
                team: rule.team().clone(),
                owner: None,
                reason: RouteReason::Rule {
                    index,
                    name: rule.name().to_owned(),
                },
            };
        }
    }
    Route {
        team: playbook.default_team().clone(),
        owner: None,
        reason: RouteReason::Default,
    }
}

/// The most specific account domain the lead's email domain falls under.
fn account_route(
    lead: &LeadFacts,
    playbook: &ActivationPlaybook,
    accounts: &BTreeMap<String, OwnerId>,
) -> Option<Route> {
    let domain = lead
        .email_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    domain_and_parents(&domain).find_map(|candidate| {
        let owner_id = accounts
            .get(candidate)
            .or_else(|| playbook.account_owner(candidate))?;
        let owner = playbook.owner(owner_id)?;
        Some(Route {
            team: owner.team().clone(),
            owner: Some(owner_id.clone()),
            reason: RouteReason::Account {
                domain: candidate.to_owned(),
            },
        })
    })
}

/// `eu.sales.acme.com`, `sales.acme.com`, `acme.com`: the domain and its parents, most
/// specific first, never a bare top-level domain (no account owns all of `.com`).
fn domain_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |d| {
        d.split_once('.').map(|(_, parent)| parent)
    })
    .filter(|d| d.contains('.') && !d.starts_with('.'))
}

impl RouteRule {
    /// Whether every condition of the rule holds; a rule without conditions matches all.
    /// Text comparisons ignore case. A size condition does not match a lead whose size is
    /// unknown: an unknown company is not an enterprise.
    pub fn matches(&self, lead: &LeadFacts) -> bool {
        let one_of = |values: &[String], value: &str| {
            values.is_empty() || values.iter().any(|v| v.eq_ignore_ascii_case(value.trim()))
        };
        let mut countries = self.countries().peekable();
        let country_ok = countries.peek().is_none()
            || countries.any(|c| c.eq_ignore_ascii_case(lead.country.trim()));
        let size_ok = match (self.employees_min(), self.employees_max()) {
            (None, None) => true,
            (min, max) => lead.employees().is_some_and(|n| {
                min.is_none_or(|min| n >= min as f64) && max.is_none_or(|max| n <= max as f64)
            }),
        };
        country_ok
            && one_of(self.sources(), &lead.source)
            && (self.intents().is_empty() || self.intents().contains(&lead.intent))
            && (self.icp_tiers().is_empty() || self.icp_tiers().contains(&lead.icp_tier))
            && one_of(self.industries(), lead.attribute("industry"))
            && one_of(self.segments(), lead.attribute("segment"))
            && size_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IcpTier, IntentKind};

    fn playbook() -> ActivationPlaybook {
        crate::playbook::tests::sample()
    }

    fn lead(domain: &str, country: &str, employees: &str) -> LeadFacts {
        let mut lead = LeadFacts {
            email_domain: domain.into(),
            country: country.into(),
            ..LeadFacts::default()
        };
        if !employees.is_empty() {
            lead.attributes.insert("employees".into(), employees.into());
        }
        lead
    }

    fn rule(name: &str, index: usize) -> RouteReason {
        RouteReason::Rule {
            index,
            name: name.into(),
        }
    }

    #[test]
    fn routes_are_tried_in_order() {
        let pb = playbook();
        let none = BTreeMap::new();
        let mut partner = lead("example.org", "DE", "5000");
        partner.source = "partner-referral".into();
        let mut regulated = lead("example.org", "US", "800");
        regulated
            .attributes
            .insert("industry".into(), "Healthcare".into());
        regulated.icp_tier = IcpTier::A;
        let mut small_regulated = regulated.clone();
        small_regulated
            .attributes
            .insert("employees".into(), "80".into());
        let mut outside_icp = regulated.clone();
        outside_icp.icp_tier = IcpTier::Outside;
        let mut event = lead("example.org", "FR", "");
        event.intent = IntentKind::EventBadgeScan;
        let mut strategic = lead("example.org", "BR", "");
        strategic
            .attributes
            .insert("segment".into(), "strategic".into());
        let cases = [
            // partner referrals come first, whatever the size
            (partner, "dach", rule("partner-referrals", 0)),
            (
                lead("example.org", "DE", "5000"),
                "enterprise",
                rule("enterprise", 1),
            ),
            (
                lead("example.org", "US", "2000"),
                "enterprise",
                rule("enterprise", 1),
            ),
            // industry, size and ICP tier must all hold
            (regulated, "enterprise", rule("regulated-industries", 2)),
            (small_regulated, "na", rule("north-america", 5)),
            (outside_icp, "na", rule("north-america", 5)),
            (lead("example.org", "at", "300"), "dach", rule("dach", 3)),
            (lead("example.org", "CH", ""), "dach", rule("dach", 3)),
            (
                lead("example.org", "GB", "1999"),
                "uki",
                rule("uk-and-ireland", 4),
            ),
            (
                lead("example.org", "IE", "10"),
                "uki",
                rule("uk-and-ireland", 4),
            ),
            (
                lead("example.org", "CA", "abc"),
                "na",
                rule("north-america", 5),
            ),
            (event, "uki", rule("events-europe", 6)),
            (strategic, "enterprise", rule("strategic-segment", 7)),
            // nothing matches: the default team
            (lead("example.org", "BR", ""), "na", RouteReason::Default),
        ];
        for (lead, team, reason) in cases {
            let route = route(&lead, &pb, &none);
            assert_eq!(route.team.as_str(), team, "{lead:?}");
            assert_eq!(route.reason, reason, "{lead:?}");
            assert_eq!(route.owner, None);
        }
    }

    #[test]
    fn accounts_win_and_match_parent_domains() {
        let pb = playbook();
        let none = BTreeMap::new();
        let cases = [
            ("siemens.com", Some(("henrik", "enterprise", "siemens.com"))),
            (
                "healthineers.siemens.com",
                Some(("henrik", "enterprise", "siemens.com")),
            ),
            (
                "SIEMENS.COM.",
                Some(("henrik", "enterprise", "siemens.com")),
            ),
            (
                "acme-logistics.co.uk",
                Some(("oliver", "uki", "acme-logistics.co.uk")),
            ),
            ("co.uk", None),
            ("notsiemens.com", None),
            ("siemens.com.evil.io", None),
            ("", None),
        ];
        for (domain, want) in cases {
            let route = route(&lead(domain, "DE", "300"), &pb, &none);
            match want {
                Some((owner, team, matched)) => {
                    assert_eq!(route.owner, Some(owner.into()), "{domain}");
                    assert_eq!(route.team.as_str(), team, "{domain}");
                    assert_eq!(
                        route.reason,
                        RouteReason::Account {
                            domain: matched.into()
                        }
                    );
                }
                None => assert_eq!(route.reason, rule("dach", 3), "{domain}"),
            }
        }
    }

    #[test]
    fn runtime_accounts_override_the_playbook_and_unknown_owners_are_skipped() {
        let pb = playbook();
        let accounts = BTreeMap::from([
            ("siemens.com".to_owned(), OwnerId::from("lena")),
            ("newco.io".to_owned(), OwnerId::from("maya")),
            ("ghost.io".to_owned(), OwnerId::from("nobody")),
            ("com".to_owned(), OwnerId::from("maya")),
        ]);
        let cases = [
            ("siemens.com", Some("lena"), "dach"),
            ("eu.newco.io", Some("maya"), "na"),
            ("ghost.io", None, "dach"),
            ("example.com", None, "dach"),
        ];
        for (domain, owner, team) in cases {
            let route = route(&lead(domain, "DE", "300"), &pb, &accounts);
            assert_eq!(route.owner, owner.map(OwnerId::from), "{domain}");
            assert_eq!(route.team.as_str(), team, "{domain}");
        }
    }

    #[test]
    fn size_bounds_need_a_known_size() {
        let pb = playbook();
        let enterprise = &pb.routes()[1];
        let cases = [
            ("1999", false),
            ("2000", true),
            ("250000", true),
            ("", false),
            ("many", false),
        ];
        for (employees, want) in cases {
            assert_eq!(
                enterprise.matches(&lead("x.com", "DE", employees)),
                want,
                "{employees}"
            );
        }
    }

    #[test]
    fn parent_domains_stop_before_the_top_level() {
        let all: Vec<_> = domain_and_parents("a.b.example.co.uk").collect();
        assert_eq!(
            all,
            [
                "a.b.example.co.uk",
                "b.example.co.uk",
                "example.co.uk",
                "co.uk"
            ]
        );
        assert_eq!(domain_and_parents("localhost").count(), 0);
        assert_eq!(domain_and_parents("").count(), 0);
    }
}
