//! `fairchance report`: feedback's reports (by source, the funnel, fair-chance verdicts, one
//! lead's timeline) as readable tables, or CSV and JSON for other tools.

use std::process::ExitCode;

use proto::feedback::v1 as fbpb;
use proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use serde_json::{Value, json};

use crate::client::{CliError, ClientArgs};
use crate::table::{Cell, Format, Table, from_proto_duration, from_proto_time};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReportCommand {
    /// Per source, campaign or channel: data quality, activation, persistence, proof, outcomes.
    #[command(after_help = SOURCES_HELP)]
    Sources(SourcesArgs),
    /// Leads at each funnel stage and the drop-off between stages.
    #[command(after_help = FUNNEL_HELP)]
    Funnel(FunnelArgs),
    /// Every lead's fair-chance verdict, and what lost leads are attributed to.
    #[command(after_help = FAIR_HELP)]
    FairChance(FairChanceArgs),
    /// Everything that happened to one lead, in order, with its preserved context.
    #[command(after_help = TIMELINE_HELP)]
    Timeline(TimelineArgs),
}

const SOURCES_HELP: &str = "Examples:\n  \
    fairchance report sources                               # the last 30 days, by source\n  \
    fairchance report sources --by campaign --from 2026-01-01 --to 2026-04-01\n  \
    fairchance report sources --from 7d --format csv > sources.csv\n  \
    fairchance report sources --format json | jq '.groups[] | {group, activated_within_sla_share}'\n\n\
    Dates are UTC days (2026-01-01), RFC 3339 times (2026-01-01T09:00:00Z) or an age (7d, 12h).\n  \
    CSV and JSON carry machine values: shares from 0 to 1, durations in seconds.";

const FUNNEL_HELP: &str = "Examples:\n  \
    fairchance report funnel\n  \
    fairchance report funnel --source webinar --from 2026-01-01\n  \
    fairchance report funnel --format json";

const FAIR_HELP: &str = "Examples:\n  \
    fairchance report fair-chance\n  \
    fairchance report fair-chance --verdict not-fair --from 7d\n  \
    fairchance report fair-chance --format csv > verdicts.csv";

const TIMELINE_HELP: &str = "Examples:\n  \
    fairchance report timeline 0192f0c4-6a1e-7c3b-9d2e-5f8a7b6c4d3e\n  \
    fairchance report timeline LEAD_ID --format json";

/// The period of a report.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Period {
    /// Start (inclusive): a UTC day, an RFC 3339 time, or an age like 7d [default: 30d].
    #[arg(long, value_parser = parse_time)]
    pub(crate) from: Option<jiff::Timestamp>,
    /// End (exclusive) [default: now].
    #[arg(long, value_parser = parse_time)]
    pub(crate) to: Option<jiff::Timestamp>,
}

impl Period {
    fn from(&self) -> jiff::Timestamp {
        self.from
            .unwrap_or_else(|| jiff::Timestamp::now() - jiff::SignedDuration::from_hours(30 * 24))
    }

    fn proto(
        &self,
    ) -> (
        Option<prost_types::Timestamp>,
        Option<prost_types::Timestamp>,
    ) {
        (Some(proto_time(self.from())), self.to.map(proto_time))
    }

    fn json(&self) -> Value {
        json!({"from": self.from().to_string(), "to": self.to.map(|t| t.to_string())})
    }
}

fn proto_time(at: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// `2026-01-01` (UTC midnight), `2026-01-01T09:00:00Z`, or an age: `7d`, `12h`, `2w`.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    if let Ok(day) = text.parse::<jiff::civil::Date>() {
        return day
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let hours: i64 = match unit {
        "h" => 1,
        "d" => 24,
        "w" => 24 * 7,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if hours > 0 => {
            Ok(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(n * hours))
        }
        _ => Err(format!(
            "{text:?} is not a time; use a day (2026-01-01), an RFC 3339 time (2026-01-01T09:00:00Z) or an age (7d, 12h)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Source,
    Campaign,
    Channel,
}

#[derive(Debug, clap::Args)]
struct SourcesArgs {
    #[command(flatten)]
    period: Period,
    /// What to group leads by.
    #[arg(long, value_enum, default_value = "source")]
    by: By,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct FunnelArgs {
    #[command(flatten)]
    period: Period,
    /// Only leads of this source.
    #[arg(long)]
    source: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerdictArg {
    Fair,
    NotFair,
    Undetermined,
}

#[derive(Debug, clap::Args)]
struct FairChanceArgs {
    #[command(flatten)]
    period: Period,
    /// Only this verdict.
    #[arg(long, value_enum)]
    verdict: Option<VerdictArg>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct TimelineArgs {
    /// The lead id.
    lead: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn main(args: ReportArgs) -> ExitCode {
    crate::client::run(async move {
        let client = &args.client;
        let mut feedback = FeedbackServiceClient::new(client.connect().await?);
        let output = match args.command {
            ReportCommand::Sources(a) => sources(client, &mut feedback, a).await?,
            ReportCommand::Funnel(a) => funnel(client, &mut feedback, a).await?,
            ReportCommand::FairChance(a) => fair_chance(client, &mut feedback, a).await?,
            ReportCommand::Timeline(a) => timeline(client, &mut feedback, a).await?,
        };
        print!("{output}");
        Ok(ExitCode::SUCCESS)
    })
}

type Feedback = FeedbackServiceClient<crate::client::Conn>;

fn counts(reasons: &[fbpb::ReasonCount]) -> Cell {
    Cell::Counts(
        reasons
            .iter()
            .map(|r| (r.reason.clone(), r.count))
            .collect(),
    )
}

const SOURCE_COLUMNS: &[(&str, &str)] = &[
    ("group", "group"),
    ("received", "received"),
    ("rejected", "rejected"),
    ("accepted", "accepted"),
    ("activated_within_sla_share", "in SLA"),
    ("median_time_to_activation_seconds", "median TTA"),
    ("p90_time_to_activation_seconds", "p90 TTA"),
    ("never_activated_share", "ignored"),
    ("touches_before_first_response", "touches to reply"),
    ("converted_after_persistence", "won by persistence"),
    ("fair_chance_leads", "fair"),
    ("fair_chance_conversion", "fair conv"),
    ("not_fair_leads", "not fair"),
    ("not_fair_conversion", "not fair conv"),
    ("handed_off_with_debt_share", "debt at handoff"),
    ("missing_stages_at_handoff", "missing stages"),
    ("lead_quality_losses", "lost: lead quality"),
    ("system_failure_losses", "lost: system"),
    ("undetermined_losses", "lost: unclear"),
    ("rejections", "rejections"),
    ("top_objections", "top objections"),
];

fn group_row(g: &fbpb::GroupReport, name: &str) -> Vec<Cell> {
    vec![
        Cell::text(name),
        Cell::Int(g.received),
        Cell::Int(g.rejected),
        Cell::Int(g.accepted),
        Cell::Share(g.activated_within_sla_share),
        Cell::Duration(from_proto_duration(g.median_time_to_activation.as_ref())),
        Cell::Duration(from_proto_duration(g.p90_time_to_activation.as_ref())),
        Cell::Share(g.never_activated_share),
        Cell::Float(g.touches_before_first_response),
        Cell::Int(g.converted_after_persistence),
        Cell::Int(g.fair_chance_leads),
        Cell::Share(g.fair_chance_conversion),
        Cell::Int(g.not_fair_leads),
        Cell::Share(g.not_fair_conversion),
        Cell::Share(g.handed_off_with_debt_share),
        Cell::Float(g.missing_stages_at_handoff),
        Cell::Int(g.lead_quality_losses),
        Cell::Int(g.system_failure_losses),
        Cell::Int(g.undetermined_losses),
        counts(&g.rejections),
        counts(&g.top_objections),
    ]
}

/// The source report as one table (a row per group, then the total).
pub(crate) fn sources_table(report: &fbpb::GetSourceReportResponse) -> Table {
    let mut table = Table::new(SOURCE_COLUMNS);
    for g in &report.groups {
        let name = if g.group.is_empty() {
            "(none)"
        } else {
            &g.group
        };
        table.push(group_row(g, name));
    }
    if let Some(total) = &report.total {
        table.push(group_row(total, "total"));
    }
    table
}

/// Readable: execution, then fair chance and outcomes, then reasons, each its own table.
pub(crate) fn sources_text(table: &Table, by: &str, period: &Period) -> String {
    let to = period.to.map_or("now".to_owned(), crate::table::local_time);
    let mut out = format!(
        "Leads by {by}, received {} to {to}\n\n",
        crate::table::local_time(period.from())
    );
    if table.rows.is_empty() {
        out.push_str("no leads in this period\n");
        return out;
    }
    out.push_str(
        &table
            .select(&[
                "group",
                "received",
                "rejected",
                "accepted",
                "activated_within_sla_share",
                "median_time_to_activation_seconds",
                "p90_time_to_activation_seconds",
                "never_activated_share",
                "touches_before_first_response",
                "converted_after_persistence",
            ])
            .render(),
    );
    out.push('\n');
    out.push_str(
        &table
            .select(&[
                "group",
                "fair_chance_leads",
                "fair_chance_conversion",
                "not_fair_leads",
                "not_fair_conversion",
                "handed_off_with_debt_share",
                "missing_stages_at_handoff",
                "lead_quality_losses",
                "system_failure_losses",
                "undetermined_losses",
            ])
            .render(),
    );
    let mut reasons = table.select(&["group", "rejections", "top_objections"]);
    reasons
        .rows
        .retain(|r| r[1] != Cell::Counts(vec![]) || r[2] != Cell::Counts(vec![]));
    if !reasons.rows.is_empty() {
        out.push('\n');
        out.push_str(&reasons.render());
    }
    out
}

async fn sources(
    client: &ClientArgs,
    feedback: &mut Feedback,
    args: SourcesArgs,
) -> Result<String, CliError> {
    let (from, to) = args.period.proto();
    let (group_by, by) = match args.by {
        By::Source => (fbpb::GroupBy::Source, "source"),
        By::Campaign => (fbpb::GroupBy::Campaign, "campaign"),
        By::Channel => (fbpb::GroupBy::Channel, "channel"),
    };
    let request = client.request(fbpb::GetSourceReportRequest {
        from,
        to,
        group_by: group_by as i32,
    });
    let report = client
        .call(
            "cannot get the source report",
            feedback.get_source_report(request),
        )
        .await?;
    let table = sources_table(&report);
    Ok(match args.format {
        Format::Table => sources_text(&table, by, &args.period),
        Format::Csv => table.to_csv(),
        Format::Json => {
            let mut rows = table.to_json();
            let total = if report.total.is_some() {
                rows.pop()
            } else {
                None
            };
            let mut value = args.period.json();
            value["group_by"] = json!(by);
            value["groups"] = Value::Array(rows);
            value["total"] = total.unwrap_or(Value::Null);
            format!("{value:#}\n")
        }
    })
}

fn funnel_table(funnel: &fbpb::GetFunnelResponse) -> Table {
    let mut table = Table::new(&[
        ("stage", "stage"),
        ("count", "leads"),
        ("dropped", "dropped"),
        ("drop_share", "drop"),
    ]);
    for (i, s) in funnel.stages.iter().enumerate() {
        let first = i == 0;
        table.push(vec![
            Cell::text(&s.stage),
            Cell::Int(s.count),
            if first {
                Cell::text("")
            } else {
                Cell::Int(s.dropped)
            },
            if first {
                Cell::text("")
            } else {
                Cell::Share(s.drop_share)
            },
        ]);
    }
    table
}

async fn funnel(
    client: &ClientArgs,
    feedback: &mut Feedback,
    args: FunnelArgs,
) -> Result<String, CliError> {
    let (from, to) = args.period.proto();
    let request = client.request(fbpb::GetFunnelRequest {
        from,
        to,
        source: args.source.clone().unwrap_or_default(),
    });
    let funnel = client
        .call("cannot get the funnel", feedback.get_funnel(request))
        .await?;
    let table = funnel_table(&funnel);
    Ok(match args.format {
        Format::Table => format!(
            "Funnel of {} leads since {}\n\n{}",
            args.source.as_deref().unwrap_or("all"),
            crate::table::local_time(args.period.from()),
            table.render()
        ),
        Format::Csv => table.to_csv(),
        Format::Json => {
            let mut value = args.period.json();
            value["source"] = json!(args.source);
            value["stages"] = Value::Array(table.to_json());
            format!("{value:#}\n")
        }
    })
}

/// `NOT_FAIR` → `not fair`, from a generated enum name and its prefix.
fn enum_text(name: &str, prefix: &str) -> String {
    let text = name.trim_start_matches(prefix).to_ascii_lowercase();
    if text == "unspecified" {
        String::new()
    } else {
        text.replace('_', " ")
    }
}

fn verdict_table(verdicts: &[fbpb::LeadVerdict]) -> Table {
    let mut table = Table::new(&[
        ("lead_id", "lead"),
        ("received_at", "received"),
        ("source", "source"),
        ("campaign", "campaign"),
        ("verdict", "verdict"),
        ("outcome", "outcome"),
        ("attribution", "lost to"),
        ("reasons", "why"),
    ]);
    for v in verdicts {
        let mut why = v.reasons.clone();
        if !v.attribution_reason.is_empty() {
            why.push(v.attribution_reason.clone());
        }
        let outcome = enum_text(v.outcome().as_str_name(), "OUTCOME_STAGE_");
        let reason = enum_text(v.outcome_reason().as_str_name(), "OUTCOME_REASON_");
        table.push(vec![
            Cell::text(&v.lead_id),
            Cell::Time(from_proto_time(v.received_at.as_ref())),
            Cell::text(&v.source),
            Cell::text(&v.campaign),
            Cell::text(enum_text(v.verdict().as_str_name(), "VERDICT_")),
            Cell::text(if reason.is_empty() {
                outcome
            } else {
                format!("{outcome} ({reason})")
            }),
            Cell::text(enum_text(v.attribution().as_str_name(), "ATTRIBUTION_")),
            Cell::List(why),
        ]);
    }
    table
}

async fn fair_chance(
    client: &ClientArgs,
    feedback: &mut Feedback,
    args: FairChanceArgs,
) -> Result<String, CliError> {
    let (from, to) = args.period.proto();
    let verdict = match args.verdict {
        None => fbpb::Verdict::Unspecified,
        Some(VerdictArg::Fair) => fbpb::Verdict::Fair,
        Some(VerdictArg::NotFair) => fbpb::Verdict::NotFair,
        Some(VerdictArg::Undetermined) => fbpb::Verdict::Undetermined,
    };
    let mut verdicts = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = client.request(fbpb::ListVerdictsRequest {
            from,
            to,
            verdict: verdict as i32,
            page_size: 500,
            page_token: page_token.clone(),
        });
        let page = client
            .call("cannot list verdicts", feedback.list_verdicts(request))
            .await?;
        verdicts.extend(page.verdicts);
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            break;
        }
        page_token = page.next_page_token;
    }
    let table = verdict_table(&verdicts);
    Ok(match args.format {
        Format::Table => {
            let count = |v: fbpb::Verdict| verdicts.iter().filter(|x| x.verdict() == v).count();
            let mut out = format!(
                "Fair-chance verdicts of leads received since {}: {} fair, {} not fair, {} undetermined\n\n",
                crate::table::local_time(args.period.from()),
                count(fbpb::Verdict::Fair),
                count(fbpb::Verdict::NotFair),
                count(fbpb::Verdict::Undetermined)
            );
            if verdicts.is_empty() {
                out.push_str("no leads in this period\n");
            } else {
                out.push_str(&table.render());
            }
            out
        }
        Format::Csv => table.to_csv(),
        Format::Json => {
            let mut value = args.period.json();
            value["verdicts"] = Value::Array(table.to_json());
            format!("{value:#}\n")
        }
    })
}

fn timeline_table(timeline: &fbpb::GetLeadTimelineResponse) -> Table {
    let mut table = Table::new(&[
        ("at", "when"),
        ("service", "service"),
        ("event_type", "event"),
        ("summary", "what happened"),
    ]);
    for e in &timeline.entries {
        table.push(vec![
            Cell::Time(from_proto_time(e.at.as_ref())),
            Cell::text(&e.service),
            Cell::text(&e.event_type),
            Cell::text(&e.summary),
        ]);
    }
    table
}

async fn timeline(
    client: &ClientArgs,
    feedback: &mut Feedback,
    args: TimelineArgs,
) -> Result<String, CliError> {
    let request = client.request(fbpb::GetLeadTimelineRequest {
        lead_id: args.lead.clone(),
    });
    let timeline = client
        .call(
            &format!("cannot get the timeline of lead {}", args.lead),
            feedback.get_lead_timeline(request),
        )
        .await?;
    let table = timeline_table(&timeline);
    let verdict = timeline
        .verdict
        .as_ref()
        .map(|v| verdict_table(std::slice::from_ref(v)));
    Ok(match args.format {
        Format::Table => {
            let mut out = format!("Lead {}\n", timeline.lead_id);
            let width = timeline
                .context
                .keys()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(0);
            for (key, value) in &timeline.context {
                out.push_str(&format!("  {key:<width$}  {}\n", value.replace('\n', " ")));
            }
            if let Some(v) = &verdict {
                let row = &v.rows[0];
                out.push_str(&format!("  verdict: {}", row[4].display()));
                let why = row[7].display();
                if !why.is_empty() {
                    out.push_str(&format!(" ({why})"));
                }
                out.push('\n');
            }
            out.push('\n');
            out.push_str(&table.render());
            out
        }
        Format::Csv => table.to_csv(),
        Format::Json => {
            let value = json!({
                "lead_id": timeline.lead_id,
                "context": timeline.context,
                "verdict": verdict.and_then(|v| v.to_json().into_iter().next()),
                "entries": table.to_json(),
            });
            format!("{value:#}\n")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_days_instants_or_ages() {
        assert_eq!(
            parse_time("2026-01-01").unwrap().to_string(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            parse_time("2026-01-01T09:30:00Z").unwrap().to_string(),
            "2026-01-01T09:30:00Z"
        );
        let week = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7);
        let parsed = parse_time("7d").unwrap();
        assert!((parsed.as_second() - week.as_second()).abs() < 5);
        assert!(parse_time("last tuesday").unwrap_err().contains("7d"));
    }

    #[test]
    fn the_source_report_flattens_for_csv_and_json() {
        let group = fbpb::GroupReport {
            group: "webinar".into(),
            received: 6,
            accepted: 5,
            rejected: 1,
            rejections: vec![fbpb::ReasonCount {
                reason: "missing_field".into(),
                count: 1,
            }],
            activated_within_sla_share: 0.8,
            median_time_to_activation: Some(prost_types::Duration {
                seconds: 252,
                nanos: 0,
            }),
            ..Default::default()
        };
        let report = fbpb::GetSourceReportResponse {
            groups: vec![group.clone()],
            total: Some(fbpb::GroupReport {
                group: String::new(),
                ..group
            }),
        };
        let table = sources_table(&report);
        assert_eq!(table.rows.len(), 2);
        let json = table.to_json();
        assert_eq!(json[0]["group"], "webinar");
        assert_eq!(json[0]["median_time_to_activation_seconds"], 252.0);
        assert_eq!(json[0]["rejections"]["missing_field"], 1);
        assert_eq!(json[1]["group"], "total");
        let csv = table.to_csv();
        assert!(csv.starts_with("group,received,rejected,accepted,activated_within_sla_share,"));
        assert!(csv.contains("webinar,6,1,5,0.8,252,"), "{csv}");
        let text = sources_text(
            &table,
            "source",
            &Period {
                from: Some(jiff::Timestamp::UNIX_EPOCH),
                to: None,
            },
        );
        assert!(text.contains("80%"), "{text}");
        assert!(text.contains("4m 12s"), "{text}");
        assert!(text.contains("missing_field 1"), "{text}");
    }

    #[test]
    fn the_funnel_leaves_drops_of_the_first_stage_blank() {
        let funnel = fbpb::GetFunnelResponse {
            stages: vec![
                fbpb::FunnelStage {
                    stage: "received".into(),
                    count: 6,
                    ..Default::default()
                },
                fbpb::FunnelStage {
                    stage: "accepted".into(),
                    count: 5,
                    dropped: 1,
                    drop_share: 1.0 / 6.0,
                },
            ],
        };
        assert_eq!(
            funnel_table(&funnel).render(),
            "stage     leads  dropped   drop\n\
             received      6\n\
             accepted      5        1  16.7%\n"
        );
    }

    #[test]
    fn verdict_names_read_as_words() {
        assert_eq!(enum_text("VERDICT_NOT_FAIR", "VERDICT_"), "not fair");
        assert_eq!(enum_text("VERDICT_UNSPECIFIED", "VERDICT_"), "");
    }
}
