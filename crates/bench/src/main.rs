//! `just bench`: fairchance's throughput and latency next to raw baselines measured on the same
//! machine in the same run, so figures compare as ratios rather than as absolute numbers that
//! depend on the machine. Prints a table and writes it as JSON.
//!
//! Needs the local PostgreSQL (`--postgres`); each run works in a fresh database.

mod activation_bench;
mod common;
mod fanout_bench;
mod feedback_bench;
mod followup_bench;
mod intake_bench;
mod overload_bench;
mod timers_bench;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(about = "fairchance benchmarks against same-run raw baselines")]
pub struct Args {
    /// PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        env = "FAIRCHANCE_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres: String,
    /// How long each unary measurement runs (each of 3 rounds).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent unary calls (and raw transactions).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Leads sent in each streaming measurement.
    #[arg(long, default_value_t = 100_000)]
    pub stream_leads: usize,
    /// Database connections the service and the raw baseline each get.
    #[arg(long, default_value_t = 16)]
    pub pool: u32,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/latest.json")]
    pub out: PathBuf,
    /// Run only these parts (comma-separated or repeated): `intake`, `activation`, `timers`
    /// (both of: `timers-sla`, `timers-dispatch`), `followup`, `fanout`, `feedback`,
    /// `overload`. Empty runs everything.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Open SLA timers (activations waiting for their first action) seeded for `timers-sla`.
    #[arg(long, default_value_t = 1_000_000)]
    pub open_timers: usize,
    /// Of those, how many come due during the measurement (spread over 15 s).
    #[arg(long, default_value_t = 3_000)]
    pub sla_band: usize,
    /// Due rows each dispatch measurement (`timers-dispatch`) works off.
    #[arg(long, default_value_t = 200_000)]
    pub dispatch_rows: usize,
    /// Concurrent claimers (raw workers, runtime schedulers) in `timers-dispatch`.
    #[arg(long, default_value_t = 4)]
    pub dispatch_workers: usize,
    /// The `fairchance-activation` binary `timers-sla` starts; by default the one next to this
    /// benchmark's binary, built first with `cargo build --release -p bench -p activation`.
    #[arg(long)]
    pub activation_bin: Option<PathBuf>,
    /// Enrolments, each with its step timer, seeded for `followup`.
    #[arg(long, default_value_t = 1_000_000)]
    pub followup_steps: usize,
    /// Of those, how many are due when the service starts (the dispatch-rate figure); the
    /// rest are due hours later.
    #[arg(long, default_value_t = 200_000)]
    pub followup_due: usize,
    /// Steps added once the due ones are dispatched, due over 10 s (the due-to-visible
    /// latency figure).
    #[arg(long, default_value_t = 3_000)]
    pub followup_band: usize,
    /// `VACUUM timers` once the due steps are dispatched, before the latency band: what
    /// autovacuum does on a server that runs it (the figures say whether this one does).
    /// Off by default, so the band meets the dispatch's dead rows as they were left.
    #[arg(long)]
    pub followup_vacuum_before_band: bool,
    /// The `fairchance-followup` binary `followup` starts; by default the one next to this
    /// benchmark's binary, built first with `cargo build --release -p bench -p followup`.
    #[arg(long)]
    pub followup_bin: Option<PathBuf>,
    /// Concurrent `WatchActivations` subscribers in `fanout` (compared to one).
    #[arg(long, default_value_t = 100)]
    pub fanout_subscribers: usize,
    /// Assignments every `fanout` subscriber replays from the start of the stream.
    #[arg(long, default_value_t = 5_000)]
    pub fanout_backlog: usize,
    /// Lead facts over a year `feedback` stores before timing its reports.
    #[arg(long, default_value_t = 1_000_000)]
    pub feedback_leads: u64,
    /// Whether `feedback` measures on SQLite too, after PostgreSQL.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub feedback_sqlite: bool,
    /// Intake's concurrency limit (`FAIRCHANCE_CONCURRENCY_LIMIT`) in `overload`; the
    /// sustainable rate is measured at half of it in flight.
    #[arg(long, default_value_t = 64)]
    pub overload_limit: usize,
    /// Whether `overload` gives intake and PostgreSQL every CPU but the first and the load
    /// generator that one. Setting PostgreSQL's affinity needs root or the postgres user;
    /// without it the part says so and runs with the CPUs shared.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub overload_split_cpus: bool,
    /// How many times the sustainable rate `overload` offers.
    #[arg(long, default_value_t = 10.0)]
    pub overload_factor: f64,
}

impl Args {
    /// Whether the part `name` runs: selected by its own name or a prefix before a `-`
    /// (`timers` selects `timers-sla`).
    pub fn runs(&self, name: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|o| {
                let o = o.trim();
                name == o
                    || name
                        .strip_prefix(o)
                        .is_some_and(|rest| rest.starts_with('-'))
            })
    }
}

/// One figure next to its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub baseline_name: String,
    pub baseline: f64,
    /// value / baseline (for latencies, a ratio above 1 is slower).
    pub ratio: f64,
    pub note: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    /// `model name` from `/proc/cpuinfo`, when there is one.
    cpu_model: String,
    /// Total memory, from `/proc/meminfo`.
    memory_gib: f64,
    os: String,
    when: String,
    postgres: String,
    /// The 1-minute load average when the run started and when it ended: figures taken on a
    /// busy machine compare only as ratios within the run.
    load_at_start: f64,
    load_at_end: f64,
}

/// The first `key: value` line of a `/proc` file, the value trimmed.
fn proc_field(file: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load_at_start = load_average();
    let mut rows = Vec::new();
    if args.runs("intake") {
        rows.extend(intake_bench::run(&args).await?);
    }
    if args.runs("activation") {
        rows.extend(activation_bench::run(&args).await?);
    }
    rows.extend(timers_bench::run(&args).await?);
    if args.runs("followup") {
        rows.extend(followup_bench::run(&args).await?);
    }
    rows.extend(fanout_bench::run(&args).await?);
    if args.runs("feedback") {
        rows.extend(feedback_bench::run(&args).await?);
    }
    if args.runs("overload") {
        rows.extend(overload_bench::run(&args).await?);
    }
    if rows.is_empty() {
        anyhow::bail!(
            "--only {:?} selects nothing: parts are intake, activation, timers (timers-sla, timers-dispatch), followup, fanout, feedback, overload",
            args.only
        );
    }
    print_table(&rows);
    let report = Report {
        machine: Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model: proc_field("/proc/cpuinfo", "model name").unwrap_or_default(),
            memory_gib: proc_field("/proc/meminfo", "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0 / 1024.0),
            os: std::env::consts::OS.to_owned(),
            when: jiff::Timestamp::now().to_string(),
            postgres: args
                .postgres
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_owned(),
            load_at_start,
            load_at_end: load_average(),
        },
        rows,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nwritten to {}", args.out.display());
    Ok(())
}

/// A fresh PostgreSQL database for one benchmark, dropped afterwards.
pub struct BenchDb {
    pub url: String,
    admin: sqlx::PgConnection,
    name: String,
}

impl BenchDb {
    pub async fn create(server: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        use sqlx::Connection;
        let name = format!("fc_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .context("connect to PostgreSQL (--postgres)")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub async fn drop(mut self) {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await;
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<52} {:>14} {:<10} {:<48} {:>14} {:>7}",
        "figure", "value", "unit", "baseline", "baseline", "ratio"
    );
    for r in rows {
        println!(
            "{:<52} {:>14.1} {:<10} {:<48} {:>14.1} {:>7.2}",
            r.name, r.value, r.unit, r.baseline_name, r.baseline, r.ratio
        );
        if !r.note.is_empty() {
            println!("    {}", r.note);
        }
    }
}
