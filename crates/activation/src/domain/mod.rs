//! Activation's domain: what activation knows about a lead, and the rules that give it an
//! owner, a first action and an SLA timer, and that attribute and escalate a breach. Pure and
//! deterministic: no gRPC, no SQL, no clock (functions take `now`), no I/O.
//!
//! Read in the order a lead meets the rules:
//! - [`routing`]: which team (and, for a known account, which owner) a lead belongs to;
//! - [`assign`]: which owner of that team takes it now (working hours, out of office,
//!   capacity, weighted round-robin), or why nobody can;
//! - [`sla`]: how long the owner has, in wall-clock time or in the team's business hours;
//! - [`first_action`]: what the owner should do first, and whether what they did counts;
//! - [`breach`]: why a lead was not activated in time, and who gets it next.
//!
//! [`hours`] (from the runtime) holds the working-hours calendar the other modules share.

pub mod assign;
pub mod breach;
pub mod first_action;
pub use runtime::hours;
pub mod routing;
pub mod sla;

use std::collections::BTreeMap;
use std::fmt;

use runtime::pii::Pii;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Id of an owner (a rep or a manager), as written in the playbook.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(pub String);

/// Id of a team, as written in the playbook.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TeamId(pub String);

macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }
    };
}
string_id!(OwnerId);
string_id!(TeamId);

/// What activation knows about a lead: the facts intake's `LeadAccepted` event carries, in
/// the form the rules read them. This is also the context that travels with the lead to its
/// owner, so nobody restarts the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFacts {
    pub lead: Uuid,
    /// Domain of the contact's email, lower-case; empty when the lead has no email.
    pub email_domain: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `DE`; empty when unknown.
    pub country: String,
    pub company: String,
    /// The integration the lead came through, e.g. `website-demo-form`.
    pub source: String,
    /// The marketing channel, e.g. `paid-search`.
    pub channel: String,
    pub campaign: String,
    pub landing_page: String,
    /// What the lead wrote, in their own words.
    pub message: Pii,
    pub intent: IntentKind,
    pub intent_detail: Pii,
    pub strength: IntentStrength,
    pub icp_tier: IcpTier,
    /// Free-form attributes sent with the lead (`industry`, `employees`, `segment`, ...).
    pub attributes: BTreeMap<String, String>,
    pub do_not_contact: bool,
}

impl LeadFacts {
    /// Blanks what the person wrote, for an erasure (the facts hold no name, email or phone;
    /// routing facts such as the email's domain and the company stay, as reports need them).
    pub fn erase_personal_data(&mut self) {
        self.message = Pii::default();
        self.intent_detail = Pii::default();
    }

    /// The attribute `key`, trimmed; empty when the lead does not have it.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", |v| v.trim())
    }

    /// Company size from the `employees` attribute, when it is a number.
    pub fn employees(&self) -> Option<f64> {
        let n: f64 = self
            .attribute("employees")
            .replace(['_', ','], "")
            .parse()
            .ok()?;
        n.is_finite().then_some(n)
    }

    /// Whether activation may work this lead at all: a do-not-contact lead gets no owner,
    /// no first action and no timer.
    pub fn is_contactable(&self) -> bool {
        !self.do_not_contact
    }
}

/// What kind of interest the lead showed; mirrors intake's intent kinds and reads in the
/// playbook as the same snake_case names (`demo_request`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    #[default]
    Unspecified,
    DemoRequest,
    ContactSales,
    PricingPage,
    TrialSignup,
    ContentDownload,
    Webinar,
    EventBadgeScan,
    Other,
}

impl IntentKind {
    /// How a person would say it, for talking points.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified interest",
            Self::DemoRequest => "demo request",
            Self::ContactSales => "asked to talk to sales",
            Self::PricingPage => "looked at pricing",
            Self::TrialSignup => "trial sign-up",
            Self::ContentDownload => "content download",
            Self::Webinar => "webinar registration",
            Self::EventBadgeScan => "badge scanned at an event",
            Self::Other => "other interest",
        }
    }
}

/// How strong the intent signal was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStrength {
    #[default]
    Unspecified,
    Low,
    Medium,
    High,
}

/// ICP fit as intake scored it. The playbook writes the tiers `"A"`, `"B"`, `"C"` (as in
/// `[intake]`) and `"outside"` for a lead no ICP rule matched.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum IcpTier {
    A,
    B,
    C,
    #[default]
    #[serde(rename = "outside", alias = "Outside")]
    Outside,
}

/// How an owner reaches a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Call,
    Email,
    Sms,
    Linkedin,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Call => "call",
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Linkedin => "linkedin",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employees_reads_plain_and_grouped_numbers() {
        let cases = [
            ("250", Some(250.0)),
            (" 1,200 ", Some(1200.0)),
            ("10_000", Some(10000.0)),
            ("", None),
            ("about 50", None),
            ("inf", None),
        ];
        for (value, want) in cases {
            let mut lead = LeadFacts::default();
            lead.attributes.insert("employees".into(), value.into());
            assert_eq!(lead.employees(), want, "{value:?}");
        }
    }

    #[test]
    fn enums_read_as_the_playbook_writes_them() {
        #[derive(Deserialize)]
        struct T {
            i: IntentKind,
            s: IntentStrength,
            t: Vec<IcpTier>,
            c: Channel,
        }
        let t: T = toml::from_str(
            "i = \"event_badge_scan\"\ns = \"high\"\nt = [\"A\", \"outside\", \"Outside\"]\nc = \"linkedin\"\n",
        )
        .unwrap();
        assert_eq!(t.i, IntentKind::EventBadgeScan);
        assert_eq!(t.s, IntentStrength::High);
        assert_eq!(t.t, [IcpTier::A, IcpTier::Outside, IcpTier::Outside]);
        assert_eq!(t.c, Channel::Linkedin);
        assert_eq!(Channel::Sms.to_string(), "sms");
    }

    #[test]
    fn do_not_contact_leads_are_not_worked() {
        let lead = LeadFacts {
            do_not_contact: true,
            ..LeadFacts::default()
        };
        assert!(!lead.is_contactable());
        assert!(LeadFacts::default().is_contactable());
    }
}
