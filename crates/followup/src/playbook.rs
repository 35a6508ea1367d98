//! The `[followup]` table of the playbook: the cadences and the rules that choose one for a
//! lead, the business calendar delays are counted in, the caps that keep a contact from being
//! over-pushed, how silence is read and answered, momentum and its escalation, and long-term
//! nurture. The rules that apply them live in [`crate::domain`].
//!
//! Operators edit this in git, so every value that can be wrong keeps its place in the file
//! and [`Section::validate`] reports `file:line:col` for each problem, all of them at once.
//! Values with a format of their own (time zones, hours, delays) are parsed while reading but
//! a bad one is kept as an error rather than failing the read, for the same reason.
//!
//! Every key has a default except the cadences themselves, so a small playbook names only
//! what it changes. A playbook without cadences is valid (the default), but followup then
//! refuses to enrol anyone.

use std::collections::BTreeSet;
use std::ops::Range;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use runtime::hours::{Calendar, WeeklyHours};
use runtime::playbook::{Parsed, PlaybookValue, Section, SpannedError, unplaced};
use serde::Deserialize;
use toml::Spanned;

use crate::domain::{
    Alternative, CadencePlan, Channel, Delay, Engagement, ReplySentiment, Silence, SilenceMove,
    StepPlan, Strategy, TimeBasis,
};

/// Intent kinds intake knows, as activation sends them; a rule naming another is a typo.
pub const INTENT_KINDS: [&str; 9] = [
    "unspecified",
    "demo_request",
    "contact_sales",
    "pricing_page",
    "trial_signup",
    "content_download",
    "webinar",
    "event_badge_scan",
    "other",
];

/// ICP tiers as intake scores them.
pub const ICP_TIERS: [&str; 4] = ["A", "B", "C", "outside"];

/// The `[followup]` section of the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowupPlaybook {
    /// `timezone`: IANA zone business time is counted in when neither the lead's nor the
    /// owner's zone is known. Default `"UTC"`.
    #[serde(default = "default_timezone")]
    timezone: Parsed<TimeZone>,
    /// `business_hours`: the working week business delays are counted in, in the lead's or
    /// owner's zone (see `runtime::hours`). Default `"mon-fri 09:00-17:00"`.
    #[serde(default = "default_hours")]
    business_hours: Parsed<WeeklyHours>,
    /// `unanswered_before_change`: how many steps in a row may go unanswered before the cadence
    /// switches to its next `on_silence` approach. Default 2; at least 1.
    #[serde(default = "default_unanswered")]
    unanswered_before_change: Spanned<u32>,
    /// `default_cadence`: the cadence of a lead no rule matches. Required once cadences are
    /// defined, so no lead is left without follow-up.
    #[serde(default)]
    default_cadence: Option<Spanned<String>>,
    /// `[followup.frequency_cap]`.
    #[serde(default)]
    frequency_cap: FrequencyCap,
    /// `[followup.attempt_caps]`.
    #[serde(default)]
    attempt_caps: AttemptCaps,
    /// `[followup.momentum]`.
    #[serde(default)]
    momentum: MomentumPolicy,
    /// `[followup.silence]`.
    #[serde(default)]
    silence: SilencePolicy,
    /// `[followup.nurture]`.
    #[serde(default)]
    nurture: NurturePolicy,
    /// `[[followup.cadences]]`.
    #[serde(default)]
    cadences: Vec<Cadence>,
    /// `[[followup.rules]]`: tried in order, the first match chooses the cadence.
    #[serde(default)]
    rules: Vec<Rule>,
}

/// What a playbook without a `[followup]` table reads as: every default and no cadences. It is
/// valid, but followup enrols nobody on it (there is no cadence to follow).
impl Default for FollowupPlaybook {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            business_hours: default_hours(),
            unanswered_before_change: default_unanswered(),
            default_cadence: None,
            frequency_cap: FrequencyCap::default(),
            attempt_caps: AttemptCaps::default(),
            momentum: MomentumPolicy::default(),
            silence: SilencePolicy::default(),
            nurture: NurturePolicy::default(),
            cadences: Vec::new(),
            rules: Vec::new(),
        }
    }
}

fn default_timezone() -> Parsed<TimeZone> {
    Parsed::built_in("UTC")
}

fn default_hours() -> Parsed<WeeklyHours> {
    Parsed::built_in("mon-fri 09:00-17:00")
}

fn default_unanswered() -> Spanned<u32> {
    unplaced(2)
}

/// `[followup.frequency_cap]`: at most `touches` touches of one contact in any rolling
/// `window`, over every channel and every enrolment of the contact. A step that would break
/// it waits until the cap allows it. Defaults: 3 touches in `"7d"`. `touches` is at least 1;
/// `window` is wall-clock time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrequencyCap {
    touches: Spanned<u32>,
    window: Parsed<Delay>,
}

impl Default for FrequencyCap {
    fn default() -> Self {
        Self {
            touches: unplaced(3),
            window: Parsed::built_in("7d"),
        }
    }
}

/// `[followup.attempt_caps]`: at most this many steps of one cadence on each channel (`call`,
/// `email`, `sms`, `linkedin`); a step beyond moves to another channel. Defaults: 6 calls,
/// 6 emails, 3 texts, 3 LinkedIn messages; each at least 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttemptCaps {
    call: Spanned<u32>,
    email: Spanned<u32>,
    sms: Spanned<u32>,
    linkedin: Spanned<u32>,
}

impl Default for AttemptCaps {
    fn default() -> Self {
        Self {
            call: unplaced(6),
            email: unplaced(6),
            sms: unplaced(3),
            linkedin: unplaced(3),
        }
    }
}

/// `[followup.momentum]`: the engagement score that halves every `half_life` of silence
/// (wall-clock, default `"3d"`), and the `threshold` (default 0.25, above 0 and below the
/// `activated` weight) under which the lead's manager is alerted, once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumPolicy {
    half_life: Parsed<Delay>,
    threshold: Spanned<f64>,
    /// `[followup.momentum.weights]`.
    weights: MomentumWeights,
}

impl Default for MomentumPolicy {
    fn default() -> Self {
        Self {
            half_life: Parsed::built_in("3d"),
            threshold: unplaced(0.25),
            weights: MomentumWeights::default(),
        }
    }
}

/// `[followup.momentum.weights]`: what each engagement adds to the score. `activated` is the
/// score a lead starts with (the intent that brought it). Defaults: activated 1.0, reply 3.0,
/// meeting_booked 5.0, connected_call 2.0, click 1.0, site_visit 0.5, open 0.3. Out-of-office
/// replies, bounces and opt-outs add nothing. Each is a finite number, 0 or more.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumWeights {
    activated: Spanned<f64>,
    reply: Spanned<f64>,
    meeting_booked: Spanned<f64>,
    connected_call: Spanned<f64>,
    click: Spanned<f64>,
    site_visit: Spanned<f64>,
    open: Spanned<f64>,
}

impl Default for MomentumWeights {
    fn default() -> Self {
        Self {
            activated: unplaced(1.0),
            reply: unplaced(3.0),
            meeting_booked: unplaced(5.0),
            connected_call: unplaced(2.0),
            click: unplaced(1.0),
            site_visit: unplaced(0.5),
            open: unplaced(0.3),
        }
    }
}

/// `[followup.silence]`: the move for each kind of silence, one of `continue`,
/// `switch_channel`, `change_angle`, `call_now`, `pause_until_return` (see
/// [`SilenceMove`]). Defaults: `no_open = "switch_channel"`, `opened_no_reply =
/// "change_angle"`, `clicked = "call_now"`, `out_of_office = "pause_until_return"`, `bounced =
/// "switch_channel"`. Only `out_of_office` may pause, and it may only pause or continue. An
/// out-of-office reply without a return date pauses for `out_of_office_without_date`
/// (default `"5 business days"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilencePolicy {
    no_open: Spanned<SilenceMove>,
    opened_no_reply: Spanned<SilenceMove>,
    clicked: Spanned<SilenceMove>,
    out_of_office: Spanned<SilenceMove>,
    bounced: Spanned<SilenceMove>,
    out_of_office_without_date: Parsed<Delay>,
}

impl Default for SilencePolicy {
    fn default() -> Self {
        Self {
            no_open: unplaced(SilenceMove::SwitchChannel),
            opened_no_reply: unplaced(SilenceMove::ChangeAngle),
            clicked: unplaced(SilenceMove::CallNow),
            out_of_office: unplaced(SilenceMove::PauseUntilReturn),
            bounced: unplaced(SilenceMove::SwitchChannel),
            out_of_office_without_date: Parsed::built_in("5 business days"),
        }
    }
}

/// `[followup.nurture]`: where a lead goes when its cadence ends unanswered. `after_cadence`
/// after the last step (default `"3 business days"`) the lead is recycled, and then gets a
/// touch every `interval` (default `"30d"`) for `touches` touches (default 12, at least 1) on
/// `channel` (default `"email"`) with `template` (default `"nurture"`) and `strategy` (default
/// `"value"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NurturePolicy {
    after_cadence: Parsed<Delay>,
    interval: Parsed<Delay>,
    touches: Spanned<u32>,
    channel: Spanned<Channel>,
    template: Spanned<String>,
    strategy: Spanned<Strategy>,
}

impl Default for NurturePolicy {
    fn default() -> Self {
        Self {
            after_cadence: Parsed::built_in("3 business days"),
            interval: Parsed::built_in("30d"),
            touches: unplaced(12),
            channel: unplaced(Channel::Email),
            template: unplaced("nurture".to_owned()),
            strategy: unplaced(Strategy::Value),
        }
    }
}

/// One `[[followup.cadences]]` entry.
///
/// - `id`: referenced by rules and `default_cadence`; non-empty, no spaces, unique.
/// - `timezone`: `"lead"` (default) or `"owner"`, whose zone business delays are counted in.
/// - `default_template`: what a proof step sends when the proof service has no asset.
/// - `on_silence`: approaches (`{ strategy, channel, template }`, strategy or channel or
///   both) switched to in order after `unanswered_before_change` unanswered steps.
/// - `steps`: at least one `{ delay, channel, strategy, template }`; only the first step may
///   have a zero delay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cadence {
    id: Spanned<String>,
    #[serde(default)]
    timezone: TimeBasis,
    #[serde(default)]
    default_template: Option<Spanned<String>>,
    #[serde(default)]
    on_silence: Vec<Spanned<AlternativeEntry>>,
    steps: Spanned<Vec<Step>>,
}

/// One step of a cadence in the playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    delay: Parsed<Delay>,
    channel: Channel,
    strategy: Strategy,
    template: Spanned<String>,
}

/// One `on_silence` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlternativeEntry {
    #[serde(default)]
    strategy: Option<Spanned<Strategy>>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default)]
    template: Option<Spanned<String>>,
}

/// One `[[followup.rules]]` entry: the cadence for leads all its conditions hold for. An
/// absent condition holds for every lead; values compare case-insensitively.
///
/// - `name`: unique, for the audit trail.
/// - `cadence`: a cadence id.
/// - `intents`: intent kinds (`demo_request`, `contact_sales`, `pricing_page`,
///   `trial_signup`, `content_download`, `webinar`, `event_badge_scan`, `other`,
///   `unspecified`).
/// - `sources`, `segments`: as intake and activation send them.
/// - `icp_tiers`: `A`, `B`, `C`, `outside`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    name: Spanned<String>,
    cadence: Spanned<String>,
    #[serde(default)]
    intents: Vec<Spanned<String>>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    icp_tiers: Vec<Spanned<String>>,
}

impl PlaybookValue for Delay {
    fn parse(text: &str) -> Result<Self, String> {
        Delay::parse(text)
    }

    /// A day: long enough not to over-push, short enough not to lose a lead.
    fn fallback() -> Self {
        Delay::WallClock(SignedDuration::from_hours(24))
    }
}

/// A parsed delay must also be longer than zero and, for `wall_clock_only` keys, not
/// counted in business time.
fn check_delay(
    delay: &Parsed<Delay>,
    key: &str,
    wall_clock_only: bool,
    errors: &mut Vec<SpannedError>,
) {
    if !delay.check(errors) {
        return;
    }
    let text = delay.text().get_ref();
    if delay.value().is_zero() {
        errors.push(SpannedError::at(
            delay.text().span(),
            format!("{key} {text:?} must be longer than zero"),
        ));
    } else if wall_clock_only && delay.value().is_business() {
        errors.push(SpannedError::at(
            delay.text().span(),
            format!("{key} {text:?} must be wall-clock time such as \"7d\" or \"12h\""),
        ));
    }
}

impl FollowupPlaybook {
    /// The zone business time is counted in when no better one is known.
    pub fn timezone(&self) -> &TimeZone {
        self.timezone.value()
    }

    pub fn business_hours(&self) -> &WeeklyHours {
        self.business_hours.value()
    }

    /// The business calendar in `tz`.
    pub fn calendar<'a>(&'a self, tz: &'a TimeZone) -> Calendar<'a> {
        Calendar::new(tz, self.business_hours.value())
    }

    /// Steps in a row left unanswered before the approach changes; at least 1.
    pub fn unanswered_before_change(&self) -> u32 {
        (*self.unanswered_before_change.get_ref()).max(1)
    }

    /// At most this many touches per contact in any rolling [`Self::frequency_window`].
    pub fn frequency_touches(&self) -> u32 {
        *self.frequency_cap.touches.get_ref()
    }

    pub fn frequency_window(&self) -> SignedDuration {
        self.frequency_cap
            .window
            .value()
            .wall_clock()
            .unwrap_or(SignedDuration::from_hours(24 * 7))
    }

    /// At most this many steps of a cadence on `channel`.
    pub fn attempt_cap(&self, channel: Channel) -> u32 {
        let caps = &self.attempt_caps;
        *match channel {
            Channel::Call => &caps.call,
            Channel::Email => &caps.email,
            Channel::Sms => &caps.sms,
            Channel::Linkedin => &caps.linkedin,
        }
        .get_ref()
    }

    pub fn momentum_half_life(&self) -> SignedDuration {
        self.momentum
            .half_life
            .value()
            .wall_clock()
            .unwrap_or(SignedDuration::from_hours(72))
    }

    pub fn momentum_threshold(&self) -> f64 {
        *self.momentum.threshold.get_ref()
    }

    /// The score a lead starts with when it is enrolled.
    pub fn activated_weight(&self) -> f64 {
        *self.momentum.weights.activated.get_ref()
    }

    /// What a call that reached the lead adds to momentum.
    pub fn connected_call_weight(&self) -> f64 {
        *self.momentum.weights.connected_call.get_ref()
    }

    /// What `engagement` adds to momentum.
    pub fn weight(&self, engagement: &Engagement) -> f64 {
        let w = &self.momentum.weights;
        match engagement {
            Engagement::Reply {
                sentiment: ReplySentiment::RemoveMe,
            } => 0.0,
            Engagement::Reply { .. } => *w.reply.get_ref(),
            Engagement::MeetingBooked => *w.meeting_booked.get_ref(),
            Engagement::Click => *w.click.get_ref(),
            Engagement::SiteVisit => *w.site_visit.get_ref(),
            Engagement::Open => *w.open.get_ref(),
            Engagement::OutOfOffice { .. }
            | Engagement::Bounce { .. }
            | Engagement::Unsubscribe => 0.0,
        }
    }

    /// The move for a kind of silence.
    pub fn silence_move(&self, silence: Silence) -> SilenceMove {
        let s = &self.silence;
        *match silence {
            Silence::NoOpen => &s.no_open,
            Silence::OpenedNoReply => &s.opened_no_reply,
            Silence::Clicked => &s.clicked,
            Silence::OutOfOffice => &s.out_of_office,
            Silence::Bounced => &s.bounced,
        }
        .get_ref()
    }

    /// How long an out-of-office reply without a return date pauses the cadence.
    pub fn out_of_office_without_date(&self) -> Delay {
        *self.silence.out_of_office_without_date.value()
    }

    /// How long after the last step an unanswered lead is recycled into nurture.
    pub fn nurture_after_cadence(&self) -> Delay {
        *self.nurture.after_cadence.value()
    }

    pub fn nurture_interval(&self) -> Delay {
        *self.nurture.interval.value()
    }

    pub fn nurture_touches(&self) -> u32 {
        *self.nurture.touches.get_ref()
    }

    pub fn nurture_channel(&self) -> Channel {
        *self.nurture.channel.get_ref()
    }

    pub fn nurture_template(&self) -> &str {
        self.nurture.template.get_ref()
    }

    pub fn nurture_strategy(&self) -> Strategy {
        *self.nurture.strategy.get_ref()
    }

    pub fn cadences(&self) -> &[Cadence] {
        &self.cadences
    }

    pub fn cadence(&self, id: &str) -> Option<&Cadence> {
        self.cadences.iter().find(|c| c.id() == id)
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The cadence of leads no rule matches.
    pub fn default_cadence(&self) -> Option<&str> {
        self.default_cadence.as_ref().map(|c| c.get_ref().as_str())
    }
}

impl Cadence {
    pub fn id(&self) -> &str {
        self.id.get_ref()
    }

    pub fn timezone(&self) -> TimeBasis {
        self.timezone
    }

    pub fn steps(&self) -> &[Step] {
        self.steps.get_ref()
    }

    /// The copy of this cadence an enrolment follows.
    pub fn plan(&self) -> CadencePlan {
        CadencePlan {
            id: self.id().to_owned(),
            timezone: self.timezone,
            default_template: self.default_template.as_ref().map(|t| t.get_ref().clone()),
            steps: self
                .steps
                .get_ref()
                .iter()
                .map(|s| StepPlan {
                    delay: *s.delay.value(),
                    channel: s.channel,
                    strategy: s.strategy,
                    template: s.template.get_ref().clone(),
                })
                .collect(),
            on_silence: self
                .on_silence
                .iter()
                .map(|a| {
                    let a = a.get_ref();
                    Alternative {
                        strategy: a.strategy.as_ref().map(|s| *s.get_ref()),
                        channel: a.channel,
                        template: a.template.as_ref().map(|t| t.get_ref().clone()),
                    }
                })
                .collect(),
        }
    }
}

impl Step {
    pub fn delay(&self) -> Delay {
        *self.delay.value()
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn template(&self) -> &str {
        self.template.get_ref()
    }
}

impl Rule {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn cadence(&self) -> &str {
        self.cadence.get_ref()
    }

    pub fn intents(&self) -> impl Iterator<Item = &str> {
        self.intents.iter().map(|i| i.get_ref().as_str())
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn icp_tiers(&self) -> impl Iterator<Item = &str> {
        self.icp_tiers.iter().map(|t| t.get_ref().as_str())
    }

    pub(crate) fn is_catch_all(&self) -> bool {
        self.intents.is_empty()
            && self.sources.is_empty()
            && self.segments.is_empty()
            && self.icp_tiers.is_empty()
    }
}

impl Section for FollowupPlaybook {
    const NAME: &'static str = "followup";

    fn validate(&self) -> Vec<SpannedError> {
        let mut errors = Vec::new();
        self.timezone.check(&mut errors);
        self.business_hours.check(&mut errors);
        at_least_one(
            &self.unanswered_before_change,
            "unanswered_before_change",
            "the approach would change before any step could go unanswered",
            &mut errors,
        );
        self.check_caps(&mut errors);
        self.check_momentum(&mut errors);
        self.check_silence(&mut errors);
        self.check_nurture(&mut errors);

        let ids = unique_ids(self.cadences.iter().map(|c| &c.id), &mut errors);
        for cadence in &self.cadences {
            check_cadence(cadence, &mut errors);
        }
        match &self.default_cadence {
            Some(id) => check_ref(id, "default_cadence", &ids, &mut errors),
            None if !self.cadences.is_empty() => errors.push(SpannedError::general(
                "[followup] needs default_cadence: the cadence of leads no rule matches, so no \
                 lead is left without follow-up",
            )),
            None => {}
        }
        check_rules(&self.rules, &ids, &mut errors);

        errors.sort_by_key(|e| e.span.as_ref().map_or(0, |span| span.start));
        errors
    }
}

impl FollowupPlaybook {
    fn check_caps(&self, errors: &mut Vec<SpannedError>) {
        let cap = &self.frequency_cap;
        at_least_one(
            &cap.touches,
            "frequency_cap touches",
            "no step could ever go out",
            errors,
        );
        check_delay(&cap.window, "frequency_cap window", true, errors);
        let caps = &self.attempt_caps;
        for (channel, value) in [
            ("call", &caps.call),
            ("email", &caps.email),
            ("sms", &caps.sms),
            ("linkedin", &caps.linkedin),
        ] {
            at_least_one(
                value,
                &format!("attempt_caps {channel}"),
                "to keep a cadence off a channel, leave it out of the cadence's steps",
                errors,
            );
        }
    }

    fn check_momentum(&self, errors: &mut Vec<SpannedError>) {
        let m = &self.momentum;
        check_delay(&m.half_life, "momentum half_life", true, errors);
        let w = &m.weights;
        for (key, weight) in [
            ("activated", &w.activated),
            ("reply", &w.reply),
            ("meeting_booked", &w.meeting_booked),
            ("connected_call", &w.connected_call),
            ("click", &w.click),
            ("site_visit", &w.site_visit),
            ("open", &w.open),
        ] {
            let value = *weight.get_ref();
            if !value.is_finite() || value < 0.0 {
                errors.push(SpannedError::at(
                    weight.span(),
                    format!("momentum weight {key} must be a number of 0 or more, not {value}"),
                ));
            }
        }
        let (threshold, activated) = (*m.threshold.get_ref(), *w.activated.get_ref());
        if !threshold.is_finite() || threshold <= 0.0 {
            errors.push(SpannedError::at(
                m.threshold.span(),
                format!("momentum threshold must be above 0, not {threshold}"),
            ));
        } else if threshold >= activated {
            errors.push(SpannedError::at(
                m.threshold.span(),
                format!(
                    "momentum threshold {threshold} must be below the activated weight \
                     {activated}, or every lead would escalate the moment it is enrolled"
                ),
            ));
        }
    }

    fn check_silence(&self, errors: &mut Vec<SpannedError>) {
        let s = &self.silence;
        for (key, value) in [
            ("no_open", &s.no_open),
            ("opened_no_reply", &s.opened_no_reply),
            ("clicked", &s.clicked),
            ("bounced", &s.bounced),
        ] {
            if *value.get_ref() == SilenceMove::PauseUntilReturn {
                errors.push(SpannedError::at(
                    value.span(),
                    format!(
                        "silence {key} cannot be pause_until_return: only an out-of-office \
                         reply says when to come back"
                    ),
                ));
            }
        }
        let ooo = *s.out_of_office.get_ref();
        if !matches!(ooo, SilenceMove::PauseUntilReturn | SilenceMove::Continue) {
            errors.push(SpannedError::at(
                s.out_of_office.span(),
                format!(
                    "silence out_of_office must be pause_until_return or continue, not {ooo}: \
                     the lead is away on every channel"
                ),
            ));
        }
        check_delay(
            &s.out_of_office_without_date,
            "out_of_office_without_date",
            false,
            errors,
        );
    }

    fn check_nurture(&self, errors: &mut Vec<SpannedError>) {
        let n = &self.nurture;
        check_delay(&n.after_cadence, "nurture after_cadence", false, errors);
        check_delay(&n.interval, "nurture interval", false, errors);
        at_least_one(
            &n.touches,
            "nurture touches",
            "a lead that never answered would be dropped instead of nurtured",
            errors,
        );
        not_blank(&n.template, "nurture template", errors);
        if *n.strategy.get_ref() == Strategy::BreakUp {
            errors.push(SpannedError::at(
                n.strategy.span(),
                "nurture strategy cannot be break_up: nurture keeps the door open",
            ));
        }
    }
}

fn at_least_one(value: &Spanned<u32>, key: &str, why: &str, errors: &mut Vec<SpannedError>) {
    if *value.get_ref() == 0 {
        errors.push(SpannedError::at(
            value.span(),
            format!("{key} must be at least 1: {why}"),
        ));
    }
}

fn not_blank(value: &Spanned<String>, key: &str, errors: &mut Vec<SpannedError>) {
    if value.get_ref().trim().is_empty() {
        errors.push(SpannedError::at(
            value.span(),
            format!("{key} must name a template"),
        ));
    }
}

fn check_cadence(cadence: &Cadence, errors: &mut Vec<SpannedError>) {
    let id = cadence.id();
    let steps = cadence.steps.get_ref();
    if steps.is_empty() {
        errors.push(SpannedError::at(
            cadence.steps.span(),
            format!("cadence {id:?} has no steps; give it at least one"),
        ));
    }
    for (index, step) in steps.iter().enumerate() {
        if step.delay.check(errors) && index > 0 && step.delay.value().is_zero() {
            errors.push(SpannedError::at(
                step.delay.text().span(),
                format!(
                    "step {} of cadence {id:?} has a zero delay: only the first step may be due \
                     at once, or two touches would go out together",
                    index + 1
                ),
            ));
        }
        not_blank(&step.template, "step template", errors);
    }
    if let Some(template) = &cadence.default_template {
        not_blank(template, "default_template", errors);
    }
    for alternative in &cadence.on_silence {
        let a = alternative.get_ref();
        if a.strategy.is_none() && a.channel.is_none() {
            errors.push(SpannedError::at(
                alternative.span(),
                "an on_silence entry needs a strategy, a channel or both",
            ));
        }
        if let Some(strategy) = &a.strategy
            && *strategy.get_ref() == Strategy::BreakUp
        {
            errors.push(SpannedError::at(
                strategy.span(),
                "on_silence cannot switch to break_up: put a break-up step at the end of the \
                 cadence instead",
            ));
        }
        if let Some(template) = &a.template {
            not_blank(template, "on_silence template", errors);
        }
    }
}

fn check_rules(rules: &[Rule], cadences: &BTreeSet<&str>, errors: &mut Vec<SpannedError>) {
    let mut names = BTreeSet::new();
    let mut catch_all: Option<&str> = None;
    for rule in rules {
        let name = rule.name.get_ref();
        if name.trim().is_empty() {
            errors.push(SpannedError::at(
                rule.name.span(),
                "rule name cannot be blank",
            ));
        } else if !names.insert(name.as_str()) {
            errors.push(SpannedError::at(
                rule.name.span(),
                format!("rule name {name:?} is used twice"),
            ));
        }
        if let Some(first) = catch_all {
            errors.push(SpannedError::at(
                rule.name.span(),
                format!(
                    "this rule can never match: {first:?} before it has no conditions and takes \
                     every lead (use default_cadence for the leads no rule takes)"
                ),
            ));
        }
        if rule.is_catch_all() && catch_all.is_none() {
            catch_all = Some(name);
        }
        check_ref(&rule.cadence, "cadence", cadences, errors);
        for intent in &rule.intents {
            let value = intent.get_ref();
            if !INTENT_KINDS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(value.trim()))
            {
                errors.push(SpannedError::at(
                    intent.span(),
                    format!(
                        "intent {value:?} is not an intent kind ({})",
                        INTENT_KINDS.join(", ")
                    ),
                ));
            }
        }
        for tier in &rule.icp_tiers {
            let value = tier.get_ref();
            if !ICP_TIERS
                .iter()
                .any(|t| t.eq_ignore_ascii_case(value.trim()))
            {
                errors.push(SpannedError::at(
                    tier.span(),
                    format!("icp tier {value:?} is not a tier (A, B, C, outside)"),
                ));
            }
        }
    }
}

fn check_ref(
    id: &Spanned<String>,
    what: &str,
    known: &BTreeSet<&str>,
    errors: &mut Vec<SpannedError>,
) {
    if !known.contains(id.get_ref().as_str()) {
        errors.push(unknown(id.span(), what, id.get_ref(), known));
    }
}

fn unknown(span: Range<usize>, what: &str, id: &str, known: &BTreeSet<&str>) -> SpannedError {
    // Enough ids to spot a typo, not a wall of text in a large playbook.
    const SHOWN: usize = 8;
    let mut list: Vec<&str> = known.iter().copied().take(SHOWN).collect();
    let more = format!("and {} more", known.len().saturating_sub(SHOWN));
    if known.len() > SHOWN {
        list.push(&more);
    }
    let hint = if known.is_empty() {
        "no cadences are defined".to_owned()
    } else {
        format!("cadences are {}", list.join(", "))
    };
    SpannedError::at(
        span,
        format!("{what} {id:?} is not a known cadence ({hint})"),
    )
}

/// Checks cadence ids are usable and unique, and returns them.
fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a Spanned<String>>,
    errors: &mut Vec<SpannedError>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    for id in ids {
        let text = id.get_ref().as_str();
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            errors.push(SpannedError::at(
                id.span(),
                format!("cadence id {text:?} must be non-empty and without spaces"),
            ));
        } else if !seen.insert(text) {
            errors.push(SpannedError::at(
                id.span(),
                format!("cadence id {text:?} is defined twice"),
            ));
        }
    }
    seen
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::playbook::parse;

    /// A realistic `[followup]` table, every key set; deploy/playbook.toml carries a copy.
    pub const EXAMPLE: &str = r#"[followup]
# Business delays count in the lead's zone (or the owner's, per cadence); this one when
# neither is known.
timezone = "America/New_York"
business_hours = "mon-fri 09:00-17:00"
# After this many unanswered steps in a row the cadence takes its next on_silence approach.
unanswered_before_change = 2
default_cadence = "standard"

[followup.frequency_cap]
# At most 3 touches of one contact in any 7 days, across channels and enrolments.
touches = 3
window = "7d"

[followup.attempt_caps]
call = 6
email = 5
sms = 2
linkedin = 3

[followup.momentum]
half_life = "3d"
threshold = 0.25

[followup.momentum.weights]
activated = 1.0
reply = 3.0
meeting_booked = 5.0
connected_call = 2.0
click = 1.0
site_visit = 0.5
open = 0.3

[followup.silence]
no_open = "switch_channel"
opened_no_reply = "change_angle"
clicked = "call_now"
out_of_office = "pause_until_return"
bounced = "switch_channel"
out_of_office_without_date = "5 business days"

[followup.nurture]
after_cadence = "3 business days"
interval = "30d"
touches = 12
channel = "email"
template = "nurture-monthly"
strategy = "value"

[[followup.cadences]]
id = "hot-demo"
timezone = "lead"
default_template = "demo-proof-generic"
on_silence = [
  { strategy = "peer_story", channel = "call", template = "demo-peer-call" },
  { strategy = "urgency" },
]
steps = [
  { delay = "0m", channel = "call", strategy = "value", template = "demo-call-opener" },
  { delay = "4 business hours", channel = "email", strategy = "value", template = "demo-recap" },
  { delay = "1 business day", channel = "call", strategy = "proof", template = "demo-proof-call" },
  { delay = "2 business days", channel = "email", strategy = "proof", template = "demo-case-study" },
  { delay = "3 business days", channel = "linkedin", strategy = "peer_story", template = "demo-peer" },
  { delay = "4 business days", channel = "call", strategy = "urgency", template = "demo-urgency" },
  { delay = "5 business days", channel = "email", strategy = "break_up", template = "demo-break-up" },
]

[[followup.cadences]]
id = "standard"
timezone = "lead"
default_template = "standard-proof-generic"
on_silence = [{ strategy = "check_in", channel = "linkedin" }]
steps = [
  { delay = "1 business hour", channel = "email", strategy = "value", template = "standard-intro" },
  { delay = "2 business days", channel = "call", strategy = "value", template = "standard-call" },
  { delay = "3 business days", channel = "email", strategy = "proof", template = "standard-proof" },
  { delay = "5 business days", channel = "email", strategy = "break_up", template = "standard-break-up" },
]

[[followup.cadences]]
id = "event-followup"
timezone = "owner"
steps = [
  { delay = "2h", channel = "email", strategy = "value", template = "event-nice-to-meet" },
  { delay = "2 business days", channel = "linkedin", strategy = "peer_story", template = "event-peer" },
  { delay = "4 business days", channel = "call", strategy = "check_in", template = "event-call" },
]

[[followup.rules]]
name = "hot-inbound"
cadence = "hot-demo"
intents = ["demo_request", "contact_sales"]
icp_tiers = ["A", "B"]

[[followup.rules]]
name = "events"
cadence = "event-followup"
intents = ["event_badge_scan"]

[[followup.rules]]
name = "enterprise-pricing"
cadence = "hot-demo"
intents = ["pricing_page"]
segments = ["enterprise"]

[[followup.rules]]
name = "partner-referrals"
cadence = "hot-demo"
sources = ["partner-referral"]
"#;

    pub(crate) fn example() -> FollowupPlaybook {
        parse("p.toml", EXAMPLE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `EXAMPLE` with `from` (which must occur once) replaced by `to`; an empty `from`
    /// appends.
    fn edit(from: &str, to: &str) -> String {
        if from.is_empty() {
            return format!("{EXAMPLE}{to}");
        }
        assert_eq!(
            EXAMPLE.matches(from).count(),
            1,
            "{from:?} must occur once in EXAMPLE"
        );
        EXAMPLE.replace(from, to)
    }

    /// Parses `text`, where `@@` marks where the one expected problem is, and checks the
    /// problem is reported there and mentions `needle`.
    #[track_caller]
    fn assert_error(marked: &str, needle: &str) {
        testkit::assert_playbook_error::<FollowupPlaybook>(marked, needle);
    }

    #[test]
    fn the_example_parses_with_every_key() {
        let pb = example();
        assert_eq!(pb.timezone().iana_name(), Some("America/New_York"));
        assert_eq!(
            pb.business_hours().to_string(),
            "mon 09:00-17:00, tue 09:00-17:00, wed 09:00-17:00, thu 09:00-17:00, fri 09:00-17:00"
        );
        assert_eq!(pb.unanswered_before_change(), 2);
        assert_eq!(pb.default_cadence(), Some("standard"));
        assert_eq!(pb.frequency_touches(), 3);
        assert_eq!(pb.frequency_window(), SignedDuration::from_hours(168));
        assert_eq!(
            Channel::ALL.map(|c| pb.attempt_cap(c)),
            [6, 5, 3, 2],
            "call, email, linkedin, sms"
        );
        assert_eq!(pb.momentum_half_life(), SignedDuration::from_hours(72));
        assert_eq!(pb.momentum_threshold(), 0.25);
        assert_eq!(pb.activated_weight(), 1.0);
        assert_eq!(pb.connected_call_weight(), 2.0);
        assert_eq!(pb.weight(&Engagement::MeetingBooked), 5.0);
        assert_eq!(pb.weight(&Engagement::Unsubscribe), 0.0);
        assert_eq!(pb.silence_move(Silence::Clicked), SilenceMove::CallNow);
        assert_eq!(pb.out_of_office_without_date(), Delay::BusinessDays(5));
        assert_eq!(pb.nurture_after_cadence(), Delay::BusinessDays(3));
        assert_eq!(
            pb.nurture_interval(),
            Delay::WallClock(SignedDuration::from_hours(720))
        );
        assert_eq!(
            (
                pb.nurture_touches(),
                pb.nurture_channel(),
                pb.nurture_template(),
                pb.nurture_strategy()
            ),
            (12, Channel::Email, "nurture-monthly", Strategy::Value)
        );
        let ids: Vec<&str> = pb.cadences().iter().map(Cadence::id).collect();
        assert_eq!(ids, ["hot-demo", "standard", "event-followup"]);
        let hot = pb.cadence("hot-demo").unwrap().plan();
        assert_eq!(hot.steps.len(), 7);
        assert_eq!(hot.steps[1].delay, Delay::BusinessHours(4));
        assert_eq!(hot.steps[6].strategy, Strategy::BreakUp);
        assert_eq!(hot.default_template.as_deref(), Some("demo-proof-generic"));
        assert_eq!(
            hot.on_silence[0],
            Alternative {
                strategy: Some(Strategy::PeerStory),
                channel: Some(Channel::Call),
                template: Some("demo-peer-call".into())
            }
        );
        assert_eq!(
            pb.cadence("event-followup").unwrap().timezone(),
            TimeBasis::Owner
        );
        assert_eq!(pb.rules().len(), 4);
        assert_eq!(
            pb.rules()[0].intents().collect::<Vec<_>>(),
            ["demo_request", "contact_sales"]
        );
    }

    #[test]
    fn the_default_is_valid_and_has_no_cadences() {
        let pb = FollowupPlaybook::default();
        assert!(pb.validate().is_empty(), "{:?}", pb.validate());
        assert!(pb.cadences().is_empty() && pb.default_cadence().is_none());
        assert_eq!(pb.timezone(), &TimeZone::UTC);
        assert_eq!(pb.attempt_cap(Channel::Call), 6);
        assert_eq!(pb.silence_move(Silence::NoOpen), SilenceMove::SwitchChannel);
        assert_eq!(
            pb.silence_move(Silence::OpenedNoReply),
            SilenceMove::ChangeAngle
        );
        assert_eq!(pb.silence_move(Silence::Clicked), SilenceMove::CallNow);
        assert_eq!(
            pb.silence_move(Silence::OutOfOffice),
            SilenceMove::PauseUntilReturn
        );
        assert_eq!(
            pb.silence_move(Silence::Bounced),
            SilenceMove::SwitchChannel
        );
        assert_eq!(
            (pb.nurture_touches(), pb.nurture_interval().to_string()),
            (12, "30d".into())
        );
        // a playbook without the table reads as the default
        let absent: FollowupPlaybook = parse("p.toml", "[intake]\nx = 1\n").unwrap();
        assert!(absent.cadences().is_empty());
        // a small one names only what it changes
        let small: FollowupPlaybook = parse(
            "p.toml",
            "[followup]\ndefault_cadence = \"c\"\n[[followup.cadences]]\nid = \"c\"\n\
             steps = [{ delay = \"0m\", channel = \"email\", strategy = \"value\", template = \"t\" }]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.cadence("c").unwrap().timezone(), TimeBasis::Lead);
        assert_eq!(small.frequency_touches(), 3);
    }

    #[test]
    fn references_must_name_defined_cadences() {
        let cases = [
            (
                edit(
                    "default_cadence = \"standard\"",
                    "default_cadence = @@\"standrd\"",
                ),
                "default_cadence \"standrd\" is not a known cadence (cadences are \
                 event-followup, hot-demo, standard)",
            ),
            (
                edit("cadence = \"event-followup\"", "cadence = @@\"events\""),
                "cadence \"events\" is not a known cadence",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
        let err =
            parse::<FollowupPlaybook>("p.toml", &edit("default_cadence = \"standard\"\n", ""))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("p.toml: [followup] needs default_cadence"),
            "{err}"
        );
    }

    #[test]
    fn cadences_are_checked() {
        let cases = [
            (
                edit("", "[[followup.cadences]]\nid = \"empty\"\nsteps = @@[]\n"),
                "cadence \"empty\" has no steps",
            ),
            (
                edit(
                    "",
                    "[[followup.cadences]]\nid = @@\"standard\"\nsteps = [{ delay = \"1d\", \
                     channel = \"email\", strategy = \"value\", template = \"t\" }]\n",
                ),
                "cadence id \"standard\" is defined twice",
            ),
            (
                edit(
                    "",
                    "[[followup.cadences]]\nid = @@\"new cadence\"\nsteps = [{ delay = \"1d\", \
                     channel = \"email\", strategy = \"value\", template = \"t\" }]\n",
                ),
                "cadence id \"new cadence\" must be non-empty and without spaces",
            ),
            (
                edit(
                    "delay = \"2 business days\", channel = \"linkedin\"",
                    "delay = @@\"2 buisness days\", channel = \"linkedin\"",
                ),
                "delay \"2 buisness days\" is not a delay",
            ),
            (
                edit(
                    "delay = \"2 business days\", channel = \"linkedin\"",
                    "delay = @@\"0m\", channel = \"linkedin\"",
                ),
                "step 2 of cadence \"event-followup\" has a zero delay",
            ),
            (
                edit("template = \"event-call\"", "template = @@\"  \""),
                "step template must name a template",
            ),
            (
                edit(
                    "strategy = \"check_in\", channel = \"linkedin\" }",
                    "strategy = \"check_in\", channel = \"linkedin\" }, @@{ template = \"x\" }",
                ),
                "an on_silence entry needs a strategy, a channel or both",
            ),
            (
                edit(
                    "{ strategy = \"urgency\" }",
                    "{ strategy = @@\"break_up\" }",
                ),
                "on_silence cannot switch to break_up",
            ),
            (
                edit(
                    "channel = \"linkedin\", strategy = \"peer_story\", template = \"event-peer\"",
                    "channel = @@\"fax\", strategy = \"peer_story\", template = \"event-peer\"",
                ),
                "unknown variant `fax`",
            ),
            (
                edit("timezone = \"owner\"", "timezone = @@\"team\""),
                "unknown variant `team`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn zones_hours_and_delays_must_parse() {
        let cases = [
            (
                edit(
                    "timezone = \"America/New_York\"",
                    "timezone = @@\"America/New_Yrok\"",
                ),
                "timezone \"America/New_Yrok\" is not a known IANA time zone",
            ),
            (
                edit(
                    "business_hours = \"mon-fri 09:00-17:00\"",
                    "business_hours = @@\"mon-fri 9-5\"",
                ),
                "hours \"mon-fri 9-5\": `9` is not a time",
            ),
            (
                edit("window = \"7d\"", "window = @@\"5 business days\""),
                "frequency_cap window \"5 business days\" must be wall-clock time",
            ),
            (
                edit("half_life = \"3d\"", "half_life = @@\"0m\""),
                "momentum half_life \"0m\" must be longer than zero",
            ),
            (
                edit("interval = \"30d\"", "interval = @@\"monthly\""),
                "delay \"monthly\" is not a delay",
            ),
            (
                edit(
                    "after_cadence = \"3 business days\"",
                    "after_cadence = @@\"0 business days\"",
                ),
                "nurture after_cadence \"0 business days\" must be longer than zero",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn caps_and_numbers_are_checked() {
        let cases = [
            (
                edit("touches = 3", "touches = @@0"),
                "frequency_cap touches must be at least 1",
            ),
            (
                edit("call = 6", "call = @@0"),
                "attempt_caps call must be at least 1",
            ),
            (
                edit("touches = 12", "touches = @@0"),
                "nurture touches must be at least 1",
            ),
            (
                edit(
                    "unanswered_before_change = 2",
                    "unanswered_before_change = @@0",
                ),
                "unanswered_before_change must be at least 1",
            ),
            (
                edit("threshold = 0.25", "threshold = @@1.5"),
                "momentum threshold 1.5 must be below the activated weight 1",
            ),
            (
                edit("threshold = 0.25", "threshold = @@0.0"),
                "momentum threshold must be above 0",
            ),
            (
                edit("open = 0.3", "open = @@-0.3"),
                "momentum weight open must be a number of 0 or more",
            ),
            (
                edit("call = 6", "call = @@-1"),
                "invalid value: integer `-1`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn silence_moves_fit_their_silence() {
        let cases = [
            (
                edit(
                    "clicked = \"call_now\"",
                    "clicked = @@\"pause_until_return\"",
                ),
                "silence clicked cannot be pause_until_return",
            ),
            (
                edit(
                    "out_of_office = \"pause_until_return\"",
                    "out_of_office = @@\"call_now\"",
                ),
                "silence out_of_office must be pause_until_return or continue, not call_now",
            ),
            (
                edit("no_open = \"switch_channel\"", "no_open = @@\"shout\""),
                "unknown variant `shout`",
            ),
            (
                edit(
                    "strategy = \"value\"\n\n[[",
                    "strategy = @@\"break_up\"\n\n[[",
                ),
                "nurture strategy cannot be break_up",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn rules_are_checked() {
        let cases = [
            (
                edit(
                    "intents = [\"event_badge_scan\"]",
                    "intents = [@@\"badge_scan\"]",
                ),
                "intent \"badge_scan\" is not an intent kind",
            ),
            (
                edit("icp_tiers = [\"A\", \"B\"]", "icp_tiers = [\"A\", @@\"D\"]"),
                "icp tier \"D\" is not a tier",
            ),
            (
                edit("name = \"events\"", "name = @@\"hot-inbound\""),
                "rule name \"hot-inbound\" is used twice",
            ),
            (
                edit(
                    "",
                    "[[followup.rules]]\nname = \"all\"\ncadence = \"standard\"\n\
                     [[followup.rules]]\nname = @@\"late\"\ncadence = \"standard\"\nsources = [\"x\"]\n",
                ),
                "this rule can never match: \"all\" before it has no conditions",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let cases = [
            (edit("touches = 3", "@@touch = 3"), "unknown field `touch`"),
            (
                edit(
                    "default_cadence = \"standard\"",
                    "default_cadence = \"standard\"\n@@cadense = 1",
                ),
                "unknown field `cadense`",
            ),
            (
                edit("click = 1.0", "@@clicks = 1.0"),
                "unknown field `clicks`",
            ),
        ];
        for (text, needle) in cases {
            assert_error(&text, needle);
        }
    }

    #[test]
    fn all_problems_are_reported_together_in_file_order() {
        let text = EXAMPLE
            .replace("touches = 3", "touches = 0")
            .replace("default_cadence = \"standard\"", "default_cadence = \"x\"")
            .replace("interval = \"30d\"", "interval = \"monthly\"");
        let err = parse::<FollowupPlaybook>("p.toml", &text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("  p.toml:8:19: default_cadence"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("  p.toml:12:11: frequency_cap touches"),
            "{err}"
        );
        assert!(lines[2].contains("\"monthly\" is not a delay"), "{err}");
    }
}
