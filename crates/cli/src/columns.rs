//! Which CSV column feeds which lead field: by header name (case-insensitive, with the aliases
//! badge scanners, webinar tools and CRMs export), overridden with `--map field=Column`; every
//! other column travels with the lead as an attribute. And one row made into a lead.

use proto::intake::v1 as pb;

/// A lead field a column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Name,
    FirstName,
    LastName,
    Email,
    Phone,
    Company,
    Title,
    Country,
    Timezone,
    Source,
    Channel,
    Campaign,
    Ad,
    LandingPage,
    Referrer,
    Message,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    Intent,
    IntentStrength,
    IntentDetail,
    Timeframe,
    Consent,
    ConsentWording,
}

/// Each field, its name for `--map`, and the header names it is recognised by (normalised:
/// lower case, runs of anything but letters and digits as one `_`).
const FIELDS: &[(Field, &str, &[&str])] = &[
    (
        Field::Name,
        "name",
        &["name", "full_name", "fullname", "contact_name", "contact"],
    ),
    (
        Field::FirstName,
        "first_name",
        &["first_name", "firstname", "first", "given_name", "vorname"],
    ),
    (
        Field::LastName,
        "last_name",
        &[
            "last_name",
            "lastname",
            "last",
            "surname",
            "family_name",
            "nachname",
        ],
    ),
    (
        Field::Email,
        "email",
        &[
            "email",
            "e_mail",
            "email_address",
            "e_mail_address",
            "mail",
            "work_email",
            "business_email",
        ],
    ),
    (
        Field::Phone,
        "phone",
        &[
            "phone",
            "phone_number",
            "telephone",
            "tel",
            "mobile",
            "mobile_phone",
            "cell",
            "work_phone",
            "telefon",
        ],
    ),
    (
        Field::Company,
        "company",
        &[
            "company",
            "company_name",
            "organization",
            "organisation",
            "organization_name",
            "account",
            "account_name",
            "employer",
            "firma",
        ],
    ),
    (
        Field::Title,
        "title",
        &[
            "title",
            "job_title",
            "jobtitle",
            "position",
            "role",
            "job_role",
        ],
    ),
    (
        Field::Country,
        "country",
        &["country", "country_code", "country_iso", "land"],
    ),
    (
        Field::Timezone,
        "timezone",
        &["timezone", "time_zone", "tz"],
    ),
    (Field::Source, "source", &["source", "lead_source"]),
    (Field::Channel, "channel", &["channel", "marketing_channel"]),
    (
        Field::Campaign,
        "campaign",
        &[
            "campaign",
            "campaign_name",
            "campaign_id",
            "event",
            "event_name",
            "webinar",
        ],
    ),
    (Field::Ad, "ad", &["ad", "ad_id", "creative"]),
    (
        Field::LandingPage,
        "landing_page",
        &[
            "landing_page",
            "landing_page_url",
            "page",
            "page_url",
            "url",
        ],
    ),
    (
        Field::Referrer,
        "referrer",
        &["referrer", "referer", "referrer_url"],
    ),
    (
        Field::Message,
        "message",
        &[
            "message",
            "comment",
            "comments",
            "notes",
            "note",
            "question",
            "questions",
            "remarks",
        ],
    ),
    (Field::UtmSource, "utm_source", &["utm_source"]),
    (Field::UtmMedium, "utm_medium", &["utm_medium"]),
    (Field::UtmCampaign, "utm_campaign", &["utm_campaign"]),
    (Field::UtmTerm, "utm_term", &["utm_term"]),
    (Field::UtmContent, "utm_content", &["utm_content"]),
    (Field::Intent, "intent", &["intent", "intent_kind"]),
    (
        Field::IntentStrength,
        "intent_strength",
        &["intent_strength", "strength", "interest_level"],
    ),
    (
        Field::IntentDetail,
        "intent_detail",
        &["intent_detail", "interest", "interested_in", "booth"],
    ),
    (
        Field::Timeframe,
        "timeframe",
        &["timeframe", "purchase_timeframe", "buying_timeframe"],
    ),
    (Field::Consent, "consent", &["consent", "consent_basis"]),
    (
        Field::ConsentWording,
        "consent_wording",
        &["consent_wording", "consent_text"],
    ),
];

/// The column the rejected-rows file adds; ignored on re-import.
pub const REASONS_COLUMN: &str = "reasons";

/// Field names `--map` accepts, for error messages and help.
pub fn field_names() -> String {
    FIELDS
        .iter()
        .map(|(_, name, _)| *name)
        .chain(["attributes.<name>", "ignore"])
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Job Title` → `job_title`; `E-Mail` → `e_mail`.
pub fn normalize(header: &str) -> String {
    let mut out = String::new();
    for c in header.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Where one column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Field(Field),
    /// A free-form attribute with this key.
    Attribute(String),
    Ignore,
}

/// One `--map field=Column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapArg {
    pub target: Target,
    pub column: String,
}

/// Parses `email=E-Mail`, `attributes.industry=Sector`, `ignore=Badge ID`.
pub fn parse_map(text: &str) -> Result<MapArg, String> {
    let (field, column) = text.split_once('=').ok_or_else(|| {
        format!("--map {text:?} needs the form FIELD=COLUMN, e.g. --map email=E-Mail")
    })?;
    let field = field.trim();
    let column = column.trim();
    if column.is_empty() {
        return Err(format!("--map {text:?} names no column after `=`"));
    }
    let target = if field == "ignore" {
        Target::Ignore
    } else if let Some(key) = field.strip_prefix("attributes.") {
        if key.is_empty() {
            return Err(format!(
                "--map {text:?}: name the attribute, e.g. attributes.industry=Sector"
            ));
        }
        Target::Attribute(key.to_owned())
    } else {
        let normalized = normalize(field);
        let found = FIELDS
            .iter()
            .find(|(_, name, _)| *name == normalized)
            .ok_or_else(|| {
                format!(
                    "--map {text:?}: unknown field {field:?}; fields are {}",
                    field_names()
                )
            })?;
        Target::Field(found.0)
    };
    Ok(MapArg {
        target,
        column: column.to_owned(),
    })
}

/// The target of each column of a file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub targets: Vec<Target>,
}

impl Mapping {
    /// Maps `headers`: explicit `--map`s first, then header names; every other column is an
    /// attribute named by its normalised header. Errors name a `--map` column the file lacks.
    pub fn new(headers: &[String], overrides: &[MapArg]) -> Result<Self, String> {
        let mut targets: Vec<Option<Target>> = vec![None; headers.len()];
        for arg in overrides {
            let wanted = normalize(&arg.column);
            let position = headers
                .iter()
                .position(|h| h.trim() == arg.column)
                .or_else(|| headers.iter().position(|h| normalize(h) == wanted))
                .ok_or_else(|| {
                    format!(
                        "--map names column {:?}, which the file does not have; its columns are {}",
                        arg.column,
                        headers.join(", ")
                    )
                })?;
            targets[position] = Some(arg.target.clone());
        }
        let mut taken: Vec<Field> = targets
            .iter()
            .filter_map(|t| match t {
                Some(Target::Field(f)) => Some(*f),
                _ => None,
            })
            .collect();
        for (i, header) in headers.iter().enumerate() {
            if targets[i].is_some() {
                continue;
            }
            let normalized = normalize(header);
            let known = FIELDS.iter().find(|(field, _, aliases)| {
                !taken.contains(field) && aliases.contains(&normalized.as_str())
            });
            targets[i] = Some(match known {
                Some((field, _, _)) => {
                    taken.push(*field);
                    Target::Field(*field)
                }
                None if normalized == REASONS_COLUMN || normalized.is_empty() => Target::Ignore,
                None => Target::Attribute(normalized),
            });
        }
        Ok(Self {
            targets: targets
                .into_iter()
                .map(|t| t.unwrap_or(Target::Ignore))
                .collect(),
        })
    }

    /// Whether some column feeds this field.
    pub fn has(&self, field: Field) -> bool {
        self.targets.contains(&Target::Field(field))
    }

    /// "email ← E-Mail, company ← Firma, attributes.booth ← Booth" for the summary.
    pub fn describe(&self, headers: &[String]) -> String {
        self.targets
            .iter()
            .zip(headers)
            .filter_map(|(target, header)| match target {
                Target::Field(f) => Some(format!("{} ← {header}", field_name(*f))),
                Target::Attribute(key) => Some(format!("attributes.{key} ← {header}")),
                Target::Ignore => None,
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn field_name(field: Field) -> &'static str {
    FIELDS
        .iter()
        .find(|(f, _, _)| *f == field)
        .map_or("?", |(_, name, _)| name)
}

/// Values every row gets unless its own column says otherwise.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub source: String,
    pub channel: String,
    pub campaign: String,
    pub intent: pb::IntentKind,
    pub consent: pb::ConsentBasis,
}

/// A problem found before sending: (field, code, description).
pub type LocalProblem = (String, &'static str, String);

/// Makes one row into a lead. Problems that the server could not even be asked about (an
/// intent it has no name for, a row with too many fields) come back instead.
pub fn lead_of(
    mapping: &Mapping,
    headers: &[String],
    fields: &[String],
    defaults: &Defaults,
) -> Result<pb::LeadInput, Vec<LocalProblem>> {
    let mut problems = Vec::new();
    if fields.len() > headers.len() && fields[headers.len()..].iter().any(|f| !f.trim().is_empty())
    {
        problems.push((
            String::new(),
            "malformed_row",
            format!(
                "{} fields, but the header has {}: quote fields that contain the delimiter",
                fields.len(),
                headers.len()
            ),
        ));
    }
    let mut contact = pb::Contact::default();
    let mut source = pb::SourceContext {
        source: defaults.source.clone(),
        channel: defaults.channel.clone(),
        campaign: defaults.campaign.clone(),
        ..Default::default()
    };
    let mut utm = pb::Utm::default();
    let mut intent = pb::IntentSignal {
        kind: defaults.intent as i32,
        ..Default::default()
    };
    let mut consent = pb::Consent {
        basis: defaults.consent as i32,
        ..Default::default()
    };
    let mut lead = pb::LeadInput::default();
    let (mut first, mut last) = (String::new(), String::new());
    for (target, value) in mapping.targets.iter().zip(fields) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let v = value.to_owned();
        match target {
            Target::Ignore => {}
            Target::Attribute(key) => {
                lead.attributes.insert(key.clone(), v);
            }
            Target::Field(field) => match field {
                Field::Name => contact.name = v,
                Field::FirstName => first = v,
                Field::LastName => last = v,
                Field::Email => contact.email = v,
                Field::Phone => contact.phone = v,
                Field::Company => contact.company = v,
                Field::Title => contact.title = v,
                Field::Country => contact.country = v,
                Field::Timezone => contact.timezone = v,
                Field::Source => source.source = v,
                Field::Channel => source.channel = v,
                Field::Campaign => source.campaign = v,
                Field::Ad => source.ad = v,
                Field::LandingPage => source.landing_page = v,
                Field::Referrer => source.referrer = v,
                Field::Message => source.message = v,
                Field::UtmSource => utm.source = v,
                Field::UtmMedium => utm.medium = v,
                Field::UtmCampaign => utm.campaign = v,
                Field::UtmTerm => utm.term = v,
                Field::UtmContent => utm.content = v,
                Field::IntentDetail => intent.detail = v,
                Field::ConsentWording => consent.wording = v,
                Field::Intent => match enum_value::<pb::IntentKind>(&v, "INTENT_KIND_") {
                    Some(kind) => intent.kind = kind as i32,
                    None => problems.push(bad_value("intent.kind", &v, INTENTS)),
                },
                Field::IntentStrength => {
                    match enum_value::<pb::IntentStrength>(&v, "INTENT_STRENGTH_") {
                        Some(s) => intent.strength = s as i32,
                        None => {
                            problems.push(bad_value("intent.strength", &v, "low, medium, high"))
                        }
                    }
                }
                Field::Timeframe => {
                    match enum_value::<pb::PurchaseTimeframe>(&v, "PURCHASE_TIMEFRAME_") {
                        Some(t) => lead.purchase_timeframe = t as i32,
                        None => problems.push(bad_value(
                            "purchase_timeframe",
                            &v,
                            "immediate, this_quarter, this_year, later",
                        )),
                    }
                }
                Field::Consent => match enum_value::<pb::ConsentBasis>(&v, "CONSENT_BASIS_") {
                    Some(c) => consent.basis = c as i32,
                    None => problems.push(bad_value(
                        "consent.basis",
                        &v,
                        "opt_in, legitimate_interest, none",
                    )),
                },
            },
        }
    }
    if contact.name.is_empty() {
        contact.name = [first, last]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    if source.source.is_empty() {
        problems.push((
            "source.source".into(),
            "missing_field",
            "no source: pass --source or fill the source column".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if utm != pb::Utm::default() {
        source.utm = Some(utm);
    }
    lead.contact = Some(contact);
    lead.source = Some(source);
    if intent != pb::IntentSignal::default() {
        lead.intent = Some(intent);
    }
    if consent != pb::Consent::default() {
        lead.consent = Some(consent);
    }
    Ok(lead)
}

/// Intent names for messages and help.
pub const INTENTS: &str = "demo_request, contact_sales, pricing_page, trial_signup, content_download, webinar, event_badge_scan, other";

fn bad_value(field: &str, value: &str, allowed: &str) -> LocalProblem {
    (
        field.into(),
        "invalid_value",
        format!("{value:?} is not one of {allowed}"),
    )
}

/// A protobuf enum by its snake_case name, any case, `-` or space for `_`, with or without the
/// prefix: `demo_request`, `Demo Request`, `INTENT_KIND_DEMO_REQUEST`.
pub fn enum_value<E: ProtoEnum>(text: &str, prefix: &str) -> Option<E> {
    let upper: String = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    E::from_name(&full).filter(|_| !full.ends_with("UNSPECIFIED"))
}

/// The generated `from_str_name` of a protobuf enum.
pub trait ProtoEnum: Sized {
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! proto_enum {
    ($($t:ty),*) => {$(
        impl ProtoEnum for $t {
            fn from_name(name: &str) -> Option<Self> {
                Self::from_str_name(name)
            }
        }
    )*};
}

proto_enum!(
    pb::IntentKind,
    pb::IntentStrength,
    pb::PurchaseTimeframe,
    pb::ConsentBasis,
    proto::activation::v1::ActivationState
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn targets_by_header(mapping: &Mapping, headers: &[String]) -> BTreeMap<String, Target> {
        headers
            .iter()
            .cloned()
            .zip(mapping.targets.iter().cloned())
            .collect()
    }

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn headers_are_recognised_by_name_and_alias_in_any_case() {
        let h = headers(&[
            "E-Mail",
            "First Name",
            "Last Name",
            "Company Name",
            "Job Title",
            "Country",
            "Comments",
            "Booth visited",
            "reasons",
        ]);
        let m = Mapping::new(&h, &[]).unwrap();
        let by = targets_by_header(&m, &h);
        assert_eq!(by["E-Mail"], Target::Field(Field::Email));
        assert_eq!(by["First Name"], Target::Field(Field::FirstName));
        assert_eq!(by["Company Name"], Target::Field(Field::Company));
        assert_eq!(by["Job Title"], Target::Field(Field::Title));
        assert_eq!(by["Comments"], Target::Field(Field::Message));
        assert_eq!(
            by["Booth visited"],
            Target::Attribute("booth_visited".into())
        );
        assert_eq!(by["reasons"], Target::Ignore);
    }

    #[test]
    fn explicit_maps_win_and_a_field_is_fed_once() {
        let h = headers(&["Email", "Private Email", "Firm"]);
        let maps = [
            parse_map("email=Private Email").unwrap(),
            parse_map("company=firm").unwrap(),
        ];
        let m = Mapping::new(&h, &maps).unwrap();
        let by = targets_by_header(&m, &h);
        assert_eq!(by["Private Email"], Target::Field(Field::Email));
        assert_eq!(by["Email"], Target::Attribute("email".into()));
        assert_eq!(by["Firm"], Target::Field(Field::Company));
        assert!(m.has(Field::Company));
    }

    #[test]
    fn bad_maps_say_what_is_wrong() {
        assert!(parse_map("email").unwrap_err().contains("FIELD=COLUMN"));
        assert!(
            parse_map("shoe_size=Shoe")
                .unwrap_err()
                .contains("unknown field")
        );
        assert_eq!(
            parse_map("attributes.industry=Sector").unwrap().target,
            Target::Attribute("industry".into())
        );
        let h = headers(&["Email"]);
        let err = Mapping::new(&h, &[parse_map("company=Firm").unwrap()]).unwrap_err();
        assert!(err.contains("\"Firm\""), "{err}");
    }

    #[test]
    fn a_row_becomes_a_lead_with_defaults_and_attributes() {
        let h = headers(&[
            "Email",
            "First Name",
            "Last Name",
            "Company",
            "Intent",
            "Industry",
            "Campaign",
        ]);
        let m = Mapping::new(&h, &[]).unwrap();
        let defaults = Defaults {
            source: "badge-scan".into(),
            campaign: "expo".into(),
            intent: pb::IntentKind::EventBadgeScan,
            ..Default::default()
        };
        let row = headers(&[
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Engines",
            "Demo Request",
            "software",
            "",
        ]);
        let lead = lead_of(&m, &h, &row, &defaults).unwrap();
        let contact = lead.contact.unwrap();
        assert_eq!(contact.name, "Ada Lovelace");
        assert_eq!(contact.email, "ada@example.com");
        let source = lead.source.unwrap();
        assert_eq!(
            (source.source.as_str(), source.campaign.as_str()),
            ("badge-scan", "expo")
        );
        assert_eq!(
            lead.intent.unwrap().kind,
            pb::IntentKind::DemoRequest as i32
        );
        assert_eq!(lead.attributes["industry"], "software");
    }

    #[test]
    fn rows_that_cannot_be_leads_say_why() {
        let h = headers(&["email", "intent"]);
        let m = Mapping::new(&h, &[]).unwrap();
        let defaults = Defaults {
            source: "webinar".into(),
            ..Default::default()
        };
        let problems =
            lead_of(&m, &h, &headers(&["a@b.c", "maybe", "extra"]), &defaults).unwrap_err();
        let codes: Vec<_> = problems.iter().map(|p| p.1).collect();
        assert_eq!(codes, ["malformed_row", "invalid_value"]);
        let no_source =
            lead_of(&m, &h, &headers(&["a@b.c", ""]), &Defaults::default()).unwrap_err();
        assert_eq!(no_source[0].0, "source.source");
    }

    #[test]
    fn enum_names_are_forgiving() {
        assert_eq!(
            enum_value::<pb::IntentKind>("demo-request", "INTENT_KIND_"),
            Some(pb::IntentKind::DemoRequest)
        );
        assert_eq!(
            enum_value::<pb::IntentKind>("INTENT_KIND_WEBINAR", "INTENT_KIND_"),
            Some(pb::IntentKind::Webinar)
        );
        assert_eq!(
            enum_value::<pb::IntentKind>("unspecified", "INTENT_KIND_"),
            None
        );
        assert_eq!(enum_value::<pb::IntentKind>("nope", "INTENT_KIND_"), None);
    }
}
