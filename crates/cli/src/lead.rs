//! `fairchance lead submit` (one lead) and `fairchance lead import` (a CSV file: badge scans, a
//! webinar list), with a summary, and the rejected rows written out with their reasons, ready
//! to fix and import again.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::client::{CliError, ClientArgs, Conn, exit};
use crate::columns::{self, Defaults, Field, MapArg, Mapping};
use crate::csv;

#[derive(Debug, clap::Args)]
pub struct LeadArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: LeadCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LeadCommand {
    /// Submit one lead and print what intake did with it.
    #[command(after_help = SUBMIT_HELP)]
    Submit(SubmitArgs),
    /// Import leads from a CSV file: a trade show's badge scans, a webinar list, a CRM export.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
}

const SUBMIT_HELP: &str = "Examples:\n  \
    fairchance lead submit --source website-demo-form --email ada@example.com --name 'Ada Lovelace' \\\n      \
    --company 'Analytical Engines' --country GB --intent demo_request --message 'Can we see routing?'\n  \
    fairchance lead submit --source pricing-page-chat --phone '+44 20 7946 0958' --format json\n  \
    FAIRCHANCE_ADDR=http://intake.internal:50051 fairchance lead submit --source webinar --email lin@example.com\n\n\
    Intents: demo_request, contact_sales, pricing_page, trial_signup, content_download, webinar,\n  \
    event_badge_scan, other.\n\n\
    Exit codes: 0 accepted or merged; 65 rejected into the review queue or invalid (the problems\n  \
    are printed); 69 service unavailable; see `fairchance --help` for the rest.";

const IMPORT_HELP: &str = "Examples:\n  \
    fairchance lead import expo-scans.csv --source event-badge-scan --campaign expo-2026 --intent event_badge_scan\n  \
    fairchance lead import webinar.csv --source webinar --map email='Work E-Mail' --map company=Organisation\n  \
    fairchance lead import crm.csv --source crm-export --map attributes.industry=Sector --map ignore='Internal ID'\n  \
    fairchance lead import leads.csv --source webinar --dry-run        # check the mapping, send nothing\n  \
    fairchance lead import leads.rejected.csv --source webinar        # after fixing the rejected rows\n\n\
    Columns are recognised by header name, in any case, with common aliases: email (E-Mail, Email\n  \
    Address), name (Full Name) or first_name + last_name, phone (Mobile, Telephone), company\n  \
    (Organization, Account), title (Job Title, Position), country, timezone, source, channel,\n  \
    campaign (Event), landing_page (URL), message (Comments, Notes), utm_*, intent, intent_strength,\n  \
    timeframe, consent. Every other column travels with the lead as an attribute; a `reasons`\n  \
    column (from a rejected-rows file) is ignored. Override with --map FIELD=COLUMN.\n\n\
    Rows are sent in batches over one SubmitLeads stream each, with idempotency keys made from the\n  \
    row, so running the same import again after an interruption does not import a row twice.\n  \
    Rows rejected by the playbook's data-quality rules are also in intake's review queue.\n\n\
    Exit codes: 0 imported (some rows may be rejected: see the summary and the rejected file);\n  \
    65 rows were rejected and --strict was given, or the file is not CSV; 66 the file cannot be\n  \
    read; 64 bad --map; 69 service unavailable; 73 the rejected file cannot be written.";

/// Parses a command-line intent name.
fn parse_intent(text: &str) -> Result<pb::IntentKind, String> {
    columns::enum_value(text, "INTENT_KIND_")
        .ok_or_else(|| format!("unknown intent {text:?}; use one of {}", columns::INTENTS))
}

fn parse_strength(text: &str) -> Result<pb::IntentStrength, String> {
    columns::enum_value(text, "INTENT_STRENGTH_")
        .ok_or_else(|| format!("unknown strength {text:?}; use low, medium or high"))
}

fn parse_timeframe(text: &str) -> Result<pb::PurchaseTimeframe, String> {
    columns::enum_value(text, "PURCHASE_TIMEFRAME_").ok_or_else(|| {
        format!("unknown timeframe {text:?}; use immediate, this_quarter, this_year or later")
    })
}

fn parse_consent(text: &str) -> Result<pb::ConsentBasis, String> {
    columns::enum_value(text, "CONSENT_BASIS_").ok_or_else(|| {
        format!("unknown consent basis {text:?}; use opt_in, legitimate_interest or none")
    })
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| {
            format!("--attr {text:?} needs the form KEY=VALUE, e.g. --attr employees=450")
        })
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// The playbook source, e.g. website-demo-form, webinar, event-badge-scan.
    #[arg(long)]
    source: String,
    /// Email address.
    #[arg(long)]
    email: Option<String>,
    /// Full name.
    #[arg(long)]
    name: Option<String>,
    /// Phone number (with +country code, or read in --country).
    #[arg(long)]
    phone: Option<String>,
    /// Company name.
    #[arg(long)]
    company: Option<String>,
    /// Job title.
    #[arg(long)]
    title: Option<String>,
    /// ISO country code, e.g. DE.
    #[arg(long)]
    country: Option<String>,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long)]
    timezone: Option<String>,
    /// Marketing channel, e.g. paid_search, event, referral.
    #[arg(long)]
    channel: Option<String>,
    /// Campaign name or id.
    #[arg(long)]
    campaign: Option<String>,
    /// Page the lead converted on.
    #[arg(long)]
    landing_page: Option<String>,
    /// What the lead wrote, verbatim.
    #[arg(long)]
    message: Option<String>,
    /// What the lead did, e.g. demo_request.
    #[arg(long, value_parser = parse_intent)]
    intent: Option<pb::IntentKind>,
    /// How strong the signal is: low, medium, high.
    #[arg(long, value_parser = parse_strength)]
    strength: Option<pb::IntentStrength>,
    /// When they intend to buy: immediate, this_quarter, this_year, later.
    #[arg(long, value_parser = parse_timeframe)]
    timeframe: Option<pb::PurchaseTimeframe>,
    /// Legal basis for contact: opt_in, legitimate_interest, none.
    #[arg(long, value_parser = parse_consent)]
    consent: Option<pb::ConsentBasis>,
    /// A free-form attribute, KEY=VALUE (repeatable), e.g. --attr employees=450.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Makes a retry safe: the same key returns the original answer.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutcomeFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutcomeFormat {
    /// Sentences for people.
    Table,
    /// One JSON object.
    Json,
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The CSV file; the first row names the columns.
    file: PathBuf,
    /// Source of every row without a source column of its own, e.g. event-badge-scan.
    #[arg(long)]
    source: Option<String>,
    /// Channel of every row without its own, e.g. event.
    #[arg(long)]
    channel: Option<String>,
    /// Campaign of every row without its own, e.g. expo-2026.
    #[arg(long)]
    campaign: Option<String>,
    /// Intent of every row without its own, e.g. event_badge_scan.
    #[arg(long, value_parser = parse_intent)]
    intent: Option<pb::IntentKind>,
    /// Consent basis of every row without its own.
    #[arg(long, value_parser = parse_consent)]
    consent: Option<pb::ConsentBasis>,
    /// FIELD=COLUMN: feed a lead field from a column (repeatable). FIELD is a lead field
    /// (email, company, ...), attributes.NAME, or `ignore`.
    #[arg(long = "map", value_name = "FIELD=COLUMN", value_parser = columns::parse_map)]
    maps: Vec<MapArg>,
    /// Where to write the rejected rows with their reasons [default: FILE.rejected.csv].
    #[arg(long, value_name = "FILE")]
    rejected_out: Option<PathBuf>,
    /// Exit 65 when any row is rejected.
    #[arg(long)]
    strict: bool,
    /// Field delimiter, e.g. ';' for files from Excel in many locales.
    #[arg(long, default_value = ",")]
    delimiter: char,
    /// Rows per SubmitLeads stream.
    #[arg(long, default_value = "200", value_parser = clap::value_parser!(u32).range(1..=5000))]
    batch_size: u32,
    /// Read and map the file, report rows that cannot be leads, send nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn main(args: LeadArgs) -> ExitCode {
    crate::client::run(async move {
        match args.command {
            LeadCommand::Submit(submit_args) => submit(&args.client, submit_args).await,
            LeadCommand::Import(import_args) => import(&args.client, import_args).await,
        }
    })
}

fn outcome_name(outcome: pb::SubmitOutcome) -> &'static str {
    match outcome {
        pb::SubmitOutcome::Accepted => "accepted",
        pb::SubmitOutcome::Merged => "merged",
        pb::SubmitOutcome::Rejected => "rejected",
        pb::SubmitOutcome::Invalid => "invalid",
        pb::SubmitOutcome::Unspecified => "unknown",
    }
}

fn tier_name(tier: i32) -> &'static str {
    match pb::IcpTier::try_from(tier).unwrap_or_default() {
        pb::IcpTier::A => "A",
        pb::IcpTier::B => "B",
        pb::IcpTier::C => "C",
        pb::IcpTier::Outside => "outside",
        pb::IcpTier::Unspecified => "-",
    }
}

async fn submit(client: &ClientArgs, args: SubmitArgs) -> Result<ExitCode, CliError> {
    let text = |v: Option<String>| v.unwrap_or_default();
    let lead = pb::LeadInput {
        contact: Some(pb::Contact {
            name: text(args.name),
            email: text(args.email),
            phone: text(args.phone),
            company: text(args.company),
            title: text(args.title),
            country: text(args.country),
            timezone: text(args.timezone),
        }),
        source: Some(pb::SourceContext {
            source: args.source,
            channel: text(args.channel),
            campaign: text(args.campaign),
            landing_page: text(args.landing_page),
            message: text(args.message),
            ..Default::default()
        }),
        intent: (args.intent.is_some() || args.strength.is_some()).then(|| pb::IntentSignal {
            kind: args.intent.unwrap_or_default() as i32,
            strength: args.strength.unwrap_or_default() as i32,
            detail: String::new(),
        }),
        purchase_timeframe: args.timeframe.unwrap_or_default() as i32,
        consent: args.consent.map(|basis| pb::Consent {
            basis: basis as i32,
            ..Default::default()
        }),
        attributes: args.attributes.into_iter().collect(),
    };
    let mut intake = IntakeServiceClient::new(client.connect().await?);
    let request = client.request(pb::SubmitLeadRequest {
        lead: Some(lead),
        idempotency_key: text(args.idempotency_key),
    });
    let answer = client
        .call("cannot submit the lead", intake.submit_lead(request))
        .await?;
    let outcome = answer.outcome();
    let problems = answer
        .rejection
        .as_ref()
        .map(|r| r.problems.clone())
        .unwrap_or_default();
    match args.format {
        OutcomeFormat::Json => {
            let lead = answer.lead.as_ref();
            let value = json!({
                "outcome": outcome_name(outcome),
                "lead_id": lead.map(|l| l.lead_id.clone()),
                "completeness_score": lead.map(|l| l.completeness_score),
                "icp_tier": lead.map(|l| tier_name(l.icp_tier)),
                "do_not_contact": lead.map(|l| l.do_not_contact),
                "rejection_id": answer.rejection.as_ref().map(|r| r.rejection_id.clone()),
                "problems": problems.iter().map(|p| json!({
                    "field": p.field, "code": p.code, "description": p.description
                })).collect::<Vec<_>>(),
            });
            println!("{value:#}");
        }
        OutcomeFormat::Table => match (&answer.lead, &answer.rejection) {
            (Some(lead), _) => {
                let what = if outcome == pb::SubmitOutcome::Merged {
                    "merged into the contact's existing lead as a new touch"
                } else {
                    "accepted"
                };
                println!("{what}: lead {}", lead.lead_id);
                println!(
                    "  completeness {}/100, ICP tier {}{}",
                    lead.completeness_score,
                    tier_name(lead.icp_tier),
                    if lead.do_not_contact {
                        ", do not contact (opted out or no consent)"
                    } else {
                        ""
                    }
                );
            }
            (None, Some(rejection)) => {
                println!(
                    "rejected into the review queue: rejection {}",
                    rejection.rejection_id
                );
                for p in &problems {
                    println!("  {}", problem_text(&p.field, &p.code, &p.description));
                }
                println!(
                    "fix the lead and submit it again, or have a reviewer reconsider the rejection"
                );
            }
            (None, None) => println!("{}", outcome_name(outcome)),
        },
    }
    Ok(match outcome {
        pb::SubmitOutcome::Accepted | pb::SubmitOutcome::Merged => ExitCode::SUCCESS,
        _ => ExitCode::from(exit::DATA),
    })
}

fn problem_text(field: &str, code: &str, description: &str) -> String {
    if field.is_empty() {
        format!("{code}: {description}")
    } else {
        format!("{code} ({field}): {description}")
    }
}

/// One data row of the file and what became of it.
#[derive(Debug)]
struct Row {
    line: usize,
    fields: Vec<String>,
    status: RowStatus,
}

#[derive(Debug)]
enum RowStatus {
    /// Ready to send.
    Pending(Box<pb::SubmitLeadsRequest>),
    /// Sent; the server's answer.
    Done(pb::SubmitOutcome, Vec<pb::Problem>),
    /// Could not be made into a lead: never sent.
    Unreadable(Vec<columns::LocalProblem>),
}

impl Row {
    /// (code, text) of each reason it was rejected; empty when it was not.
    fn reasons(&self) -> Vec<(String, String)> {
        match &self.status {
            RowStatus::Done(pb::SubmitOutcome::Rejected | pb::SubmitOutcome::Invalid, problems) => {
                problems
                    .iter()
                    .map(|p| {
                        (
                            p.code.clone(),
                            problem_text(&p.field, &p.code, &p.description),
                        )
                    })
                    .collect()
            }
            RowStatus::Unreadable(problems) => problems
                .iter()
                .map(|(field, code, description)| {
                    ((*code).to_owned(), problem_text(field, code, description))
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Counts of an import.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    merged: usize,
    review: usize,
    invalid: usize,
    unreadable: usize,
}

impl Tally {
    fn rejected(&self) -> usize {
        self.review + self.invalid + self.unreadable
    }

    fn add(&mut self, status: &RowStatus) {
        match status {
            RowStatus::Done(pb::SubmitOutcome::Accepted, _) => self.accepted += 1,
            RowStatus::Done(pb::SubmitOutcome::Merged, _) => self.merged += 1,
            RowStatus::Done(pb::SubmitOutcome::Rejected, _) => self.review += 1,
            RowStatus::Done(..) => self.invalid += 1,
            RowStatus::Unreadable(_) => self.unreadable += 1,
            RowStatus::Pending(_) => {}
        }
    }
}

/// An idempotency key from the row's content and position: the same row of the same file is
/// recognised when an interrupted import runs again; a fixed row is a new submission.
fn row_key(source: &str, line: usize, fields: &[String]) -> String {
    let mut hash = Sha256::new();
    hash.update(source.as_bytes());
    hash.update(line.to_le_bytes());
    for field in fields {
        hash.update([0x1f]);
        hash.update(field.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("csv-import-{hex}")
}

fn default_rejected_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    file.with_file_name(format!("{stem}.rejected.csv"))
}

/// Reads, maps and parses the file into rows.
fn load(args: &ImportArgs) -> Result<(Vec<String>, Mapping, Vec<Row>), CliError> {
    let file = args.file.display();
    let bytes = std::fs::read(&args.file).map_err(|error| {
        CliError::new(
            exit::NO_INPUT,
            format!("cannot read {file} ({error})"),
            "check the path and that you may read the file",
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::new(
            exit::DATA,
            format!("{file} is not UTF-8 text"),
            "save it as \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8)",
        )
    })?;
    let mut records = csv::read(&text, args.delimiter).into_iter();
    let headers = match records.next() {
        Some(Ok(header)) => header.fields,
        Some(Err(error)) => {
            return Err(CliError::new(
                exit::DATA,
                format!("{file}: line {}: the header row cannot be read", error.line),
                error.message,
            ));
        }
        None => {
            return Err(CliError::new(
                exit::DATA,
                format!("{file} is empty"),
                "the first row must name the columns, e.g. email,name,company",
            ));
        }
    };
    let mapping = Mapping::new(&headers, &args.maps)
        .map_err(|e| CliError::usage(e, "fix the --map arguments"))?;
    if !mapping.has(Field::Email) && !mapping.has(Field::Phone) {
        let delimiter_hint = if headers.len() == 1 && headers[0].contains(';') {
            " (the header looks `;`-separated: add --delimiter ';')"
        } else {
            ""
        };
        return Err(CliError::usage(
            format!(
                "no column of {file} is an email or phone number; its columns are {}{delimiter_hint}",
                headers.join(", ")
            ),
            "name the column with --map email=COLUMN or --map phone=COLUMN",
        ));
    }
    if args.source.is_none() && !mapping.has(Field::Source) {
        return Err(CliError::usage(
            format!("{file} has no source column"),
            "pass --source with the playbook source of these leads, e.g. --source event-badge-scan",
        ));
    }
    let defaults = Defaults {
        source: args.source.clone().unwrap_or_default(),
        channel: args.channel.clone().unwrap_or_default(),
        campaign: args.campaign.clone().unwrap_or_default(),
        intent: args.intent.unwrap_or_default(),
        consent: args.consent.unwrap_or_default(),
    };
    let rows = records
        .map(|record| match record {
            Ok(record) => {
                let status = match columns::lead_of(&mapping, &headers, &record.fields, &defaults) {
                    Ok(lead) => RowStatus::Pending(Box::new(pb::SubmitLeadsRequest {
                        idempotency_key: row_key(&defaults.source, record.line, &record.fields),
                        lead: Some(lead),
                    })),
                    Err(problems) => RowStatus::Unreadable(problems),
                };
                Row {
                    line: record.line,
                    fields: record.fields,
                    status,
                }
            }
            Err(error) => Row {
                line: error.line,
                fields: error.fields,
                status: RowStatus::Unreadable(vec![(
                    String::new(),
                    "malformed_row",
                    error.message,
                )]),
            },
        })
        .collect();
    Ok((headers, mapping, rows))
}

/// A progress line on stderr, only when stderr is a terminal.
struct Progress {
    on: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, file: &str, done: usize, total: usize, tally: &Tally, force: bool) {
        if !self.on {
            return;
        }
        if !force
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        const WIDTH: usize = 24;
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kimporting {file} [{bar}] {done}/{total}  accepted {}  merged {}  rejected {}",
            tally.accepted,
            tally.merged,
            tally.rejected()
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

async fn import(client: &ClientArgs, args: ImportArgs) -> Result<ExitCode, CliError> {
    let (headers, mapping, mut rows) = load(&args)?;
    let file = args.file.display().to_string();
    eprintln!("columns: {}", mapping.describe(&headers));
    let total = rows.len();
    let mut tally = Tally::default();
    for row in &rows {
        tally.add(&row.status);
    }

    if !args.dry_run
        && rows
            .iter()
            .any(|r| matches!(r.status, RowStatus::Pending(_)))
    {
        let mut intake = IntakeServiceClient::new(client.connect().await?);
        let mut progress = Progress::new();
        let pending: Vec<usize> = (0..rows.len())
            .filter(|&i| matches!(rows[i].status, RowStatus::Pending(_)))
            .collect();
        let mut done = tally.unreadable;
        for batch in pending.chunks(args.batch_size as usize) {
            progress.show(&file, done, total, &tally, false);
            let items: Vec<pb::SubmitLeadsRequest> = batch
                .iter()
                .filter_map(|&i| match &rows[i].status {
                    RowStatus::Pending(item) => Some((**item).clone()),
                    _ => None,
                })
                .collect();
            let answer = match send_batch(client, &mut intake, items).await {
                Ok(answer) => answer,
                Err(mut error) => {
                    progress.clear();
                    let sent = tally.accepted + tally.merged + tally.review + tally.invalid;
                    error.what = format!(
                        "{} (import stopped at line {} after {sent} rows were stored)",
                        error.what, rows[batch[0]].line
                    );
                    error.todo = format!(
                        "{}; then run the same command again: rows already stored are recognised and not imported twice",
                        error.todo
                    );
                    return Err(error);
                }
            };
            for result in answer.results {
                let Some(&i) = batch.get(result.index as usize) else {
                    continue;
                };
                let outcome = result.outcome();
                rows[i].status = RowStatus::Done(outcome, result.problems);
                tally.add(&rows[i].status);
            }
            done += batch.len();
        }
        progress.show(&file, done, total, &tally, true);
        progress.clear();
    }

    // Rows that cannot be leads are named by their line, on stderr, as they are found.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let rejected: Vec<&Row> = rows.iter().filter(|r| !r.reasons().is_empty()).collect();
    for row in &rejected {
        let mut codes: Vec<String> = row.reasons().into_iter().map(|(code, _)| code).collect();
        codes.sort();
        codes.dedup();
        for code in codes {
            *reasons.entry(code).or_default() += 1;
        }
    }
    const SHOWN: usize = 10;
    for row in rejected.iter().take(SHOWN) {
        let texts: Vec<String> = row.reasons().into_iter().map(|(_, t)| t).collect();
        eprintln!("line {}: {}", row.line, texts.join("; "));
    }
    if rejected.len() > SHOWN {
        eprintln!("… and {} more rejected rows", rejected.len() - SHOWN);
    }

    let out = args
        .rejected_out
        .clone()
        .unwrap_or_else(|| default_rejected_path(&args.file));
    if !rejected.is_empty() {
        write_rejected(&out, &headers, &rejected)?;
    }

    // The summary.
    let verb = if args.dry_run { "checked" } else { "imported" };
    let plural = if total == 1 { "" } else { "s" };
    println!("{verb} {file}: {total} row{plural}");
    if args.dry_run {
        println!("  ready to send  {}", total - tally.unreadable);
    } else {
        println!("  accepted  {}", tally.accepted);
        println!("  merged    {}", tally.merged);
    }
    println!("  rejected  {}", tally.rejected());
    if tally.rejected() > 0 {
        let mut parts = Vec::new();
        if tally.review > 0 {
            parts.push(format!("{} in the review queue", tally.review));
        }
        if tally.invalid > 0 {
            parts.push(format!("{} invalid", tally.invalid));
        }
        if tally.unreadable > 0 {
            parts.push(format!("{} not readable as leads", tally.unreadable));
        }
        println!("    ({})", parts.join(", "));
        println!("rejected by reason:");
        let width = reasons.keys().map(String::len).max().unwrap_or(0);
        let mut by_count: Vec<_> = reasons.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (code, count) in by_count {
            println!("  {code:<width$}  {count}");
        }
        let source = args
            .source
            .as_ref()
            .map(|s| format!(" --source {s}"))
            .unwrap_or_default();
        println!(
            "rejected rows and their reasons: {}\n  fix them there and import that file again: fairchance lead import {}{source}",
            out.display(),
            out.display()
        );
    }
    Ok(if args.strict && tally.rejected() > 0 {
        ExitCode::from(exit::DATA)
    } else {
        ExitCode::SUCCESS
    })
}

/// One SubmitLeads stream; retried while the service is unavailable (the rows' idempotency
/// keys make that safe).
async fn send_batch(
    client: &ClientArgs,
    intake: &mut IntakeServiceClient<Conn>,
    items: Vec<pb::SubmitLeadsRequest>,
) -> Result<pb::SubmitLeadsResponse, CliError> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let request = client.request(futures::stream::iter(items.clone()));
        match client
            .call("cannot import", intake.submit_leads(request))
            .await
        {
            Err(error) if error.code == exit::UNAVAILABLE && attempt < 4 => {
                tracing::debug!(attempt, "import batch unavailable, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// The rejected rows as the original columns plus `reasons`.
fn write_rejected(path: &Path, headers: &[String], rows: &[&Row]) -> Result<(), CliError> {
    // A `reasons` column from an earlier round is replaced, not repeated.
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| columns::normalize(&headers[i]) != columns::REASONS_COLUMN)
        .collect();
    let mut text = csv::format_record(
        keep.iter()
            .map(|&i| headers[i].as_str())
            .chain([columns::REASONS_COLUMN]),
    );
    for row in rows {
        let mut fields: Vec<&str> = keep
            .iter()
            .map(|&i| row.fields.get(i).map_or("", String::as_str))
            .collect();
        let mut reasons: Vec<String> = row.reasons().into_iter().map(|(_, t)| t).collect();
        if row.fields.len() > headers.len() {
            reasons.push(format!(
                "extra fields dropped: {}",
                row.fields[headers.len()..].join(" | ")
            ));
        }
        let reasons = reasons.join("; ");
        fields.push(&reasons);
        text.push_str(&csv::format_record(fields));
    }
    std::fs::write(path, text).map_err(|error| {
        CliError::new(
            exit::CANT_CREATE,
            format!(
                "cannot write the rejected rows to {} ({error})",
                path.display()
            ),
            "pass --rejected-out with a writable path",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_depend_on_content_and_position() {
        let fields = vec!["ada@example.com".to_owned(), "Ada".to_owned()];
        let key = row_key("webinar", 2, &fields);
        assert_eq!(key, row_key("webinar", 2, &fields));
        assert_ne!(key, row_key("webinar", 3, &fields));
        assert_ne!(key, row_key("badge-scan", 2, &fields));
        assert!(key.len() <= 128);
    }

    #[test]
    fn the_rejected_file_sits_next_to_the_input() {
        assert_eq!(
            default_rejected_path(Path::new("/tmp/expo/scans.csv")),
            PathBuf::from("/tmp/expo/scans.rejected.csv")
        );
    }
}
