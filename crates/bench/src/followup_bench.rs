//! Follow-up: how fast the real followup service turns due steps into tasks, how late a step
//! becomes visible, what its memory does, and what the churn leaves in its tables.
//!
//! A million enrolments (`--followup-steps`), each with its `followup_wake` timer, are seeded
//! straight into a fresh followup database: the rows followup itself writes, built from one
//! enrolment made by followup's own `Enrollment::enroll` (on a bench playbook whose cadence has
//! a first step an hour after enrolment and a second a month later) with only the lead id,
//! its contact details and the timestamps varied per row. Most steps are due hours later;
//! `--followup-due` of them are due when the service starts.
//!
//! The real `fairchance-followup` binary then runs as a child process (memory read from
//! `/proc`), with intake served in this process (followup asks it `CheckContactable` before
//! every batch; the seeded leads are unknown to it, so contactable) and activation's address
//! pointing at a closed port (its consumer retries quietly). Measured:
//! - dispatch rate: due steps turned into tasks per second, from the service answering until
//!   every due step is a task (its `FollowUpDue` in the log and its row in `open_tasks`), next
//!   to two raw rates on a timers-shaped table in the same run: `SKIP LOCKED` claim and delete
//!   in one statement (a plain dequeue, the harder baseline), and a claim under a lease
//!   committed before a second statement completes the batch (issue 4's "claim and complete
//!   in batches");
//! - due-to-visible latency: once the backlog is gone, `--followup-band` steps due over 10 s
//!   are added; each one's `FollowUpDue` arrival at a `Subscribe` client minus its due time;
//! - resident memory when up, through the dispatch and after, next to the same binary on an
//!   empty database;
//! - bloat: dead tuples and size of `timers`, `enrollments`, `open_tasks`, `touches` and
//!   `event_log` after the churn, next to their size after seeding.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use followup::domain::{Enrollment, Status};
use followup::store::ContactKeys;
use jiff::{SignedDuration, Timestamp};
use prost::Message;
use proto::activation::v1 as apb;
use proto::events::v1::SubscribeFrom;
use proto::followup::v1::SubscribeRequest;
use proto::followup::v1::followup_service_client::FollowupServiceClient;
use proto::intake::v1 as ipb;
use runtime::Db;
use runtime::db::{from_micros, to_micros};
use runtime::service::ServiceSpec;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::common::{
    Intake, Kind, Memory, RAW_BATCH, RAW_CLAIM_COMPLETE, Service, TableStats, create_raw_table,
    iso, ms, pct, positions, raw_claim_then_complete_loop, raw_loop, seed_raw, table_stats_on,
};
use crate::{Args, BenchDb, Row};

/// The issue's targets.
const TARGET_RATIO: f64 = 0.6;
const TARGET_LATENCY_P50_MS: f64 = 5.0;
/// The latency band starts this long after it is written ...
const BAND_START: Duration = Duration::from_secs(3);
/// ... and is spread over this long.
const BAND_SPREAD: Duration = Duration::from_secs(10);
/// How long after it is up the service's memory is read on the empty database, and how long
/// the service idles before the last reading.
const SETTLE: Duration = Duration::from_secs(3);
/// The dispatch gives up when no step became a task for this long.
const STALL: Duration = Duration::from_secs(60);
/// Rows per seeding statement.
const SEED_CHUNK: usize = 20_000;
/// Followup's tables the churn touches, and the runtime's two it writes.
const TABLES: [&str; 5] = [
    "timers",
    "enrollments",
    "open_tasks",
    "touches",
    "event_log",
];

/// Cadence `bench` for every lead: an email an hour after enrolment, a call a month later.
/// Wall-clock delays, so no business calendar moves a due time.
const PLAYBOOK: &str = r#"
[intake]
[followup]
timezone = "UTC"
default_cadence = "bench"
[[followup.cadences]]
id = "bench"
steps = [
  { delay = "1h", channel = "email", strategy = "value", template = "bench-intro" },
  { delay = "30d", channel = "call", strategy = "value", template = "bench-call" },
]
"#;
/// The first step's delay in the playbook above.
const FIRST_DELAY: SignedDuration = SignedDuration::from_hours(1);

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let bin = Kind::Followup.locate(args.followup_bin.as_deref(), "followup")?;
    let dir = tempfile::tempdir()?;
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK)?;
    let intake_db = BenchDb::create(&args.postgres).await?;
    let empty_db = BenchDb::create(&args.postgres).await?;
    let full_db = BenchDb::create(&args.postgres).await?;
    let result = async {
        let intake = Intake::start(args, &intake_db.url, &playbook).await?;
        let setup = Setup {
            args,
            bin: &bin,
            dir: dir.path(),
            playbook: &playbook.to_string_lossy(),
            intake_url: &intake.url,
            // Nothing listens there: followup's consumer of activation's stream retries.
            activation_url: &format!(
                "http://{}",
                std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
            ),
        };
        let result = measure(&setup, &empty_db.url, &full_db.url).await;
        intake.stop().await;
        result
    }
    .await;
    intake_db.drop().await;
    empty_db.drop().await;
    full_db.drop().await;
    result
}

/// What starting the followup binary takes.
struct Setup<'a> {
    args: &'a Args,
    bin: &'a std::path::Path,
    dir: &'a std::path::Path,
    playbook: &'a str,
    intake_url: &'a str,
    activation_url: &'a str,
}

impl Setup<'_> {
    fn spawn(&self, label: &str, database_url: &str) -> anyhow::Result<Service> {
        Service::spawn(
            self.args,
            Kind::Followup,
            self.bin,
            self.dir,
            label,
            database_url,
            &[
                ("FAIRCHANCE_PLAYBOOK", self.playbook),
                ("FAIRCHANCE_INTAKE_URL", self.intake_url),
                ("FAIRCHANCE_ACTIVATION_URL", self.activation_url),
            ],
        )
    }
}

async fn measure(setup: &Setup<'_>, empty_url: &str, full_url: &str) -> anyhow::Result<Vec<Row>> {
    let args = setup.args;
    // The same binary with nothing to do: the memory baseline.
    eprintln!("followup: the service on an empty database (memory baseline) ...");
    let mut empty = setup.spawn("empty", empty_url)?;
    empty.wait_ready().await?;
    tokio::time::sleep(SETTLE).await;
    let empty_mem = empty.memory()?;
    empty.stop();
    eprintln!(
        "followup:   up in {:.0} ms, RSS {:.1} MB",
        empty_mem.up_ms, empty_mem.rss_mb
    );

    // Seeding: far-future steps, then the ones due now.
    let due = args.followup_due.min(args.followup_steps);
    let total = args.followup_steps.max(due);
    let far = total - due;
    let band = args.followup_band;
    eprintln!(
        "followup: seeding {total} enrolments with their step timers ({due} due now, {far} due in 2 to 10 h) ..."
    );
    let seeded = Instant::now();
    let db = Db::connect(full_url, 2).await?;
    db.migrate(followup::FollowupService::migrations()).await?;
    let template = Template::build()?;
    let now = Timestamp::now();
    let far_dues: Vec<i64> = {
        let base = to_micros(now + SignedDuration::from_hours(2));
        let spread = SignedDuration::from_hours(8).as_micros() as u64;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..far)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                base + (x % spread) as i64
            })
            .collect()
    };
    seed(full_url, &template, &far_dues, 0).await?;
    // Due over the minute before now, so the claim order (by due time) has something to do.
    let minute = SignedDuration::from_secs(60).as_micros() as i64;
    let due_dues: Vec<i64> = (0..due)
        .map(|i| to_micros(now) - minute + (i as i64 * minute) / due.max(1) as i64)
        .collect();
    let due_ids = seed(full_url, &template, &due_dues, far).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(full_url)
        .await?;
    for table in ["enrollments", "timers"] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(&pool)
            .await?;
    }
    if let Some(lead) = due_ids.first() {
        check_seeded(&db, lead, due_dues[0]).await?;
    }
    db.close().await;
    // The bulk load's WAL is checkpointed now, not while the dispatch is measured.
    sqlx::query("CHECKPOINT").execute(&pool).await?;
    let seeding = seeded.elapsed();
    let before = stats_of_tables(full_url).await?;
    eprintln!(
        "followup:   seeded, vacuumed and checkpointed in {:.1} s; enrollments {:.0} MB, timers {:.0} MB",
        seeding.as_secs_f64(),
        before[1].mb(),
        before[0].mb()
    );

    // The service, working off the due steps from the start.
    eprintln!("followup: the service with {total} enrolments, {due} steps due ...");
    let server = Server::read(&pool).await?;
    let spawned = Instant::now();
    let mut service = setup.spawn("full", full_url)?;
    let up = service.wait_ready().await?;
    let ready = Instant::now();
    let start_mem = service.memory()?;
    let done_at_ready = dispatched(&pool).await?;
    eprintln!(
        "followup:   up in {:.0} ms, RSS {:.1} MB, {done_at_ready} steps dispatched already",
        up.as_secs_f64() * 1e3,
        start_mem.rss_mb
    );
    let mut peak_rss = start_mem.rss_mb;
    let mut last = (done_at_ready, Instant::now());
    let mut progress = vec![(0.0, done_at_ready)];
    let finished = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(m) = service.memory() {
            peak_rss = peak_rss.max(m.rss_mb);
        }
        let done = dispatched(&pool).await?;
        let at = Instant::now();
        progress.push((at.duration_since(ready).as_secs_f64(), done));
        if done >= due as i64 {
            break Some(at);
        }
        if done > last.0 {
            if done / 20_000 > last.0 / 20_000 {
                eprintln!(
                    "followup:   {done} dispatched after {:.1} s",
                    at.duration_since(ready).as_secs_f64()
                );
            }
            last = (done, at);
        } else if at.duration_since(last.1) > STALL {
            eprintln!("followup:   warning: no step dispatched for {STALL:?}; giving up");
            break None;
        }
    };
    let done = dispatched(&pool).await?;
    let end = finished.unwrap_or_else(Instant::now);
    let spent = server.since(&pool, service.cpu_seconds()?).await?;
    let secs = end.duration_since(ready).as_secs_f64();
    let rate = (done - done_at_ready) as f64 / secs;
    let rate_from_spawn = done as f64 / end.duration_since(spawned).as_secs_f64();
    let middle = middle_rate(&progress, due as i64);
    let after_dispatch = service.memory()?;
    let open_tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM open_tasks")
        .fetch_one(&pool)
        .await?;
    eprintln!(
        "followup:   {done} steps dispatched in {secs:.1} s: {rate:.0} steps/s ({middle:.0}/s between 10% and 90%); \
         {open_tasks} open tasks; RSS {:.1} MB (peak sampled {peak_rss:.1} MB); {}",
        after_dispatch.rss_mb,
        spent.describe(done),
    );

    let vacuumed = if args.followup_vacuum_before_band {
        let started = Instant::now();
        sqlx::query("VACUUM timers").execute(&pool).await?;
        let took = started.elapsed();
        eprintln!("followup:   VACUUM timers in {:.2} s", took.as_secs_f64());
        Some(took)
    } else {
        None
    };
    let after_vacuum = vacuumed.map_or(String::new(), |_| ", timers vacuumed first".to_owned());
    // The latency band, once the backlog is gone: a subscriber from the log's tail, then the
    // band's rows, due from BAND_START on.
    let tail: Option<(i64, i64)> =
        sqlx::query_as("SELECT txid, seq FROM event_log ORDER BY txid DESC, seq DESC LIMIT 1")
            .fetch_optional(&pool)
            .await?;
    let channel = tonic::transport::Endpoint::from_shared(service.url())?
        .connect()
        .await?;
    let mut events = FollowupServiceClient::new(channel)
        .subscribe(SubscribeRequest {
            from: Some(SubscribeFrom {
                after_cursor: tail.map(|(t, s)| format!("{t}.{s}")).unwrap_or_default(),
                event_types: vec!["FollowUpDue".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let watch = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Ok(Some(message)) = events.message().await {
                let observed = Timestamp::now();
                if let Some(event) = message.event {
                    let occurred = event
                        .occurred_at
                        .as_ref()
                        .and_then(runtime::grpc::from_proto_timestamp);
                    if let Ok(mut s) = seen.lock() {
                        s.push(Seen {
                            lead: event.aggregate_id,
                            occurred,
                            observed,
                        });
                    }
                }
            }
        }
    });
    let band_start = Timestamp::now() + BAND_START;
    let step = BAND_SPREAD.as_micros() as i64 / band.max(1) as i64;
    let band_dues: Vec<i64> = (0..band)
        .map(|i| to_micros(band_start) + i as i64 * step)
        .collect();
    eprintln!(
        "followup: {band} steps due over {} s from {} s on ...",
        BAND_SPREAD.as_secs(),
        BAND_START.as_secs()
    );
    let band_ids = seed(full_url, &template, &band_dues, total).await?;
    if Timestamp::now() > band_start {
        eprintln!("followup:   warning: the band was written after its first step was due");
    }
    let give_up =
        band_start + SignedDuration::try_from(BAND_SPREAD)? + SignedDuration::from_secs(60);
    loop {
        let count = seen.lock().map(|s| s.len()).unwrap_or(0);
        if count >= band || Timestamp::now() > give_up {
            break;
        }
        if let Ok(m) = service.memory() {
            peak_rss = peak_rss.max(m.rss_mb);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after_band = service.memory()?;
    tokio::time::sleep(SETTLE).await;
    let idle = service.memory()?;
    let (warnings, warning_texts) = service.warnings();
    service.stop();
    watch.abort();

    // What the churn left, then the raw baseline on the same server.
    let after = stats_of_tables(full_url).await?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_type, COUNT(*) FROM event_log GROUP BY event_type ORDER BY 1")
            .fetch_all(&pool)
            .await?;
    let (tasks_after, touches_after, due_left): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM open_tasks), (SELECT COUNT(*) FROM touches), \
                (SELECT COUNT(*) FROM timers WHERE due_at <= $1)",
    )
    .bind(to_micros(Timestamp::now()))
    .fetch_one(&pool)
    .await?;
    let k = args.dispatch_workers.max(1);
    eprintln!("followup: raw SKIP LOCKED claim+complete of {due} due rows, {k} workers and 1 ...");
    create_raw_table(&pool).await?;
    seed_raw(&pool, due).await?;
    let (raw_done, raw_rate) = raw_loop(full_url, k, RAW_CLAIM_COMPLETE).await?;
    seed_raw(&pool, due).await?;
    let (raw1_done, raw1_rate) = raw_loop(full_url, 1, RAW_CLAIM_COMPLETE).await?;
    eprintln!("followup:   {raw_rate:.0} rows/s with {k} workers, {raw1_rate:.0} rows/s with 1");
    eprintln!("followup: raw claim, then complete, {RAW_BATCH} per statement, {k} workers ...");
    seed_raw(&pool, due).await?;
    let (raw2_done, raw2_rate) = raw_claim_then_complete_loop(full_url, k).await?;
    eprintln!("followup:   {raw2_rate:.0} rows/s");
    pool.close().await;

    // Latencies of the band.
    let dues: std::collections::HashMap<&str, i64> = band_ids
        .iter()
        .map(String::as_str)
        .zip(band_dues.iter().copied())
        .collect();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut by_subscriber = Vec::new();
    let mut by_event = Vec::new();
    for s in &seen {
        if let Some(due) = dues.get(s.lead.as_str()) {
            let due = from_micros(*due);
            by_subscriber.push(ms(s.observed.duration_since(due)));
            if let Some(occurred) = s.occurred {
                by_event.push(ms(occurred.duration_since(due)));
            }
        }
    }
    by_subscriber.sort_by(f64::total_cmp);
    by_event.sort_by(f64::total_cmp);

    let event_summary = counts
        .iter()
        .map(|(t, n)| format!("{n} {}", t.rsplit('.').next().unwrap_or(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = (due + band) as i64;
    let check = if done >= due as i64 && tasks_after == expected && by_subscriber.len() == band {
        String::new()
    } else {
        format!(
            "; MISMATCH: {done} of {due} dispatched, {tasks_after} open tasks (expected {expected}), \
             {} of {band} band steps seen!",
            by_subscriber.len()
        )
    };
    let kk = |n: usize| format!("{}k", n / 1000);
    let mut rows = vec![
        Row {
            name: format!("followup step dispatch, {} enrolments", kk(total)),
            value: rate,
            unit: "steps/s".into(),
            baseline_name: format!(
                "raw SKIP LOCKED claim+complete ({RAW_BATCH}/stmt, {k} workers)"
            ),
            baseline: raw_rate,
            ratio: rate / raw_rate,
            note: format!(
                "target ratio >= {TARGET_RATIO}; {due} due steps turned into tasks (FollowUpDue in the log) by one \
                 replica in {secs:.1} s after it answered ({rate_from_spawn:.0}/s from spawn; {middle:.0}/s \
                 between 10% and 90%); raw with 1 worker {raw1_rate:.0} rows/s (ratio {:.3}); raw did \
                 {raw_done} + {raw1_done} rows; log: {event_summary}; {tasks_after} open tasks, {touches_after} \
                 touches, {due_left} timers due left; {warnings} warn+ log lines {warning_texts:?}; {}{check}",
                rate / raw1_rate,
                spent.describe(done),
            ),
        },
        Row {
            name: format!("followup step dispatch, {} enrolments", kk(total)),
            value: rate,
            unit: "steps/s".into(),
            baseline_name: format!("raw claim, then complete ({RAW_BATCH}/stmt, {k} workers)"),
            baseline: raw2_rate,
            ratio: rate / raw2_rate,
            note: format!(
                "target ratio >= {TARGET_RATIO} against the issue's \"claim and complete in batches\" \
                 (23-36k/s on this machine when the issue was written): each raw worker claims \
                 {RAW_BATCH} due rows under a lease in one committed statement, then deletes them \
                 with a second; raw did {raw2_done} rows"
            ),
        },
        latency_row(
            &format!("step due->visible p50, subscriber ({band}){after_vacuum}"),
            &by_subscriber,
            0.5,
            String::new(),
        ),
        latency_row(
            &format!("step due->visible p99, subscriber ({band}){after_vacuum}"),
            &by_subscriber,
            0.99,
            format!(
                "Subscribe(FollowUpDue) arrival - the step's due time, backlog gone; max {:.1} ms; {} of {band} seen{}",
                pct(&by_subscriber, 1.0),
                by_subscriber.len(),
                vacuumed.map_or(String::new(), |took| format!(
                    "; the dispatch's dead timer rows vacuumed first ({:.0} ms), as autovacuum would",
                    took.as_secs_f64() * 1e3
                ))
            ),
        ),
        latency_row(
            &format!("step due->FollowUpDue occurred_at p50{after_vacuum}"),
            &by_event,
            0.5,
            format!(
                "the firing transaction's clock - due time; p99 {:.1} ms, max {:.1} ms",
                pct(&by_event, 0.99),
                pct(&by_event, 1.0)
            ),
        ),
        Row {
            name: format!("followup RSS when up, {} enrolments", kk(total)),
            value: start_mem.rss_mb,
            unit: "MB".into(),
            baseline_name: "same binary, empty database".into(),
            baseline: empty_mem.rss_mb,
            ratio: start_mem.rss_mb / empty_mem.rss_mb,
            note: format!(
                "VmRSS once it answers (up in {:.0} ms; {:.0} ms on the empty database); seeding took {:.0} s",
                up.as_secs_f64() * 1e3,
                empty_mem.up_ms,
                seeding.as_secs_f64()
            ),
        },
        flat_row(
            &start_mem,
            &after_dispatch,
            &after_band,
            &idle,
            peak_rss,
            due,
            band,
        ),
    ];
    for ((table, before), after) in TABLES.iter().zip(&before).zip(&after) {
        let mut row = bloat_row(table, before, after, due + band);
        if *table == "timers" && vacuumed.is_some() {
            row.note.push_str(
                "; vacuumed by the benchmark before the band (--followup-vacuum-before-band)",
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Where the server stood when the service started, to tell what the dispatch cost.
struct Server {
    wal_lsn: String,
    checkpoints: i64,
    machine: Option<(f64, f64)>,
    /// `shared_buffers` and `autovacuum` as the server runs.
    settings: String,
}

/// What the dispatch cost.
struct Spent {
    wal_bytes: f64,
    checkpoints: i64,
    service_cpu: f64,
    /// Busy CPU seconds of the whole machine, and how many the machine had.
    machine: Option<(f64, f64)>,
    settings: String,
}

impl Server {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (wal_lsn, checkpoints, settings): (String, i64, String) = sqlx::query_as(
            "SELECT pg_current_wal_lsn()::text, \
                    (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter), \
                    'shared_buffers ' || current_setting('shared_buffers') || ', autovacuum ' || current_setting('autovacuum')",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            wal_lsn,
            checkpoints,
            machine: crate::common::machine_cpu(),
            settings,
        })
    }

    async fn since(&self, pool: &PgPool, service_cpu: f64) -> anyhow::Result<Spent> {
        let now = Self::read(pool).await?;
        let wal_bytes: f64 = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
        )
        .bind(&self.wal_lsn)
        .fetch_one(pool)
        .await?;
        let machine = match (self.machine, now.machine) {
            (Some((b0, t0)), Some((b1, t1))) => Some((b1 - b0, t1 - t0)),
            _ => None,
        };
        Ok(Spent {
            wal_bytes,
            checkpoints: now.checkpoints - self.checkpoints,
            service_cpu,
            machine,
            settings: self.settings.clone(),
        })
    }
}

impl Spent {
    fn describe(&self, steps: i64) -> String {
        let steps = steps.max(1) as f64;
        let machine = self.machine.map_or(String::new(), |(busy, total)| {
            format!(
                "machine CPU {:.0}% busy ({busy:.0} of {total:.0} core-seconds), ",
                100.0 * busy / total.max(1e-9)
            )
        });
        format!(
            "service CPU {:.0} us/step, {machine}WAL {:.1} kB/step, {} checkpoints; PostgreSQL {}",
            1e6 * self.service_cpu / steps,
            self.wal_bytes / 1024.0 / steps,
            self.checkpoints,
            self.settings
        )
    }
}

#[derive(Debug, Clone)]
struct Seen {
    lead: String,
    occurred: Option<Timestamp>,
    observed: Timestamp,
}

/// Steps turned into tasks so far: one `FollowUpDue` per step, and nothing else is appended
/// while the seeded steps fire, so the log's highest sequence number counts them (read from
/// the primary key's index, unlike a `COUNT(*)`).
async fn dispatched(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log")
            .fetch_one(pool)
            .await?,
    )
}

/// The rate between 10% and 90% of `total` in `(seconds, done)` samples.
fn middle_rate(progress: &[(f64, i64)], total: i64) -> f64 {
    let at = |share: f64| {
        progress
            .iter()
            .find(|(_, done)| *done as f64 >= share * total as f64)
            .copied()
    };
    match (at(0.1), at(0.9)) {
        (Some((t0, d0)), Some((t1, d1))) if t1 > t0 => (d1 - d0) as f64 / (t1 - t0),
        _ => f64::NAN,
    }
}

fn latency_row(name: &str, sorted: &[f64], p: f64, note: String) -> Row {
    Row {
        name: name.to_owned(),
        value: pct(sorted, p),
        unit: "ms".into(),
        baseline_name: "target p50 (issue)".into(),
        baseline: TARGET_LATENCY_P50_MS,
        ratio: pct(sorted, p) / TARGET_LATENCY_P50_MS,
        note,
    }
}

fn flat_row(
    start: &Memory,
    after_dispatch: &Memory,
    after_band: &Memory,
    idle: &Memory,
    peak: f64,
    due: usize,
    band: usize,
) -> Row {
    Row {
        name: "followup RSS after the dispatch and the band".into(),
        value: after_band.rss_mb,
        unit: "MB".into(),
        baseline_name: "same process when up".into(),
        baseline: start.rss_mb,
        ratio: after_band.rss_mb / start.rss_mb,
        note: format!(
            "flat is a ratio near 1: {:.1} MB when up, {:.1} MB after {due} steps, {:.1} MB after {band} more, \
             {:.1} MB after {} s idle; largest sampled {peak:.1} MB, VmHWM {:.1} MB",
            start.rss_mb,
            after_dispatch.rss_mb,
            after_band.rss_mb,
            idle.rss_mb,
            SETTLE.as_secs(),
            idle.hwm_mb
        ),
    }
}

fn bloat_row(table: &str, before: &TableStats, after: &TableStats, steps: usize) -> Row {
    Row {
        name: format!("{table}: dead tuples after {}k steps", steps / 1000),
        value: after.dead as f64,
        unit: "tuples".into(),
        baseline_name: "live tuples".into(),
        baseline: after.live as f64,
        ratio: after.dead as f64 / after.live.max(1) as f64,
        note: format!(
            "{:.1} MB after seeding (vacuumed) -> {:.1} MB after; {} inserts, {} updates ({} HOT), {} deletes since; \
             {} autovacuums during the run",
            before.mb(),
            after.mb(),
            after.inserted - before.inserted,
            after.updated - before.updated,
            after.hot - before.hot,
            after.deleted - before.deleted,
            after.autovacuums - before.autovacuums,
        ),
    }
}

/// Statistics of [`TABLES`], in that order, once the writers' statistics are reported.
async fn stats_of_tables(url: &str) -> anyhow::Result<Vec<TableStats>> {
    // Backends report their statistics when idle for a second or when they exit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = PgConnection::connect(url).await?;
    let mut stats = Vec::new();
    for table in TABLES {
        stats.push(table_stats_on(&mut conn, table).await?);
    }
    conn.close().await?;
    Ok(stats)
}

// ---------------------------------------------------------------------------------------
// Seeding from followup's own types
// ---------------------------------------------------------------------------------------

/// The enrolment row followup writes for a lead activated for owner `a`, made by followup's
/// own types, with placeholders the seeding SQL replaces per row.
struct Template {
    owner: String,
    record: String,
    contact_key: String,
    phone_key: String,
    context: Vec<u8>,
    /// Where the lead id and the phone number sit in `context` (1-based).
    context_lead_at: Vec<usize>,
    context_phone_at: Vec<usize>,
}

const LEAD_PLACEHOLDER: Uuid = Uuid::from_u128(0xbeefbeef_beef_7eef_beef_beefbeefbeef);
/// As long as every phone the rows get: `+1` and ten digits.
const PHONE_PLACEHOLDER: &str = "+19876543210";
const ENROLLED_PLACEHOLDER: &str = "2001-02-03T04:05:06Z";

fn phone(n: usize) -> String {
    format!("+1{:010}", 2_000_000_000 + n)
}

impl Template {
    fn build() -> anyhow::Result<Self> {
        let playbook: followup::playbook::FollowupPlaybook =
            runtime::playbook::parse("bench playbook", PLAYBOOK)?;
        let input =
            intake::convert::lead_input_to_proto(&crate::intake_bench::sample_lead("followup", 7));
        let accepted = ipb::LeadAccepted {
            lead: Some(ipb::Lead {
                lead_id: LEAD_PLACEHOLDER.to_string(),
                input: Some(input),
                icp_tier: ipb::IcpTier::A as i32,
                completeness_score: 90,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (_, mut packet) = activation::intake_events::from_accepted(&accepted)?;
        // The contact's identity varies with the lead, so no two leads share a frequency cap.
        packet.email = format!("{LEAD_PLACEHOLDER}@bench.example");
        packet.phone = PHONE_PLACEHOLDER.into();
        // What activation's LeadActivated carries.
        let activation = apb::Activation {
            lead_id: LEAD_PLACEHOLDER.to_string(),
            team_id: "sales".into(),
            owner_id: "a".into(),
            manager_id: "lead".into(),
            owner_timezone: "UTC".into(),
            context: Some(packet.clone()),
            ..Default::default()
        };
        let facts = followup::convert::facts_from_activation(&activation)
            .context("facts of the bench activation")?;
        let keys = ContactKeys::new(facts.email.as_deref(), facts.phone.as_deref());
        let enrolled: Timestamp = ENROLLED_PLACEHOLDER.parse()?;
        let (enrollment, _) = Enrollment::enroll(&playbook, facts, enrolled)?;
        anyhow::ensure!(enrollment.status == Status::Active);
        anyhow::ensure!(
            enrollment.wake_at(&playbook) == Some(enrolled + FIRST_DELAY),
            "the bench enrolment wakes at {:?}, not its first step's due time",
            enrollment.wake_at(&playbook)
        );
        let record = serde_json::to_string(&enrollment)?;
        // Each placeholder must stand for exactly the fields it is meant to: the lead id in
        // `lead`, `facts.lead` and `facts.email`; enrolment in `enrolled_at` and
        // `momentum.as_of`; the due time in `next.due_at` and `next.planned_at`.
        let due = (enrolled + FIRST_DELAY).to_string();
        for (placeholder, expected) in [
            (LEAD_PLACEHOLDER.to_string(), 3),
            (PHONE_PLACEHOLDER.to_owned(), 1),
            (format!("\"{ENROLLED_PLACEHOLDER}\""), 2),
            (format!("\"{due}\""), 2),
        ] {
            let found = record.matches(&placeholder).count();
            anyhow::ensure!(
                found == expected,
                "enrolment template: {placeholder} found {found} times, expected {expected}: {record}"
            );
        }
        let context = packet.encode_to_vec();
        let context_lead_at = positions(&context, LEAD_PLACEHOLDER.to_string().as_bytes());
        let context_phone_at = positions(&context, PHONE_PLACEHOLDER.as_bytes());
        anyhow::ensure!(context_lead_at.len() == 1 && context_phone_at.len() == 1);
        Ok(Self {
            owner: enrollment.owner().to_owned(),
            record: record.replace(&format!("\"{due}\""), "\"DUE_PLACEHOLDER\""),
            contact_key: keys.contact.into(),
            phone_key: keys.phone.into(),
            context,
            context_lead_at,
            context_phone_at,
        })
    }
}

/// Inserts an enrolment and its wake-up timer per due time, two connections in parallel;
/// phone numbers are numbered from `first`. Returns the lead ids in the order of `dues`.
async fn seed(
    url: &str,
    template: &Template,
    dues: &[i64],
    first: usize,
) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = dues.iter().map(|_| Uuid::now_v7().to_string()).collect();
    let phones: Vec<String> = (first..first + dues.len()).map(phone).collect();
    let mut context = "$8::bytea".to_owned();
    for at in &template.context_lead_at {
        context = format!("overlay({context} placing convert_to(s.lead_id, 'UTF8') from {at})");
    }
    for at in &template.context_phone_at {
        context = format!("overlay({context} placing convert_to(s.phone, 'UTF8') from {at})");
    }
    let sql = format!(
        "WITH s AS ( \
           SELECT u.lead_id, u.timer_id, u.due, u.due - $4::bigint AS enrolled, u.phone \
           FROM unnest($1::text[], $2::text[], $3::bigint[], $5::text[]) AS u(lead_id, timer_id, due, phone) \
         ), e AS ( \
           INSERT INTO enrollments (lead_id, owner_id, contact_key, phone_key, status, record, context) \
           SELECT s.lead_id, $6, replace(replace($9::text, $11::text, s.lead_id), $12::text, s.phone), \
                  replace($10::text, $12::text, s.phone), 'active', \
                  replace(replace(replace(replace($7::text, $11::text, s.lead_id), $12::text, s.phone), \
                                  $13::text, {enrolled}), 'DUE_PLACEHOLDER', {due}), \
                  {context} \
           FROM s \
         ) \
         INSERT INTO timers (timer_id, kind, subject, due_at, payload) \
         SELECT s.timer_id, '{kind}', s.lead_id, s.due, ''::bytea FROM s",
        enrolled = iso("s.enrolled"),
        due = iso("s.due"),
        kind = followup::service::WAKE_TIMER,
    );
    let work: Vec<(usize, usize)> = (0..dues.len())
        .step_by(SEED_CHUNK)
        .map(|start| (start, (start + SEED_CHUNK).min(dues.len())))
        .collect();
    let work = Arc::new(Mutex::new(work));
    let shared = Arc::new((ids, phones, dues.to_vec()));
    let template = Arc::new((
        template.owner.clone(),
        template.record.clone(),
        template.context.clone(),
        template.contact_key.clone(),
        template.phone_key.clone(),
    ));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (work, shared, template, sql, url) = (
            work.clone(),
            shared.clone(),
            template.clone(),
            sql.clone(),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await?;
            conn.execute("SET session_replication_role = replica")
                .await?;
            loop {
                let next = work.lock().ok().and_then(|mut w| w.pop());
                let Some((start, end)) = next else { break };
                let timer_ids: Vec<String> =
                    (start..end).map(|_| Uuid::now_v7().to_string()).collect();
                let (ids, phones, dues) = &*shared;
                sqlx::query(&sql)
                    .bind(&ids[start..end])
                    .bind(&timer_ids)
                    .bind(&dues[start..end])
                    .bind(FIRST_DELAY.as_micros() as i64)
                    .bind(&phones[start..end])
                    .bind(template.0.as_str())
                    .bind(template.1.as_str())
                    .bind(template.2.as_slice())
                    .bind(template.3.as_str())
                    .bind(template.4.as_str())
                    .bind(LEAD_PLACEHOLDER.to_string())
                    .bind(PHONE_PLACEHOLDER)
                    .bind(ENROLLED_PLACEHOLDER)
                    .execute(&mut conn)
                    .await?;
            }
            conn.close().await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let (ids, _, _) = Arc::try_unwrap(shared).unwrap_or_else(|s| (*s).clone());
    Ok(ids)
}

/// Reads a seeded row back through followup's own store, so a template that no longer matches
/// the enrolment fails here rather than in the service.
async fn check_seeded(db: &Db, lead: &str, due: i64) -> anyhow::Result<()> {
    let playbook: followup::playbook::FollowupPlaybook =
        runtime::playbook::parse("bench playbook", PLAYBOOK)?;
    let lead: Uuid = lead.parse()?;
    let (enrollment, keys, context) = followup::store::Store::new(db.clone())
        .load(lead)
        .await?
        .context("a seeded enrolment is missing")?;
    anyhow::ensure!(enrollment.lead == lead && enrollment.facts.lead == lead);
    anyhow::ensure!(enrollment.wake_at(&playbook) == Some(from_micros(due)));
    anyhow::ensure!(enrollment.enrolled_at + FIRST_DELAY == from_micros(due));
    let packet = apb::ContextPacket::decode(context.as_slice())?;
    let email = format!("{lead}@bench.example");
    anyhow::ensure!(enrollment.facts.email.as_deref() == Some(email.as_str()));
    anyhow::ensure!(
        packet.email == email && Some(packet.phone.as_str()) == enrollment.facts.phone.as_deref()
    );
    anyhow::ensure!(keys == ContactKeys::new(Some(&email), Some(&packet.phone)));
    Ok(())
}
