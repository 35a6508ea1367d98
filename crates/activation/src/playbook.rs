//! The `[activation]` table of the playbook: the teams and owners who work leads, the
//! accounts that have an owner already, the routes that send a lead to a team, the SLA tiers,
//! the first-action plans and the escalation limit. The rules that apply them live in
//! [`crate::domain`].
//!
//! Operators edit this in git, so every value that can be wrong keeps its place in the file
//! and [`Section::validate`] reports `file:line:col` for each problem, all of them at once.
//! Values with a format of their own (time zones, hours, windows) are parsed while reading
//! but a bad one is kept as an error rather than failing the read, for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use runtime::playbook::{Parsed, PlaybookValue, Section, SpannedError, unplaced};
use serde::Deserialize;
use toml::Spanned;

use crate::domain::hours::{Calendar, WeeklyHours};
use crate::domain::sla::Window;
use crate::domain::{Channel, IcpTier, IntentKind, IntentStrength, OwnerId, TeamId};

/// The `[activation]` section of the playbook.
///
/// `default_team`, `teams`, `owners`, `sla` and `plans` are required (the reader reports a
/// missing one at the `[activation]` table); `accounts`, `routes` and `escalation` are
/// optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationPlaybook {
    default_team: Spanned<TeamId>,
    teams: Vec<Team>,
    owners: Vec<Owner>,
    #[serde(default)]
    accounts: BTreeMap<Spanned<String>, Spanned<OwnerId>>,
    #[serde(default)]
    routes: Vec<RouteRule>,
    sla: Spanned<Vec<SlaPolicy>>,
    plans: Spanned<Vec<PlanRule>>,
    #[serde(default)]
    escalation: EscalationPolicy,
}

/// What a playbook without an `[activation]` table reads as: no teams and no owners (every
/// lead would wait in the queue of team `default`) with a one-hour wall-clock SLA and an
/// email first action. [`Section::validate`] rejects it for having no teams, so a service
/// never runs on it by accident; it exists for tests and as a harmless fallback.
impl Default for ActivationPlaybook {
    fn default() -> Self {
        Self {
            default_team: unplaced(TeamId::from("default")),
            teams: Vec::new(),
            owners: Vec::new(),
            accounts: BTreeMap::new(),
            routes: Vec::new(),
            sla: unplaced(vec![SlaPolicy::built_in()]),
            plans: unplaced(vec![PlanRule::built_in()]),
            escalation: EscalationPolicy::default(),
        }
    }
}

/// One `[[activation.teams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    id: Spanned<TeamId>,
    name: String,
    /// Owner id of the manager breaches of this team escalate to.
    manager: Spanned<OwnerId>,
    timezone: Parsed<TimeZone>,
    /// The team's business hours, in which business-hours SLA windows are counted.
    hours: Parsed<WeeklyHours>,
}

/// One `[[activation.owners]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    id: Spanned<OwnerId>,
    name: String,
    team: Spanned<TeamId>,
    timezone: Parsed<TimeZone>,
    hours: Parsed<WeeklyHours>,
    /// Most open un-activated leads the owner holds before the rotation skips them.
    capacity: Spanned<u32>,
    /// Share of the team's rotation, relative to the other owners' weights.
    #[serde(default = "weight_one")]
    weight: Spanned<u32>,
    /// Overrides the team's manager for escalations of this owner's leads.
    #[serde(default)]
    manager: Option<Spanned<OwnerId>>,
}

fn weight_one() -> Spanned<u32> {
    unplaced(1)
}

/// One `[[activation.routes]]` entry: the team a lead goes to when all conditions hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    name: Spanned<String>,
    team: Spanned<TeamId>,
    #[serde(default)]
    countries: Vec<Spanned<String>>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    intents: Vec<IntentKind>,
    #[serde(default)]
    icp_tiers: Vec<IcpTier>,
    #[serde(default)]
    industries: Vec<String>,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    employees_min: Option<Spanned<u64>>,
    #[serde(default)]
    employees_max: Option<Spanned<u64>>,
}

/// One `[[activation.sla]]` tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    name: Spanned<String>,
    window: Parsed<Window>,
    /// Count the window in the team's working hours instead of wall-clock time.
    #[serde(default)]
    business_hours: bool,
    #[serde(default)]
    intents: Vec<IntentKind>,
    #[serde(default)]
    strengths: Vec<IntentStrength>,
    #[serde(default)]
    icp_tiers: Vec<IcpTier>,
}

/// One `[[activation.plans]]` entry: the first action for leads it matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRule {
    name: Spanned<String>,
    #[serde(default)]
    intents: Vec<IntentKind>,
    #[serde(default)]
    sources: Vec<String>,
    channel: Spanned<Channel>,
    template: Spanned<String>,
    #[serde(default)]
    alternatives: Vec<Spanned<Channel>>,
}

/// `[activation.escalation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationPolicy {
    max_reassignments: u32,
    routing_delay: Parsed<Window>,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        Self {
            max_reassignments: 2,
            routing_delay: Parsed::built_in("1m"),
        }
    }
}

impl PlaybookValue for Window {
    fn parse(text: &str) -> Result<Self, String> {
        Window::parse(text).map_err(|e| format!("window {e}"))
    }

    /// An hour: the middle of the usual tiers.
    fn fallback() -> Self {
        Window::new(0, SignedDuration::from_hours(1))
    }
}

impl ActivationPlaybook {
    /// The team for leads no account or route claims.
    pub fn default_team(&self) -> &TeamId {
        self.default_team.get_ref()
    }

    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    pub fn team(&self, id: &TeamId) -> Option<&Team> {
        self.teams.iter().find(|t| t.id() == id)
    }

    pub fn owners(&self) -> &[Owner] {
        &self.owners
    }

    pub fn owner(&self, id: &OwnerId) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id() == id)
    }

    /// The owners of `team`, in playbook order.
    pub fn team_owners<'a>(&'a self, team: &'a TeamId) -> impl Iterator<Item = &'a Owner> {
        self.owners.iter().filter(move |o| o.team() == team)
    }

    /// The owner of the account with exactly this (lower-case) email domain.
    pub fn account_owner(&self, domain: &str) -> Option<&OwnerId> {
        self.accounts.get(domain).map(Spanned::get_ref)
    }

    /// Every account: email domain and owner.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &OwnerId)> {
        self.accounts
            .iter()
            .map(|(domain, owner)| (domain.get_ref().as_str(), owner.get_ref()))
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[RouteRule] {
        &self.routes
    }

    /// The SLA tiers, in the order they are tried.
    pub fn sla_policies(&self) -> &[SlaPolicy] {
        self.sla.get_ref()
    }

    /// The first-action plans, in the order they are tried.
    pub fn plans(&self) -> &[PlanRule] {
        self.plans.get_ref()
    }

    pub fn escalation(&self) -> &EscalationPolicy {
        &self.escalation
    }

    /// Who a breach of `owner`'s lead escalates to: their own manager, else their team's.
    pub fn manager_of<'a>(&'a self, owner: &'a Owner) -> Option<&'a OwnerId> {
        match &owner.manager {
            Some(manager) => Some(manager.get_ref()),
            None => self.team(owner.team()).map(Team::manager),
        }
    }
}

impl Team {
    pub fn id(&self) -> &TeamId {
        self.id.get_ref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn manager(&self) -> &OwnerId {
        self.manager.get_ref()
    }

    pub fn timezone(&self) -> &TimeZone {
        self.timezone.value()
    }

    /// The team's business hours in its time zone.
    pub fn calendar(&self) -> Calendar<'_> {
        Calendar::new(self.timezone.value(), self.hours.value())
    }
}

impl Owner {
    pub fn id(&self) -> &OwnerId {
        self.id.get_ref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn team(&self) -> &TeamId {
        self.team.get_ref()
    }

    pub fn timezone(&self) -> &TimeZone {
        self.timezone.value()
    }

    /// The owner's working hours in their time zone.
    pub fn calendar(&self) -> Calendar<'_> {
        Calendar::new(self.timezone.value(), self.hours.value())
    }

    pub fn capacity(&self) -> u32 {
        *self.capacity.get_ref()
    }

    /// At least 1 in a validated playbook.
    pub fn weight(&self) -> u32 {
        *self.weight.get_ref()
    }
}

impl RouteRule {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn team(&self) -> &TeamId {
        self.team.get_ref()
    }

    /// ISO country codes; none means any country.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.countries.iter().map(|c| c.get_ref().as_str())
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn intents(&self) -> &[IntentKind] {
        &self.intents
    }

    pub fn icp_tiers(&self) -> &[IcpTier] {
        &self.icp_tiers
    }

    pub fn industries(&self) -> &[String] {
        &self.industries
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn employees_min(&self) -> Option<u64> {
        self.employees_min.as_ref().map(|n| *n.get_ref())
    }

    pub fn employees_max(&self) -> Option<u64> {
        self.employees_max.as_ref().map(|n| *n.get_ref())
    }

    fn is_catch_all(&self) -> bool {
        self.countries.is_empty()
            && self.sources.is_empty()
            && self.intents.is_empty()
            && self.icp_tiers.is_empty()
            && self.industries.is_empty()
            && self.segments.is_empty()
            && self.employees_min.is_none()
            && self.employees_max.is_none()
    }
}

impl SlaPolicy {
    /// The tier used when a playbook has none: one hour of wall-clock time for every lead.
    pub(crate) fn built_in() -> Self {
        Self {
            name: unplaced("default".to_owned()),
            window: Parsed::built_in("1h"),
            business_hours: false,
            intents: Vec::new(),
            strengths: Vec::new(),
            icp_tiers: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn window(&self) -> Window {
        *self.window.value()
    }

    pub fn business_hours(&self) -> bool {
        self.business_hours
    }

    pub fn intents(&self) -> &[IntentKind] {
        &self.intents
    }

    pub fn strengths(&self) -> &[IntentStrength] {
        &self.strengths
    }

    pub fn icp_tiers(&self) -> &[IcpTier] {
        &self.icp_tiers
    }

    fn is_catch_all(&self) -> bool {
        self.intents.is_empty() && self.strengths.is_empty() && self.icp_tiers.is_empty()
    }
}

impl PlanRule {
    /// The plan used when a playbook has none: a first-touch email.
    pub(crate) fn built_in() -> Self {
        Self {
            name: unplaced("default".to_owned()),
            intents: Vec::new(),
            sources: Vec::new(),
            channel: unplaced(Channel::Email),
            template: unplaced("first-touch".to_owned()),
            alternatives: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn intents(&self) -> &[IntentKind] {
        &self.intents
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn channel(&self) -> Channel {
        *self.channel.get_ref()
    }

    pub fn template(&self) -> &str {
        self.template.get_ref()
    }

    /// Other channels that count as a first action, in playbook order.
    pub fn alternatives(&self) -> impl Iterator<Item = Channel> + '_ {
        self.alternatives.iter().map(|c| *c.get_ref())
    }

    fn is_catch_all(&self) -> bool {
        self.intents.is_empty() && self.sources.is_empty()
    }
}

impl EscalationPolicy {
    /// How many times a breached lead is reassigned before its manager owns it.
    pub fn max_reassignments(&self) -> u32 {
        self.max_reassignments
    }

    /// How long getting a lead to an owner may take before a breach is blamed on the wait
    /// rather than on the owner.
    pub fn routing_delay(&self) -> SignedDuration {
        self.routing_delay.value().wall_clock()
    }
}

impl Section for ActivationPlaybook {
    const NAME: &'static str = "activation";

    fn validate(&self) -> Vec<SpannedError> {
        let mut errors = Vec::new();
        let teams = unique_ids(self.teams.iter().map(|t| &t.id), "team", &mut errors);
        let owners = unique_ids(self.owners.iter().map(|o| &o.id), "owner", &mut errors);
        let refs = Refs { teams, owners };

        if self.teams.is_empty() {
            // Also what a missing [activation] table reads as: say what is missing rather
            // than that the built-in default team is unknown.
            errors.push(SpannedError::general(
                "[activation] defines no teams: every lead needs a team with owners to work \
                 it (see deploy/playbook.toml for an example)",
            ));
        } else {
            refs.team(&self.default_team, "default_team", &mut errors);
        }
        for team in &self.teams {
            if self.team_owners(team.id()).next().is_none() {
                errors.push(SpannedError::at(
                    team.id.span(),
                    format!(
                        "team {:?} has no owners: its leads would wait forever; give an owner \
                         team = {:?}",
                        team.id().as_str(),
                        team.id().as_str()
                    ),
                ));
            }
            refs.owner(&team.manager, "manager", &mut errors);
            team.timezone.check(&mut errors);
            team.hours.check(&mut errors);
        }
        for owner in &self.owners {
            check_owner(owner, &refs, &mut errors);
        }
        for (domain, owner) in &self.accounts {
            check_domain(domain, &mut errors);
            refs.owner(owner, "account owner", &mut errors);
        }
        check_routes(&self.routes, &refs, &mut errors);
        check_sla(&self.sla, &mut errors);
        check_plans(&self.plans, &mut errors);
        let delay = &self.escalation.routing_delay;
        delay.check(&mut errors);

        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |span| span.start));
        errors
    }
}

/// The ids a section defines, for checking references to them.
struct Refs<'a> {
    teams: BTreeSet<&'a str>,
    owners: BTreeSet<&'a str>,
}

impl Refs<'_> {
    fn team(&self, id: &Spanned<TeamId>, what: &str, errors: &mut Vec<SpannedError>) {
        if !self.teams.contains(id.get_ref().as_str()) {
            errors.push(unknown(
                id.span(),
                what,
                "team",
                id.get_ref().as_str(),
                &self.teams,
            ));
        }
    }

    fn owner(&self, id: &Spanned<OwnerId>, what: &str, errors: &mut Vec<SpannedError>) {
        if !self.owners.contains(id.get_ref().as_str()) {
            errors.push(unknown(
                id.span(),
                what,
                "owner",
                id.get_ref().as_str(),
                &self.owners,
            ));
        }
    }
}

fn unknown(
    span: Range<usize>,
    what: &str,
    kind: &str,
    id: &str,
    known: &BTreeSet<&str>,
) -> SpannedError {
    // Enough ids to spot a typo, not a wall of text in a large playbook.
    const SHOWN: usize = 8;
    let mut list: Vec<&str> = known.iter().copied().take(SHOWN).collect();
    let more = format!("and {} more", known.len().saturating_sub(SHOWN));
    if known.len() > SHOWN {
        list.push(&more);
    }
    let hint = if known.is_empty() {
        format!("no {kind}s are defined")
    } else {
        format!("{kind}s are {}", list.join(", "))
    };
    SpannedError::at(
        span,
        format!("{what} {id:?} is not a known {kind} ({hint})"),
    )
}

/// Checks ids are usable and unique, and returns them.
fn unique_ids<'a, T: AsRef<str> + 'a>(
    ids: impl Iterator<Item = &'a Spanned<T>>,
    kind: &str,
    errors: &mut Vec<SpannedError>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    for id in ids {
        let text = id.get_ref().as_ref();
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            errors.push(SpannedError::at(
                id.span(),
                format!("{kind} id {text:?} must be non-empty and without spaces"),
            ));
        } else if !seen.insert(text) {
            errors.push(SpannedError::at(
                id.span(),
                format!("{kind} id {text:?} is defined twice"),
            ));
        }
    }
    seen
}

fn check_owner(owner: &Owner, refs: &Refs<'_>, errors: &mut Vec<SpannedError>) {
    refs.team(&owner.team, "team", errors);
    if let Some(manager) = &owner.manager {
        refs.owner(manager, "manager", errors);
    }
    owner.timezone.check(errors);
    owner.hours.check(errors);
    if *owner.capacity.get_ref() == 0 {
        errors.push(SpannedError::at(
            owner.capacity.span(),
            "capacity must be at least 1: an owner who can hold no lead would never get one",
        ));
    }
    if *owner.weight.get_ref() == 0 {
        errors.push(SpannedError::at(
            owner.weight.span(),
            "weight must be at least 1 (to take an owner out of the rotation, mark them out \
             of office)",
        ));
    }
}

fn check_domain(domain: &Spanned<String>, errors: &mut Vec<SpannedError>) {
    let d = domain.get_ref();
    let bare = d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bare {
        errors.push(SpannedError::at(
            domain.span(),
            format!(
                "account domain {d:?} must be a lower-case email domain such as acme.com (its \
                 subdomains belong to the account too)"
            ),
        ));
    }
}

fn check_routes(routes: &[RouteRule], refs: &Refs<'_>, errors: &mut Vec<SpannedError>) {
    unique_names(routes.iter().map(|r| &r.name), "route", errors);
    let mut catch_all = false;
    for route in routes {
        if catch_all {
            errors.push(SpannedError::at(
                route.name.span(),
                "this route can never match: an earlier route without conditions takes every \
                 lead (use default_team for the leads no route takes)",
            ));
        }
        catch_all |= route.is_catch_all();
        refs.team(&route.team, "team", errors);
        for country in &route.countries {
            let c = country.get_ref();
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
                errors.push(SpannedError::at(
                    country.span(),
                    format!("country {c:?} must be an ISO 3166 alpha-2 code such as DE"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (&route.employees_min, &route.employees_max)
            && min.get_ref() > max.get_ref()
        {
            errors.push(SpannedError::at(
                min.span(),
                format!(
                    "employees_min {} is greater than employees_max {}; no lead can match",
                    min.get_ref(),
                    max.get_ref()
                ),
            ));
        }
    }
}

fn check_sla(tiers: &Spanned<Vec<SlaPolicy>>, errors: &mut Vec<SpannedError>) {
    unique_names(tiers.get_ref().iter().map(|t| &t.name), "SLA tier", errors);
    for tier in tiers.get_ref() {
        tier.window.check(errors);
    }
    check_default(tiers, errors);
}

fn check_plans(plans: &Spanned<Vec<PlanRule>>, errors: &mut Vec<SpannedError>) {
    unique_names(plans.get_ref().iter().map(|p| &p.name), "plan", errors);
    for plan in plans.get_ref() {
        if plan.template.get_ref().trim().is_empty() {
            errors.push(SpannedError::at(
                plan.template.span(),
                "template must name the template the first action uses",
            ));
        }
        for alternative in &plan.alternatives {
            if alternative.get_ref() == plan.channel.get_ref() {
                errors.push(SpannedError::at(
                    alternative.span(),
                    format!("{} is the planned channel already", alternative.get_ref()),
                ));
            }
        }
    }
    check_default(plans, errors);
}

/// An entry of an ordered list where the first match wins and the last entry, without
/// conditions, is the default.
trait Ordered {
    const KIND: &'static str;
    const CONDITIONS: &'static str;
    fn name_span(&self) -> (&str, Range<usize>);
    fn is_catch_all(&self) -> bool;
}

impl Ordered for SlaPolicy {
    const KIND: &'static str = "SLA tier";
    const CONDITIONS: &'static str = "intents, strengths and icp_tiers";
    fn name_span(&self) -> (&str, Range<usize>) {
        (self.name.get_ref(), self.name.span())
    }
    fn is_catch_all(&self) -> bool {
        SlaPolicy::is_catch_all(self)
    }
}

impl Ordered for PlanRule {
    const KIND: &'static str = "plan";
    const CONDITIONS: &'static str = "intents and sources";
    fn name_span(&self) -> (&str, Range<usize>) {
        (self.name.get_ref(), self.name.span())
    }
    fn is_catch_all(&self) -> bool {
        PlanRule::is_catch_all(self)
    }
}

/// The list must not be empty, must end in an entry without conditions, and must have
/// nothing after its first entry without conditions.
fn check_default<T: Ordered>(list: &Spanned<Vec<T>>, errors: &mut Vec<SpannedError>) {
    let (kind, entries) = (T::KIND, list.get_ref());
    let Some(last) = entries.last() else {
        errors.push(SpannedError::at(
            list.span(),
            format!(
                "at least one {kind} is needed; the last one, without conditions, is the default"
            ),
        ));
        return;
    };
    if let Some(first) = entries.iter().position(T::is_catch_all) {
        let (default, _) = entries[first].name_span();
        for entry in &entries[first + 1..] {
            errors.push(SpannedError::at(
                entry.name_span().1,
                format!(
                    "this {kind} can never match: {default:?} before it has no conditions and \
                     takes every lead"
                ),
            ));
        }
    } else {
        errors.push(SpannedError::at(
            last.name_span().1,
            format!(
                "the last {kind} is the default and must have no conditions; remove its {}, or \
                 add a {kind} without conditions after it",
                T::CONDITIONS
            ),
        ));
    }
}

fn unique_names<'a>(
    names: impl Iterator<Item = &'a Spanned<String>>,
    kind: &str,
    errors: &mut Vec<SpannedError>,
) {
    let mut seen = BTreeSet::new();
    for name in names {
        let text = name.get_ref();
        if text.trim().is_empty() {
            errors.push(SpannedError::at(
                name.span(),
                format!("{kind} name cannot be blank"),
            ));
        } else if !seen.insert(text.as_str()) {
            errors.push(SpannedError::at(
                name.span(),
                format!("{kind} name {text:?} is used twice"),
            ));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::playbook::parse;

    const SAMPLE: &str = include_str!("../../../deploy/playbook.toml");

    /// The sample playbook, which the domain tests use as their fixture.
    pub(crate) fn sample() -> ActivationPlaybook {
        parse("deploy/playbook.toml", SAMPLE).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn parse_ok(text: &str) -> ActivationPlaybook {
        parse("p.toml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A small valid section the error cases edit.
    const BASE: &str = r#"[activation]
default_team = "t"

[[activation.teams]]
id = "t"
name = "T"
manager = "m"
timezone = "Europe/Berlin"
hours = "mon-fri 09:00-17:30"

[[activation.owners]]
id = "m"
name = "M"
team = "t"
timezone = "UTC"
hours = "mon-fri 09:00-17:00"
capacity = 5

[[activation.sla]]
name = "any"
window = "1h"

[[activation.plans]]
name = "any"
channel = "email"
template = "hello"
"#;

    /// `BASE` with `from` (which must occur once) replaced by `to`; an empty `from` appends.
    fn edit(from: &str, to: &str) -> String {
        if from.is_empty() {
            return format!("{BASE}{to}");
        }
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{from:?} must occur once in BASE"
        );
        BASE.replace(from, to)
    }

    /// Parses `text`, where `@@` marks where the one expected problem is, and checks the
    /// problem is reported there and mentions `needle`.
    #[track_caller]
    fn assert_error(marked: &str, needle: &str) {
        testkit::assert_playbook_error::<ActivationPlaybook>(marked, needle);
    }

    #[test]
    fn the_sample_playbook_parses() {
        let pb = sample();
        let ids = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(" ");
        assert_eq!(
            ids(&mut pb.teams().iter().map(|t| t.id().as_str())),
            "dach uki na enterprise sales-leadership"
        );
        assert_eq!(pb.owners().len(), 14);
        assert_eq!(pb.default_team().as_str(), "na");
        assert_eq!(
            pb.account_owner("siemens.com").map(OwnerId::as_str),
            Some("henrik")
        );
        assert_eq!(pb.accounts().count(), 5);
        assert_eq!(pb.routes().len(), 8);
        assert_eq!(
            ids(&mut pb.sla_policies().iter().map(SlaPolicy::name)),
            "hot warm engaged cool"
        );
        assert_eq!(pb.plans().len(), 5);
        assert_eq!(pb.escalation().max_reassignments(), 2);
        assert_eq!(
            pb.escalation().routing_delay(),
            SignedDuration::from_mins(2)
        );

        // every team has owners in several time zones or weights, and a manager
        let lena = pb.owner(&"lena".into()).unwrap();
        assert_eq!(
            (lena.capacity(), lena.weight(), lena.name()),
            (20, 2, "Lena Hoffmann")
        );
        assert_eq!(lena.timezone().iana_name(), Some("Europe/Berlin"));
        let jonas = pb.owner(&"jonas".into()).unwrap();
        assert_eq!(jonas.weight(), 1, "weight defaults to 1");
        assert_eq!(pb.manager_of(jonas).map(OwnerId::as_str), Some("katrin"));
        let sophie = pb.owner(&"sophie".into()).unwrap();
        assert_eq!(pb.manager_of(sophie).map(OwnerId::as_str), Some("marcus"));
        let na = pb.team(&"na".into()).unwrap();
        assert_eq!(
            (na.name(), na.manager().as_str()),
            ("North America", "dana")
        );
        assert_eq!(na.timezone().iana_name(), Some("America/New_York"));
        let zones: BTreeSet<_> = pb
            .owners()
            .iter()
            .filter_map(|o| o.timezone().iana_name())
            .collect();
        assert!(zones.len() >= 7, "{zones:?}");

        let hot = &pb.sla_policies()[0];
        assert_eq!(hot.window(), Window::new(0, SignedDuration::from_mins(5)));
        assert!(!hot.business_hours());
        assert!(pb.sla_policies()[3].business_hours());
        let plan = &pb.plans()[0];
        assert_eq!(
            (plan.channel(), plan.template()),
            (Channel::Call, "demo-call-opener")
        );
        assert_eq!(
            plan.alternatives().collect::<Vec<_>>(),
            [Channel::Email, Channel::Sms]
        );
    }

    #[test]
    fn an_absent_section_is_rejected_for_having_no_teams() {
        for text in [
            "[intake]\nx = 1\n",
            "[activation]\ndefault_team = \"t\"\nteams = []\nowners = []\n\
             sla = [{ name = \"a\", window = \"1h\" }]\n\
             plans = [{ name = \"a\", channel = \"call\", template = \"t\" }]\n",
        ] {
            let err = parse::<ActivationPlaybook>("p.toml", text)
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "invalid playbook p.toml:\n  p.toml: [activation] defines no teams: every lead \
                 needs a team with owners to work it (see deploy/playbook.toml for an example)"
            );
        }
        let pb = ActivationPlaybook::default();
        assert_eq!(pb.default_team().as_str(), "default");
        assert!(pb.teams().is_empty() && pb.owners().is_empty() && pb.routes().is_empty());
        assert_eq!(pb.sla_policies().len(), 1);
        assert_eq!(
            pb.sla_policies()[0].window(),
            Window::new(0, SignedDuration::from_hours(1))
        );
        assert_eq!(
            (pb.plans()[0].channel(), pb.plans()[0].template()),
            (Channel::Email, "first-touch")
        );
        assert_eq!(pb.escalation().max_reassignments(), 2);
        assert_eq!(
            pb.escalation().routing_delay(),
            SignedDuration::from_mins(1)
        );
        assert_eq!(pb.validate().len(), 1, "only the missing teams");
    }

    #[test]
    fn the_base_is_valid() {
        let pb = parse_ok(BASE);
        assert_eq!(pb.owners()[0].weight(), 1);
        assert!(pb.accounts().next().is_none());
    }

    #[test]
    fn references_must_name_defined_ids() {
        let cases = [
            (
                edit("default_team = \"t\"", "default_team = @@\"x\""),
                "default_team \"x\" is not a known team (teams are t)",
            ),
            (
                edit("manager = \"m\"", "manager = @@\"boss\""),
                "manager \"boss\" is not a known owner (owners are m)",
            ),
            (
                edit(
                    "",
                    "[[activation.owners]]\nid = \"o\"\nname = \"O\"\nteam = @@\"u\"\n\
                     timezone = \"UTC\"\nhours = \"mon 09:00-10:00\"\ncapacity = 1\n",
                ),
                "team \"u\" is not a known team",
            ),
            (
                edit("capacity = 5", "capacity = 5\nmanager = @@\"ghost\""),
                "manager \"ghost\" is not a known owner",
            ),
            (
                edit("", "[activation.accounts]\n\"acme.com\" = @@\"nobody\"\n"),
                "account owner \"nobody\" is not a known owner",
            ),
            (
                edit(
                    "",
                    "[[activation.routes]]\nname = \"r\"\ncountries = [\"DE\"]\nteam = @@\"dach\"\n",
                ),
                "team \"dach\" is not a known team",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn every_team_needs_owners() {
        let team = "[[activation.teams]]\nid = @@\"u\"\nname = \"U\"\nmanager = \"m\"\n\
                    timezone = \"UTC\"\nhours = \"mon 09:00-10:00\"\n";
        assert_error(&edit("", team), "team \"u\" has no owners");
    }

    #[test]
    fn unknown_id_hints_list_a_few_known_ids() {
        let mut text = edit("manager = \"m\"", "manager = @@\"zed\"");
        for i in 0..9 {
            text.push_str(&format!(
                "[[activation.owners]]\nid = \"o{i}\"\nname = \"O\"\nteam = \"t\"\n\
                 timezone = \"UTC\"\nhours = \"mon 09:00-10:00\"\ncapacity = 1\n"
            ));
        }
        assert_error(
            &text,
            "manager \"zed\" is not a known owner (owners are m, o0, o1, o2, o3, o4, o5, o6, \
             and 2 more)",
        );
    }

    #[test]
    fn ids_and_names_are_unique() {
        let team = "[[activation.teams]]\nid = @@\"t\"\nname = \"T2\"\nmanager = \"m\"\n\
                    timezone = \"UTC\"\nhours = \"mon 09:00-10:00\"\n";
        let owner = "[[activation.owners]]\nid = @@\"m\"\nname = \"M2\"\nteam = \"t\"\n\
                     timezone = \"UTC\"\nhours = \"mon 09:00-10:00\"\ncapacity = 1\n";
        let route = "[[activation.routes]]\nname = \"r\"\ncountries = [\"DE\"]\nteam = \"t\"\n\
                     [[activation.routes]]\nname = @@\"r\"\ncountries = [\"AT\"]\nteam = \"t\"\n";
        let cases = [
            (edit("", team), "team id \"t\" is defined twice"),
            (edit("", owner), "owner id \"m\" is defined twice"),
            (
                edit("", &owner.replace("\"m\"", "\"m 2\"")),
                "owner id \"m 2\" must be non-empty and without spaces",
            ),
            (edit("", route), "route name \"r\" is used twice"),
            (
                edit("name = \"any\"\nwindow", "name = @@\"\"\nwindow"),
                "SLA tier name cannot be blank",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn time_zones_hours_and_windows_must_parse() {
        let cases = [
            (
                edit(
                    "timezone = \"Europe/Berlin\"",
                    "timezone = @@\"Europe/Berlinn\"",
                ),
                "timezone \"Europe/Berlinn\" is not a known IANA time zone",
            ),
            (
                edit("timezone = \"UTC\"", "timezone = @@\"CEST+2\""),
                "is not a known IANA time zone",
            ),
            (
                edit(
                    "hours = \"mon-fri 09:00-17:00\"",
                    "hours = @@\"mon-fri 9-5\"",
                ),
                "hours \"mon-fri 9-5\": `9` is not a time",
            ),
            (
                edit("hours = \"mon-fri 09:00-17:30\"", "hours = @@\"weekdays\""),
                "`weekdays` is not a day",
            ),
            (
                edit("window = \"1h\"", "window = @@\"0m\""),
                "window \"0m\" must be longer than zero",
            ),
            (
                edit("window = \"1h\"", "window = @@\"soon\""),
                "window \"soon\" is not a duration",
            ),
            (
                edit("", "[activation.escalation]\nrouting_delay = @@\"0s\"\n"),
                "window \"0s\" must be longer than zero",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn capacity_and_weight_are_at_least_one() {
        let cases = [
            (
                edit("capacity = 5", "capacity = @@0"),
                "capacity must be at least 1",
            ),
            (
                edit("capacity = 5", "capacity = 5\nweight = @@0"),
                "weight must be at least 1",
            ),
            (
                edit("capacity = 5", "capacity = @@-1"),
                "invalid value: integer `-1`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn required_parts_are_reported_at_the_table() {
        const SLA: &str = "[[activation.sla]]\nname = \"any\"\nwindow = \"1h\"\n";
        const PLAN: &str =
            "[[activation.plans]]\nname = \"any\"\nchannel = \"email\"\ntemplate = \"hello\"\n";
        let at_table = |text: String| {
            format!(
                "[intake]\nx = 1\n\n{}",
                text.replacen("[activation]", "@@[activation]", 1)
            )
        };
        let empty = |block: &str, key: &str| {
            edit(block, "").replacen(
                "default_team = \"t\"",
                &format!("default_team = \"t\"\n{key} = @@[]"),
                1,
            )
        };
        let cases = [
            (
                at_table(edit("default_team = \"t\"\n", "")),
                "missing field `default_team`",
            ),
            (at_table(edit(SLA, "")), "missing field `sla`"),
            (at_table(edit(PLAN, "")), "missing field `plans`"),
            (empty(SLA, "sla"), "at least one SLA tier is needed"),
            (empty(PLAN, "plans"), "at least one plan is needed"),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn sla_tiers_and_plans_end_in_a_default() {
        let tier = "[[activation.sla]]\nname = @@\"late\"\nwindow = \"1d\"\n";
        let plan =
            "[[activation.plans]]\nname = @@\"late\"\nchannel = \"call\"\ntemplate = \"x\"\n";
        let cases = [
            (
                edit(
                    "name = \"any\"\nwindow = \"1h\"",
                    "name = @@\"any\"\nwindow = \"1h\"\nicp_tiers = [\"A\"]",
                ),
                "the last SLA tier is the default and must have no conditions; remove its \
                 intents, strengths and icp_tiers",
            ),
            (
                edit("", tier),
                "this SLA tier can never match: \"any\" before it has no conditions",
            ),
            (
                edit(
                    "name = \"any\"\nchannel",
                    "name = @@\"any\"\nsources = [\"webinar\"]\nchannel",
                ),
                "the last plan is the default",
            ),
            (edit("", plan), "this plan can never match"),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn routes_must_be_able_to_match() {
        let route = |body: &str| {
            edit(
                "",
                &format!("[[activation.routes]]\nname = \"r\"\nteam = \"t\"\n{body}"),
            )
        };
        let catch_all = "[[activation.routes]]\nname = \"all\"\nteam = \"t\"\n\
                         [[activation.routes]]\nname = @@\"de\"\nteam = \"t\"\n\
                         countries = [\"DE\"]\n";
        let cases = [
            (
                route("countries = [\"DE\", @@\"de\"]\n"),
                "country \"de\" must be an ISO 3166 alpha-2 code",
            ),
            (
                route("countries = [@@\"DEU\"]\n"),
                "country \"DEU\" must be an ISO 3166 alpha-2 code",
            ),
            (
                route("employees_min = @@500\nemployees_max = 100\n"),
                "employees_min 500 is greater than employees_max 100",
            ),
            (edit("", catch_all), "this route can never match"),
            (route("intents = [@@\"demo\"]\n"), "unknown variant `demo`"),
            (route("icp_tiers = [@@\"D\"]\n"), "unknown variant `D`"),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn accounts_and_plans_are_checked() {
        let cases = [
            (
                edit("", "[activation.accounts]\n@@\"Acme.com\" = \"m\"\n"),
                "account domain \"Acme.com\" must be a lower-case email domain",
            ),
            (
                edit("", "[activation.accounts]\n@@\"com\" = \"m\"\n"),
                "account domain \"com\"",
            ),
            (
                edit("", "[activation.accounts]\n@@\"@acme.com\" = \"m\"\n"),
                "account domain \"@acme.com\"",
            ),
            (
                edit("template = \"hello\"", "template = @@\" \""),
                "template must name the template",
            ),
            (
                edit(
                    "template = \"hello\"",
                    "template = \"hello\"\nalternatives = [\"sms\", @@\"email\"]",
                ),
                "email is the planned channel already",
            ),
            (
                edit("channel = \"email\"", "channel = @@\"fax\""),
                "unknown variant `fax`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let cases = [
            (
                edit("capacity = 5", "@@capacty = 5"),
                "unknown field `capacty`",
            ),
            (
                edit(
                    "default_team = \"t\"",
                    "default_team = \"t\"\n@@default_sla = \"x\"",
                ),
                "unknown field `default_sla`",
            ),
            (
                edit("", "[activation.escalation]\n@@max_reassign = 1\n"),
                "unknown field `max_reassign`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn all_problems_are_reported_together_in_file_order() {
        let text = edit("capacity = 5", "capacity = 0")
            .replace("default_team = \"t\"", "default_team = \"x\"")
            .replace("window = \"1h\"", "window = \"1 hour\"");
        let err = parse::<ActivationPlaybook>("p.toml", &text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(lines[0].starts_with("  p.toml:2:16: default_team"), "{err}");
        assert!(lines[1].starts_with("  p.toml:17:12: capacity"), "{err}");
        assert!(lines[2].starts_with("  p.toml:21:10: window"), "{err}");
    }
}
