//! Intake's domain: what a lead is, how a submission is normalised and validated, and the
//! data-quality, completeness and ICP rules the playbook applies. No gRPC and no SQL here.

pub mod quality;
pub mod validate;

use std::collections::BTreeMap;

use jiff::Timestamp;
use runtime::pii::Pii;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Id of an accepted lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeadId(pub Uuid);

impl LeadId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for LeadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for LeadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for LeadId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Id of a rejection in the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RejectionId(pub Uuid);

impl RejectionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RejectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RejectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for RejectionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Everything a caller knows about a lead, as submitted (normalised once validated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadInput {
    pub contact: Contact,
    pub source: SourceContext,
    pub intent: IntentSignal,
    pub purchase_timeframe: PurchaseTimeframe,
    pub consent: Consent,
    pub attributes: BTreeMap<String, String>,
}

impl LeadInput {
    /// Blanks the person's data for an erasure: name, email, phone and the words they wrote.
    /// What reports count by (source, campaign, company, country, intent kind, consent) stays,
    /// so aggregates survive the erasure of the people behind them.
    pub fn erase_personal_data(&mut self) {
        for field in [
            &mut self.contact.name,
            &mut self.contact.email,
            &mut self.contact.phone,
            &mut self.source.message,
            &mut self.intent.detail,
        ] {
            *field = Pii::default();
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: Pii,
    pub email: Pii,
    pub phone: Pii,
    pub company: String,
    pub title: String,
    pub country: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceContext {
    pub source: String,
    pub channel: String,
    pub campaign: String,
    pub ad: String,
    pub landing_page: String,
    pub referrer: String,
    pub utm: Utm,
    /// What the lead wrote, in their own words.
    pub message: Pii,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub term: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentSignal {
    pub kind: IntentKind,
    pub strength: IntentStrength,
    /// Free text from the form ("which product?"); may hold personal details.
    pub detail: Pii,
}

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStrength {
    #[default]
    Unspecified,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseTimeframe {
    #[default]
    Unspecified,
    Immediate,
    ThisQuarter,
    ThisYear,
    Later,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub basis: ConsentBasis,
    /// When consent was captured; `None` means "at submission".
    pub captured_at: Option<Timestamp>,
    pub wording: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentBasis {
    #[default]
    Unspecified,
    OptIn,
    LegitimateInterest,
    /// No consent to be contacted: the lead is do-not-contact from the start.
    None,
}

/// ICP-fit tier; the playbook's first matching tier wins.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum IcpTier {
    A,
    B,
    C,
    #[default]
    Outside,
}

/// An accepted lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: LeadId,
    pub input: LeadInput,
    pub received_at: Timestamp,
    pub completeness_score: u32,
    pub icp_tier: IcpTier,
    pub do_not_contact: bool,
    pub touches: Vec<Touch>,
}

/// A later submission of the same contact, merged into its lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub id: Uuid,
    pub received_at: Timestamp,
    pub input: LeadInput,
}

/// One thing wrong with a submission, phrased so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Path into [`LeadInput`], e.g. `contact.email`; empty for the whole lead.
    pub field: String,
    /// Stable machine-readable code, e.g. `invalid_email`.
    pub code: String,
    pub description: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, code: &str, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.to_owned(),
            description: description.into(),
        }
    }
}

/// A well-formed lead that failed data-quality rules, kept for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: RejectionId,
    pub input: LeadInput,
    pub received_at: Timestamp,
    pub problems: Vec<Problem>,
    pub state: RejectionState,
    pub lead_id: Option<LeadId>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionState {
    #[default]
    Pending,
    Accepted,
    Dismissed,
}

/// The key a contact is deduplicated and suppressed by: its normalised email, or its E.164
/// phone when it has no email.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContactKey {
    Email(Pii),
    Phone(Pii),
}

impl ContactKey {
    /// The key of a normalised contact; `None` when it has neither email nor phone.
    pub fn of(contact: &Contact) -> Option<Self> {
        if !contact.email.is_empty() {
            Some(Self::Email(contact.email.clone()))
        } else if !contact.phone.is_empty() {
            Some(Self::Phone(contact.phone.clone()))
        } else {
            None
        }
    }

    /// Stable text form for storage, e.g. `email:ada@example.com`.
    pub fn as_storage_key(&self) -> String {
        match self {
            Self::Email(e) => format!("email:{}", e.expose()),
            Self::Phone(p) => format!("phone:{}", p.expose()),
        }
    }
}

/// Every key a contact may be suppressed under (its email and its phone).
pub fn suppression_keys(contact: &Contact) -> Vec<ContactKey> {
    let mut keys = Vec::with_capacity(2);
    if !contact.email.is_empty() {
        keys.push(ContactKey::Email(contact.email.clone()));
    }
    if !contact.phone.is_empty() {
        keys.push(ContactKey::Phone(contact.phone.clone()));
    }
    keys
}
