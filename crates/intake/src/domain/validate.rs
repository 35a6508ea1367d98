//! Structural validation and normalisation of a submission: is it well-formed enough to be a
//! lead at all? A submission that fails here is refused (gRPC `INVALID_ARGUMENT`, one field
//! violation per [`Problem`]), so every problem names its field path and says how to fix it.
//! Data-quality rules that depend on the playbook live in [`super::quality`].

use std::str::FromStr;

use email_address::EmailAddress;
use phonenumber::Mode;
use phonenumber::country::Id as PhoneRegion;

use super::{LeadInput, Problem};

const SOURCE_MAX: usize = 128;
const SHORT_TEXT_MAX: usize = 256;
const EMAIL_MAX: usize = 254;
const URL_MAX: usize = 2048;
const MESSAGE_MAX: usize = 5000;
const INTENT_DETAIL_MAX: usize = 1000;
const CONSENT_WORDING_MAX: usize = 2000;
const PHONE_RAW_MAX: usize = 32;
const ATTRIBUTES_MAX: usize = 64;
const ATTRIBUTE_KEY_MAX: usize = 64;
const ATTRIBUTE_VALUE_MAX: usize = 1024;

/// Trims and canonicalises a submission (lower-case email, E.164 phone, upper-case country,
/// canonical time-zone name) and checks it is structurally sound. Returns every problem found,
/// not just the first, so a caller can fix them all in one round trip.
pub fn normalize(mut input: LeadInput) -> Result<LeadInput, Vec<Problem>> {
    let mut problems = Vec::new();
    normalize_contact(&mut input, &mut problems);
    normalize_source(&mut input, &mut problems);

    trim(&mut input.intent.detail);
    check_len(
        &mut problems,
        "intent.detail",
        &input.intent.detail,
        INTENT_DETAIL_MAX,
    );
    trim(&mut input.consent.wording);
    check_len(
        &mut problems,
        "consent.wording",
        &input.consent.wording,
        CONSENT_WORDING_MAX,
    );

    check_attributes(&input, &mut problems);

    if problems.is_empty() {
        Ok(input)
    } else {
        Err(problems)
    }
}

fn normalize_contact(input: &mut LeadInput, problems: &mut Vec<Problem>) {
    let c = &mut input.contact;
    for field in [
        &mut c.name,
        &mut c.email,
        &mut c.phone,
        &mut c.company,
        &mut c.title,
        &mut c.country,
        &mut c.timezone,
    ] {
        trim(field);
    }

    if c.email.is_empty() && c.phone.is_empty() {
        problems.push(Problem::new(
            "contact",
            "no_contact_channel",
            "give an email or a phone number so someone can reach this lead",
        ));
    }

    check_len(problems, "contact.name", &c.name, SHORT_TEXT_MAX);
    check_len(problems, "contact.company", &c.company, SHORT_TEXT_MAX);
    check_len(problems, "contact.title", &c.title, SHORT_TEXT_MAX);

    if !c.email.is_empty() {
        *c.email = c.email.to_lowercase();
        // A too-long address would also fail the syntax check; one problem is enough.
        if check_len(problems, "contact.email", &c.email, EMAIL_MAX)
            && let Err(why) = check_email(&c.email)
        {
            problems.push(Problem::new("contact.email", "invalid_email", why));
        }
    }

    c.country = c.country.to_uppercase();
    let country_ok = c.country.is_empty() || is_iso_country(&c.country);
    if !country_ok {
        problems.push(Problem::new(
            "contact.country",
            "invalid_country",
            "use a two-letter ISO 3166-1 country code such as DE, GB or US",
        ));
    }

    if !c.phone.is_empty() && check_len(problems, "contact.phone", &c.phone, PHONE_RAW_MAX) {
        // With a bad country the number cannot be read in it, and saying "set contact.country"
        // would be wrong: the country problem above is the one to fix first.
        if country_ok || c.phone.starts_with('+') {
            match to_e164(&c.phone, &c.country) {
                Ok(e164) => *c.phone = e164,
                Err(problem) => problems.push(problem),
            }
        }
    }

    if !c.timezone.is_empty() {
        match jiff::tz::TimeZone::get(&c.timezone) {
            // The database lookup ignores case; store the name as the database spells it.
            Ok(tz) => {
                if let Some(name) = tz.iana_name() {
                    c.timezone = name.to_owned();
                }
            }
            Err(_) => problems.push(Problem::new(
                "contact.timezone",
                "invalid_timezone",
                "use an IANA time zone name such as Europe/Berlin or America/New_York",
            )),
        }
    }
}

fn normalize_source(input: &mut LeadInput, problems: &mut Vec<Problem>) {
    let s = &mut input.source;
    // `message` is kept verbatim: its line breaks and indentation are the sender's words.
    for field in [
        &mut s.source,
        &mut s.channel,
        &mut s.campaign,
        &mut s.ad,
        &mut s.landing_page,
        &mut s.referrer,
        &mut s.utm.source,
        &mut s.utm.medium,
        &mut s.utm.campaign,
        &mut s.utm.term,
        &mut s.utm.content,
    ] {
        trim(field);
    }

    if s.source.is_empty() {
        problems.push(Problem::new(
            "source.source",
            "missing_field",
            "name the source this lead came from, e.g. website-demo-form",
        ));
    } else {
        check_len(problems, "source.source", &s.source, SOURCE_MAX);
    }

    let limits: [(&str, &str, usize); 11] = [
        ("source.channel", &s.channel, SHORT_TEXT_MAX),
        ("source.campaign", &s.campaign, SHORT_TEXT_MAX),
        ("source.ad", &s.ad, SHORT_TEXT_MAX),
        ("source.landing_page", &s.landing_page, URL_MAX),
        ("source.referrer", &s.referrer, URL_MAX),
        ("source.utm.source", &s.utm.source, SHORT_TEXT_MAX),
        ("source.utm.medium", &s.utm.medium, SHORT_TEXT_MAX),
        ("source.utm.campaign", &s.utm.campaign, SHORT_TEXT_MAX),
        ("source.utm.term", &s.utm.term, SHORT_TEXT_MAX),
        ("source.utm.content", &s.utm.content, SHORT_TEXT_MAX),
        ("source.message", &s.message, MESSAGE_MAX),
    ];
    for (field, value, max) in limits {
        check_len(problems, field, value, max);
    }
}

fn check_attributes(input: &LeadInput, problems: &mut Vec<Problem>) {
    if input.attributes.len() > ATTRIBUTES_MAX {
        problems.push(Problem::new(
            "attributes",
            "too_many_attributes",
            format!(
                "at most {ATTRIBUTES_MAX} attributes are allowed, this lead has {}; \
                 drop the least useful ones",
                input.attributes.len()
            ),
        ));
    }
    for (key, value) in &input.attributes {
        let field = format!("attributes.{key}");
        let key_len = key.chars().count();
        if key_len == 0 || key_len > ATTRIBUTE_KEY_MAX {
            problems.push(Problem::new(
                field,
                "invalid_attribute_key",
                format!("attribute names must be 1 to {ATTRIBUTE_KEY_MAX} characters long"),
            ));
        } else {
            check_len(problems, &field, value, ATTRIBUTE_VALUE_MAX);
        }
    }
}

/// Trims in place, allocating only when there is something to trim.
fn trim(value: &mut String) {
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
}

/// Records a `too_long` problem when `value` has more than `max` characters; true when it fits.
fn check_len(problems: &mut Vec<Problem>, field: &str, value: &str, max: usize) -> bool {
    let len = value.chars().count();
    if len <= max {
        return true;
    }
    problems.push(Problem::new(
        field,
        "too_long",
        format!("{field} may be at most {max} characters long, this one has {len}; shorten it"),
    ));
    false
}

/// Why a (trimmed, lower-cased) address is unusable, if it is.
fn check_email(email: &str) -> Result<(), String> {
    // Display names and `[ip]` literals are valid RFC 5322 but not a way to reach a business
    // contact, and a domain without a dot (`ada@localhost`) is never a company's mail server.
    let options = email_address::Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    match EmailAddress::parse_with_options(email, options) {
        Ok(address) if address.domain().contains('.') => Ok(()),
        Ok(_) | Err(email_address::Error::DomainTooFew) => {
            Err("the part after @ must be a full domain such as company.com".to_owned())
        }
        Err(email_address::Error::MissingSeparator) => {
            Err("an email address needs an @, as in name@company.com".to_owned())
        }
        Err(e) => Err(format!(
            "not a valid email address ({}); give it as name@company.com",
            e.to_string().trim_end_matches('.').to_lowercase()
        )),
    }
}

/// ISO 3166-1 alpha-2, using the phone metadata's region list, which is ISO 3166-1 with a few
/// differences: it adds Ascension (AC) and Tristan da Cunha (TA), which ISO only reserves, and
/// lacks the territories that have no phone plan of their own. It also has Kosovo (XK), a
/// user-assigned code in common use (EU, ISO's own software), which we keep.
fn is_iso_country(code: &str) -> bool {
    match code {
        "AC" | "TA" => false,
        "AQ" | "BV" | "GS" | "HM" | "PN" | "TF" | "UM" => true,
        _ => PhoneRegion::from_str(code).is_ok(),
    }
}

/// Loads the phone numbering metadata, which `phonenumber` parses on first use (about 75 ms
/// here): done at start, so the first lead after a deploy does not wait for it, nor every
/// lead queued behind that one.
pub fn warm_up() {
    let _ = phonenumber::parse(None, "+1 415 555 2671");
}

/// `raw` (trimmed, non-empty) as E.164, reading a number without `+` in `country`.
fn to_e164(raw: &str, country: &str) -> Result<String, Problem> {
    let region = if raw.starts_with('+') {
        None
    } else {
        match PhoneRegion::from_str(country) {
            Ok(region) => Some(region),
            Err(_) if country.is_empty() => {
                return Err(Problem::new(
                    "contact.phone",
                    "phone_needs_country",
                    "give the number with a +country prefix or set contact.country",
                ));
            }
            Err(_) => {
                return Err(Problem::new(
                    "contact.phone",
                    "phone_needs_country",
                    format!(
                        "{country} has no phone numbering plan of its own; give the number \
                         with a +country prefix"
                    ),
                ));
            }
        }
    };
    let unreadable = || {
        Problem::new(
            "contact.phone",
            "invalid_phone",
            "this is not a valid phone number; check the digits or give it as +49 30 1234567",
        )
    };
    let number = phonenumber::parse(region, raw).map_err(|_| unreadable())?;
    if !phonenumber::is_valid(&number) {
        return Err(unreadable());
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid, already-normalised submission each case starts from.
    fn base() -> LeadInput {
        let mut input = LeadInput::default();
        input.contact.name = "Ada Lovelace".into();
        input.contact.email = "ada@example.com".into();
        input.source.source = "website-demo-form".into();
        input
    }

    enum Expect {
        /// Normalisation succeeds and `check` holds for the result.
        Ok(fn(&LeadInput) -> bool),
        /// Normalisation fails with exactly these (code, field) problems, in any order.
        Problems(&'static [(&'static str, &'static str)]),
    }

    struct Case {
        name: &'static str,
        tweak: fn(&mut LeadInput),
        expect: Expect,
    }

    fn long(n: usize) -> String {
        "x".repeat(n)
    }

    const CASES: &[Case] = &[
        Case {
            name: "the base input is valid as is",
            tweak: |_| {},
            expect: Expect::Ok(|i| *i == base()),
        },
        // email
        Case {
            name: "email is trimmed and lower-cased",
            tweak: |i| *i.contact.email = "  Ada@Example.COM ".into(),
            expect: Expect::Ok(|i| i.contact.email == "ada@example.com"),
        },
        Case {
            name: "email without @",
            tweak: |i| *i.contact.email = "ada.example.com".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email with a dotless domain",
            tweak: |i| *i.contact.email = "ada@localhost".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email with a display name",
            tweak: |i| *i.contact.email = "Ada <ada@example.com>".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email with an IP literal",
            tweak: |i| *i.contact.email = "ada@[10.0.0.1]".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email with spaces inside",
            tweak: |i| *i.contact.email = "ada lovelace@example.com".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email with an empty domain label",
            tweak: |i| *i.contact.email = "ada@example..com".into(),
            expect: Expect::Problems(&[("invalid_email", "contact.email")]),
        },
        Case {
            name: "email of 254 characters is fine",
            tweak: |i| {
                *i.contact.email =
                    format!("{}@{}.{}.{}.com", long(64), long(63), long(63), long(57))
            },
            expect: Expect::Ok(|i| i.contact.email.len() == 254),
        },
        Case {
            name: "email over 254 characters",
            tweak: |i| {
                *i.contact.email =
                    format!("{}@{}.{}.{}.com", long(64), long(63), long(63), long(58))
            },
            expect: Expect::Problems(&[("too_long", "contact.email")]),
        },
        // phone
        Case {
            name: "national number read in the contact's country",
            tweak: |i| {
                *i.contact.phone = "030 1234567".into();
                i.contact.country = "de".into();
            },
            expect: Expect::Ok(|i| i.contact.phone == "+49301234567" && i.contact.country == "DE"),
        },
        Case {
            name: "international number needs no country",
            tweak: |i| *i.contact.phone = " +44 20 7946 0958 ".into(),
            expect: Expect::Ok(|i| i.contact.phone == "+442079460958"),
        },
        Case {
            name: "a + prefix wins over the contact's country",
            tweak: |i| {
                *i.contact.phone = "+1 (415) 555-2671".into();
                i.contact.country = "DE".into();
            },
            expect: Expect::Ok(|i| i.contact.phone == "+14155552671"),
        },
        Case {
            name: "phone alone is a contact channel",
            tweak: |i| {
                i.contact.email.clear();
                *i.contact.phone = "+49 30 1234567".into();
            },
            expect: Expect::Ok(|i| i.contact.phone == "+49301234567" && i.contact.email.is_empty()),
        },
        Case {
            name: "national number without a country",
            tweak: |i| *i.contact.phone = "030 1234567".into(),
            expect: Expect::Problems(&[("phone_needs_country", "contact.phone")]),
        },
        Case {
            name: "country without a phone plan cannot read a national number",
            tweak: |i| {
                *i.contact.phone = "030 1234567".into();
                i.contact.country = "AQ".into();
            },
            expect: Expect::Problems(&[("phone_needs_country", "contact.phone")]),
        },
        Case {
            name: "national number with a bad country reports only the country",
            tweak: |i| {
                *i.contact.phone = "030 1234567".into();
                i.contact.country = "XX".into();
            },
            expect: Expect::Problems(&[("invalid_country", "contact.country")]),
        },
        Case {
            name: "too few digits",
            tweak: |i| *i.contact.phone = "+49 30 12".into(),
            expect: Expect::Problems(&[("invalid_phone", "contact.phone")]),
        },
        Case {
            name: "not a number at all",
            tweak: |i| {
                *i.contact.phone = "call me maybe".into();
                i.contact.country = "DE".into();
            },
            expect: Expect::Problems(&[("invalid_phone", "contact.phone")]),
        },
        Case {
            name: "not a number at all, with a + prefix",
            tweak: |i| *i.contact.phone = "+ call me".into(),
            expect: Expect::Problems(&[("invalid_phone", "contact.phone")]),
        },
        Case {
            name: "unassigned country calling code",
            tweak: |i| *i.contact.phone = "+999 1234 5678".into(),
            expect: Expect::Problems(&[("invalid_phone", "contact.phone")]),
        },
        Case {
            name: "phone longer than 32 characters",
            tweak: |i| *i.contact.phone = format!("+49 30 1234567 {}", " ".repeat(10) + &long(10)),
            expect: Expect::Problems(&[("too_long", "contact.phone")]),
        },
        // country
        Case {
            name: "country is trimmed and upper-cased",
            tweak: |i| i.contact.country = " gb ".into(),
            expect: Expect::Ok(|i| i.contact.country == "GB"),
        },
        Case {
            name: "ISO country without a phone plan is accepted",
            tweak: |i| i.contact.country = "AQ".into(),
            expect: Expect::Ok(|i| i.contact.country == "AQ"),
        },
        Case {
            name: "unknown country code",
            tweak: |i| i.contact.country = "XX".into(),
            expect: Expect::Problems(&[("invalid_country", "contact.country")]),
        },
        Case {
            name: "a country name is not a code",
            tweak: |i| i.contact.country = "Germany".into(),
            expect: Expect::Problems(&[("invalid_country", "contact.country")]),
        },
        Case {
            name: "an ITU-only region is not an ISO country",
            tweak: |i| i.contact.country = "AC".into(),
            expect: Expect::Problems(&[("invalid_country", "contact.country")]),
        },
        // timezone
        Case {
            name: "IANA time zone is kept, spelled as in the database",
            tweak: |i| i.contact.timezone = " europe/berlin ".into(),
            expect: Expect::Ok(|i| i.contact.timezone == "Europe/Berlin"),
        },
        Case {
            name: "unknown time zone",
            tweak: |i| i.contact.timezone = "Mars/Olympus_Mons".into(),
            expect: Expect::Problems(&[("invalid_timezone", "contact.timezone")]),
        },
        Case {
            name: "a UTC offset is not an IANA name",
            tweak: |i| i.contact.timezone = "+02:00".into(),
            expect: Expect::Problems(&[("invalid_timezone", "contact.timezone")]),
        },
        // contact channel and source
        Case {
            name: "no email and no phone",
            tweak: |i| {
                *i.contact.email = "   ".into();
                i.contact.phone.clear();
            },
            expect: Expect::Problems(&[("no_contact_channel", "contact")]),
        },
        Case {
            name: "blank source",
            tweak: |i| i.source.source = "  ".into(),
            expect: Expect::Problems(&[("missing_field", "source.source")]),
        },
        Case {
            name: "source of 128 characters is fine",
            tweak: |i| i.source.source = long(128),
            expect: Expect::Ok(|i| i.source.source.len() == 128),
        },
        Case {
            name: "source over 128 characters",
            tweak: |i| i.source.source = long(129),
            expect: Expect::Problems(&[("too_long", "source.source")]),
        },
        // trimming
        Case {
            name: "contact, source, intent and consent fields are trimmed, the message is not",
            tweak: |i| {
                *i.contact.name = " Ada ".into();
                i.contact.company = "\tAcme GmbH\n".into();
                i.contact.title = " CTO".into();
                i.source.source = " webinar ".into();
                i.source.channel = " paid ".into();
                i.source.campaign = " q3 ".into();
                i.source.ad = " ad-7 ".into();
                i.source.landing_page = " https://example.com/demo ".into();
                i.source.referrer = " https://google.com/ ".into();
                i.source.utm.source = " google ".into();
                i.source.utm.medium = " cpc ".into();
                i.source.utm.campaign = " brand ".into();
                i.source.utm.term = " crm ".into();
                i.source.utm.content = " v2 ".into();
                *i.source.message = "  Hi,\n  we need 40 seats.\n".into();
                *i.intent.detail = " wants a demo ".into();
                i.consent.wording = " I agree ".into();
            },
            expect: Expect::Ok(|i| {
                let s = &i.source;
                i.contact.name == "Ada"
                    && i.contact.company == "Acme GmbH"
                    && i.contact.title == "CTO"
                    && s.source == "webinar"
                    && s.channel == "paid"
                    && s.campaign == "q3"
                    && s.ad == "ad-7"
                    && s.landing_page == "https://example.com/demo"
                    && s.referrer == "https://google.com/"
                    && [
                        &s.utm.source,
                        &s.utm.medium,
                        &s.utm.campaign,
                        &s.utm.term,
                        &s.utm.content,
                    ] == ["google", "cpc", "brand", "crm", "v2"]
                    && s.message == "  Hi,\n  we need 40 seats.\n"
                    && i.intent.detail == "wants a demo"
                    && i.consent.wording == "I agree"
            }),
        },
        // length limits: each at its limit is fine, one over is reported with its path
        Case {
            name: "every text field at its limit",
            tweak: |i| {
                *i.contact.name = long(256);
                i.contact.company = long(256);
                i.contact.title = long(256);
                i.source.channel = long(256);
                i.source.campaign = long(256);
                i.source.ad = long(256);
                i.source.landing_page = long(2048);
                i.source.referrer = long(2048);
                i.source.utm.source = long(256);
                i.source.utm.medium = long(256);
                i.source.utm.campaign = long(256);
                i.source.utm.term = long(256);
                i.source.utm.content = long(256);
                *i.source.message = long(5000);
                *i.intent.detail = long(1000);
                i.consent.wording = long(2000);
                i.attributes.insert("k".repeat(64), long(1024));
            },
            expect: Expect::Ok(|i| i.source.message.len() == 5000),
        },
        Case {
            name: "limits count characters, not bytes",
            tweak: |i| *i.contact.name = "ü".repeat(256),
            expect: Expect::Ok(|i| i.contact.name.chars().count() == 256),
        },
        Case {
            name: "every text field one over its limit",
            tweak: |i| {
                *i.contact.name = long(257);
                i.contact.company = long(257);
                i.contact.title = long(257);
                i.source.channel = long(257);
                i.source.campaign = long(257);
                i.source.ad = long(257);
                i.source.landing_page = long(2049);
                i.source.referrer = long(2049);
                i.source.utm.source = long(257);
                i.source.utm.medium = long(257);
                i.source.utm.campaign = long(257);
                i.source.utm.term = long(257);
                i.source.utm.content = long(257);
                *i.source.message = long(5001);
                *i.intent.detail = long(1001);
                i.consent.wording = long(2001);
                i.attributes.insert("industry".into(), long(1025));
            },
            expect: Expect::Problems(&[
                ("too_long", "contact.name"),
                ("too_long", "contact.company"),
                ("too_long", "contact.title"),
                ("too_long", "source.channel"),
                ("too_long", "source.campaign"),
                ("too_long", "source.ad"),
                ("too_long", "source.landing_page"),
                ("too_long", "source.referrer"),
                ("too_long", "source.utm.source"),
                ("too_long", "source.utm.medium"),
                ("too_long", "source.utm.campaign"),
                ("too_long", "source.utm.term"),
                ("too_long", "source.utm.content"),
                ("too_long", "source.message"),
                ("too_long", "intent.detail"),
                ("too_long", "consent.wording"),
                ("too_long", "attributes.industry"),
            ]),
        },
        // attributes
        Case {
            name: "64 attributes are fine",
            tweak: |i| i.attributes = (0..64).map(|n| (format!("a{n}"), "v".into())).collect(),
            expect: Expect::Ok(|i| i.attributes.len() == 64),
        },
        Case {
            name: "65 attributes are too many",
            tweak: |i| i.attributes = (0..65).map(|n| (format!("a{n}"), "v".into())).collect(),
            expect: Expect::Problems(&[("too_many_attributes", "attributes")]),
        },
        Case {
            name: "empty attribute key",
            tweak: |i| {
                i.attributes.insert(String::new(), "v".into());
            },
            expect: Expect::Problems(&[("invalid_attribute_key", "attributes.")]),
        },
        Case {
            name: "attribute key over 64 characters",
            tweak: |i| {
                i.attributes.insert("k".repeat(65), "v".into());
            },
            expect: Expect::Problems(&[(
                "invalid_attribute_key",
                "attributes.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
            )]),
        },
        // several at once
        Case {
            name: "all problems are reported together",
            tweak: |i| {
                i.source.source.clear();
                *i.contact.email = "nope".into();
                *i.contact.phone = "12345".into();
                i.contact.timezone = "Nowhere/Town".into();
                i.contact.title = long(300);
            },
            expect: Expect::Problems(&[
                ("missing_field", "source.source"),
                ("invalid_email", "contact.email"),
                ("phone_needs_country", "contact.phone"),
                ("invalid_timezone", "contact.timezone"),
                ("too_long", "contact.title"),
            ]),
        },
    ];

    #[test]
    fn normalize_cases() {
        let mut failures = Vec::new();
        for case in CASES {
            let mut input = base();
            (case.tweak)(&mut input);
            let result = normalize(input);
            match (&case.expect, result) {
                (Expect::Ok(check), Ok(normalised)) => {
                    if !check(&normalised) {
                        failures.push(format!("{}: unexpected result {normalised:#?}", case.name));
                    }
                }
                (Expect::Ok(_), Err(problems)) => {
                    failures.push(format!(
                        "{}: expected success, got {problems:#?}",
                        case.name
                    ));
                }
                (Expect::Problems(expected), Ok(normalised)) => {
                    failures.push(format!(
                        "{}: expected {expected:?}, got success {normalised:#?}",
                        case.name
                    ));
                }
                (Expect::Problems(expected), Err(problems)) => {
                    let mut got: Vec<_> = problems
                        .iter()
                        .map(|p| (p.code.as_str(), p.field.as_str()))
                        .collect();
                    let mut want = expected.to_vec();
                    got.sort();
                    want.sort();
                    if got != want {
                        failures.push(format!(
                            "{}: expected {want:?}, got {problems:#?}",
                            case.name
                        ));
                    }
                    if let Some(p) = problems.iter().find(|p| p.description.is_empty()) {
                        failures.push(format!("{}: problem without description {p:?}", case.name));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn descriptions_say_what_to_do() {
        let mut input = base();
        input.contact.email.clear();
        input.contact.title = long(257);
        let problems = normalize(input).unwrap_err();
        let channel = problems
            .iter()
            .find(|p| p.code == "no_contact_channel")
            .unwrap();
        assert_eq!(
            channel.description,
            "give an email or a phone number so someone can reach this lead"
        );
        let title = problems.iter().find(|p| p.code == "too_long").unwrap();
        assert!(
            title.description.contains("at most 256 characters"),
            "{}",
            title.description
        );

        let mut input = base();
        input.contact.phone = "030 1234567".into();
        let problems = normalize(input).unwrap_err();
        assert_eq!(
            problems[0].description,
            "give the number with a +country prefix or set contact.country"
        );
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        let mut input = base();
        input.contact.email = " Ada@Example.COM".into();
        input.contact.phone = "030 1234567".into();
        input.contact.country = "de".into();
        input.contact.timezone = "europe/berlin".into();
        let once = normalize(input).unwrap();
        let twice = normalize(once.clone()).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn odd_phone_input_is_a_problem_not_a_panic() {
        // inputs of the kind that made older versions of the parser panic
        for raw in [
            "  2 22#:",
            "003-836-4618x3001",
            "+",
            "++49",
            "tel:",
            "+0",
            "#*#*",
            "+49 ext. 1",
        ] {
            let mut input = base();
            input.contact.phone = raw.into();
            input.contact.country = "CH".into();
            let _ = normalize(input);
        }
    }
}
