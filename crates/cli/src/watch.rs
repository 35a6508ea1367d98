//! `fairchance watch`: activation status live from `WatchActivations`: one line per update
//! (new assignments, activations, breaches, escalations) with the SLA countdown, a refreshing
//! status line of the most urgent open leads on a terminal, reconnection from the last cursor,
//! and the cursor printed on exit so the watch can resume.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use serde_json::json;
use tonic::Code;

use crate::client::{CliError, ClientArgs, exit};
use crate::table::{countdown, duration_text, from_proto_duration, from_proto_time};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only leads of this team.
    #[arg(long)]
    team: Option<String>,
    /// Only leads of this owner.
    #[arg(long)]
    owner: Option<String>,
    /// Only updates that leave a lead in this state (repeatable).
    #[arg(long = "state", value_enum)]
    states: Vec<StateArg>,
    /// Resume after this cursor (printed when a watch ends); default: replay from the start.
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    /// Output: lines for people, or one JSON object per line for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: WatchFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WatchFormat {
    /// One readable line per update.
    Table,
    /// One JSON object per line (JSON Lines).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    Queued,
    Assigned,
    Activated,
    Escalated,
    DoNotContact,
}

impl StateArg {
    fn proto(self) -> apb::ActivationState {
        match self {
            StateArg::Queued => apb::ActivationState::Queued,
            StateArg::Assigned => apb::ActivationState::Assigned,
            StateArg::Activated => apb::ActivationState::Activated,
            StateArg::Escalated => apb::ActivationState::Escalated,
            StateArg::DoNotContact => apb::ActivationState::DoNotContact,
        }
    }
}

pub const HELP: &str = "Examples:\n  \
    fairchance watch                              # everything, replayed from the start, then live\n  \
    fairchance watch --team sales --state assigned --state queued\n  \
    fairchance watch --owner lena\n  \
    fairchance watch --after 000000000042         # resume where a previous watch ended\n  \
    fairchance watch --format json | jq .         # one JSON object per update\n\n\
    Each line: time, event, lead, owner, state, and the SLA deadline with a countdown (\"4m 12s\n  \
    left\", \"overdue 2m\"). On a terminal a status line below keeps counting down the most\n  \
    urgent open leads. When the connection drops, the watch reconnects and resumes after the\n  \
    last update it printed. ctrl-c stops it (exit 0) and prints the cursor to resume from.\n\n\
    Exit codes: 0 stopped with ctrl-c; 69 the service cannot be reached at start; see\n  \
    `fairchance --help` for the rest.";

/// `assigned`, `do_not_contact`.
pub fn state_name(state: i32) -> String {
    apb::ActivationState::try_from(state)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("ACTIVATION_STATE_")
        .to_ascii_lowercase()
}

/// What an update says about the lead's SLA, as of `now`.
pub fn sla_text(event_type: &str, a: &apb::Activation, now: jiff::Timestamp) -> String {
    let state = apb::ActivationState::try_from(a.state).unwrap_or_default();
    let deadline = from_proto_time(a.deadline.as_ref());
    let due = |d: jiff::Timestamp| {
        let tz = jiff::tz::TimeZone::system();
        let (local, today) = (
            d.to_zoned_datetime(tz.clone()),
            now.to_zoned_datetime(tz).date(),
        );
        // The day too when it is not today.
        let format = if local.date() == today {
            "%H:%M:%S"
        } else {
            "%a %b %d %H:%M"
        };
        format!("due {}, {}", local.strftime(format), countdown(d, now))
    };
    match state {
        apb::ActivationState::Activated => {
            let after = from_proto_duration(a.time_to_activation.as_ref())
                .map(|d| format!(" after {}", duration_text(d)))
                .unwrap_or_default();
            let sla = if a.within_sla { "within SLA" } else { "late" };
            format!("activated{after}, {sla}")
        }
        apb::ActivationState::DoNotContact => "do not contact".into(),
        _ => {
            let mut text = deadline.map(due).unwrap_or_else(|| "no deadline".into());
            if event_type == "SlaBreached" || a.breaches > 0 {
                text.push_str(&format!(
                    ", {} breach{}",
                    a.breaches,
                    if a.breaches == 1 { "" } else { "es" }
                ));
            }
            if state == apb::ActivationState::Escalated && !a.manager_id.is_empty() {
                text.push_str(&format!(", manager {}", a.manager_id));
            }
            text
        }
    }
}

fn owner_text(a: &apb::Activation) -> String {
    if a.owner_id.is_empty() {
        format!(
            "({} queue)",
            if a.team_id.is_empty() {
                "team"
            } else {
                &a.team_id
            }
        )
    } else {
        a.owner_id.clone()
    }
}

/// One update as a line for people.
pub fn update_line(update: &apb::WatchActivationsResponse, now: jiff::Timestamp) -> String {
    let a = update.activation.clone().unwrap_or_default();
    format!(
        "{}  {:<16}  {}  {:<10}  {:<14}  {}",
        now.to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%H:%M:%S"),
        update.event_type,
        a.lead_id,
        owner_text(&a),
        state_name(a.state),
        sla_text(&update.event_type, &a, now)
    )
}

fn update_json(update: &apb::WatchActivationsResponse, now: jiff::Timestamp) -> serde_json::Value {
    let a = update.activation.clone().unwrap_or_default();
    let deadline = from_proto_time(a.deadline.as_ref());
    json!({
        "cursor": update.cursor,
        "event_type": update.event_type,
        "lead_id": a.lead_id,
        "team_id": a.team_id,
        "owner_id": a.owner_id,
        "state": state_name(a.state),
        "deadline": deadline.map(|d| d.to_string()),
        "remaining_seconds": deadline.map(|d| (d.as_millisecond() - now.as_millisecond()) as f64 / 1000.0),
        "breaches": a.breaches,
        "within_sla": a.within_sla,
    })
}

/// The open leads with deadlines, for the status line.
#[derive(Debug, Default)]
struct Board {
    open: BTreeMap<String, (String, jiff::Timestamp)>,
}

impl Board {
    fn update(&mut self, a: &apb::Activation) {
        let open = matches!(
            apb::ActivationState::try_from(a.state).unwrap_or_default(),
            apb::ActivationState::Queued
                | apb::ActivationState::Assigned
                | apb::ActivationState::Escalated
        );
        match from_proto_time(a.deadline.as_ref()) {
            Some(deadline) if open => {
                self.open
                    .insert(a.lead_id.clone(), (owner_text(a), deadline));
            }
            _ => {
                self.open.remove(&a.lead_id);
            }
        }
    }

    fn status(&self, now: jiff::Timestamp) -> String {
        let mut open: Vec<_> = self.open.iter().collect();
        open.sort_by_key(|(_, (_, deadline))| *deadline);
        let overdue = open.iter().filter(|(_, (_, d))| *d <= now).count();
        let next: Vec<String> = open
            .iter()
            .take(3)
            .map(|(lead, (owner, deadline))| {
                let short: String = lead
                    .chars()
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("…{short} {owner} {}", countdown(*deadline, now))
            })
            .collect();
        format!(
            "open {} · overdue {}{}{}",
            open.len(),
            overdue,
            if next.is_empty() { "" } else { " · " },
            next.join(" | ")
        )
    }
}

pub fn main(args: WatchArgs) -> ExitCode {
    crate::client::run(watch(args))
}

async fn watch(args: WatchArgs) -> Result<ExitCode, CliError> {
    let mut cursor = args.after.clone().unwrap_or_default();
    let live = args.format == WatchFormat::Table && std::io::stderr().is_terminal();
    let mut board = Board::default();
    let mut connected_once = false;
    let mut backoff = Duration::from_millis(250);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let clear = || {
        if live {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    };
    let draw = |board: &Board| {
        if live {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", board.status(jiff::Timestamp::now()));
            let _ = err.flush();
        }
    };
    let result: Result<(), CliError> = 'outer: loop {
        // Connect, or wait and try again once a watch has been running.
        let stream = async {
            let conn = args.client.connect().await?;
            let request = apb::WatchActivationsRequest {
                after_cursor: cursor.clone(),
                team_id: args.team.clone().unwrap_or_default(),
                owner_id: args.owner.clone().unwrap_or_default(),
                states: args.states.iter().map(|s| s.proto() as i32).collect(),
            };
            let mut client = ActivationServiceClient::new(conn);
            tokio::time::timeout(args.client.timeout, client.watch_activations(request))
                .await
                .map_err(|_| {
                    CliError::new(
                        exit::UNAVAILABLE,
                        "the watch did not start in time",
                        "retry, or raise --timeout",
                    )
                })?
                .map(tonic::Response::into_inner)
                .map_err(|status| CliError::from_status("cannot watch activations", &status))
        };
        let stream = tokio::select! {
            stream = stream => stream,
            _ = &mut ctrl_c => break 'outer Ok(()),
        };
        let mut stream = match stream {
            Ok(stream) => {
                connected_once = true;
                backoff = Duration::from_millis(250);
                stream
            }
            Err(error) if connected_once && error.code == exit::UNAVAILABLE => {
                clear();
                eprintln!(
                    "fairchance: reconnecting in {}: {}",
                    duration_text(backoff),
                    error.what
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut ctrl_c => break 'outer Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(error) => break Err(error),
        };
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(update)) => {
                        let now = jiff::Timestamp::now();
                        clear();
                        let line = match args.format {
                            WatchFormat::Table => update_line(&update, now),
                            WatchFormat::Json => update_json(&update, now).to_string(),
                        };
                        let mut out = std::io::stdout().lock();
                        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                            // The reader went away (e.g. `| head`): stop quietly.
                            break 'outer Ok(());
                        }
                        drop(out);
                        if let Some(a) = &update.activation {
                            board.update(a);
                        }
                        cursor = update.cursor;
                        draw(&board);
                    }
                    Ok(None) => {
                        clear();
                        eprintln!("fairchance: the server ended the watch; reconnecting");
                        break;
                    }
                    // A dropped connection surfaces as UNAVAILABLE, or UNKNOWN / CANCELLED from h2.
                    Err(status) if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) => {
                        clear();
                        eprintln!("fairchance: connection lost ({}); reconnecting", status.message());
                        break;
                    }
                    Err(status) => break 'outer Err(CliError::from_status("the watch failed", &status)),
                },
                _ = tick.tick() => draw(&board),
                _ = &mut ctrl_c => break 'outer Ok(()),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut ctrl_c => break 'outer Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    };
    clear();
    if !cursor.is_empty() {
        eprintln!("resume with: fairchance watch --after {cursor}");
    }
    result.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn pts(s: i64) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        }
    }

    #[test]
    fn open_leads_count_down_and_activated_ones_say_how_fast() {
        let now = ts(1_000_000);
        let assigned = apb::Activation {
            lead_id: "L1".into(),
            owner_id: "anna".into(),
            state: apb::ActivationState::Assigned as i32,
            deadline: Some(pts(1_000_252)),
            ..Default::default()
        };
        assert!(sla_text("LeadAssigned", &assigned, now).ends_with("4m 12s left"));
        let breached = apb::Activation {
            state: apb::ActivationState::Assigned as i32,
            deadline: Some(pts(999_880)),
            breaches: 1,
            ..assigned.clone()
        };
        assert!(
            sla_text("SlaBreached", &breached, now).ends_with("overdue 2m, 1 breach"),
            "{}",
            sla_text("SlaBreached", &breached, now)
        );
        let activated = apb::Activation {
            state: apb::ActivationState::Activated as i32,
            within_sla: true,
            time_to_activation: Some(prost_types::Duration {
                seconds: 63,
                nanos: 0,
            }),
            ..assigned.clone()
        };
        assert_eq!(
            sla_text("LeadActivated", &activated, now),
            "activated after 1m 3s, within SLA"
        );
        assert_eq!(
            state_name(apb::ActivationState::DoNotContact as i32),
            "do_not_contact"
        );
    }

    #[test]
    fn the_status_line_shows_the_most_urgent_first() {
        let now = ts(1_000_000);
        let mut board = Board::default();
        for (lead, at) in [("lead-aaaaaaaa", 1_000_600), ("lead-bbbbbbbb", 999_900)] {
            board.update(&apb::Activation {
                lead_id: lead.into(),
                owner_id: "ben".into(),
                state: apb::ActivationState::Assigned as i32,
                deadline: Some(pts(at)),
                ..Default::default()
            });
        }
        assert_eq!(
            board.status(now),
            "open 2 · overdue 1 · …bbbbbbbb ben overdue 1m 40s | …aaaaaaaa ben 10m left"
        );
        board.update(&apb::Activation {
            lead_id: "lead-bbbbbbbb".into(),
            state: apb::ActivationState::Activated as i32,
            ..Default::default()
        });
        assert!(board.status(now).starts_with("open 1 · overdue 0"));
    }
}
