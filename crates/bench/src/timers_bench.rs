//! Timers: what durable SLA timers cost the activation service, and how fast durable timers
//! can be dispatched at all.
//!
//! `timers-sla` seeds a million open activations with their `sla_deadline` timers straight into
//! a fresh activation database (the rows activation itself writes, built from its own record
//! types), with a band of them due a few seconds after start. It then starts the real
//! `fairchance-activation` binary as a child process, so the memory read from `/proc` is the
//! service's own, and measures its resident memory next to the same binary on an empty
//! database, and how late each breach in the band is: the `SlaBreached` event's `occurred_at`
//! and its arrival at a `Subscribe` client, each minus the deadline.
//!
//! `timers-dispatch` is the baseline the follow-up service's step dispatch compares to: due rows
//! claimed and completed in batches of 500 with `FOR UPDATE SKIP LOCKED` by plain SQL, next to
//! `runtime::timers::Timers` firing the same number of due timers with a handler that records
//! each firing, and the table bloat each leaves behind.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use prost::Message;
use proto::activation::v1::SubscribeRequest;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::events::v1::SubscribeFrom;
use proto::intake::v1 as ipb;
use runtime::consumer::HandlerError;
use runtime::db::{RUNTIME_MIGRATIONS, to_micros};
use runtime::service::ServiceSpec;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{Db, Tx};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::common::{
    Intake, Kind, RAW_BATCH, RAW_CLAIM_COMPLETE, Service, create_raw_table, drain, iso, ms, pct,
    raw_loop, seed_raw, table_stats,
};
use crate::{Args, BenchDb, Row};

/// The breach band is spread over this long ...
const BAND_SPREAD: Duration = Duration::from_secs(15);
/// ... starting this long after the service process is spawned.
const BAND_START: Duration = Duration::from_secs(8);
/// How long after it is up the service's "steady" memory is read (before the band).
const SETTLE: Duration = Duration::from_secs(3);
/// The issue's targets.
const TARGET_RSS_MB: f64 = 200.0;
const TARGET_LATENESS_P99_MS: f64 = 100.0;
/// Rows per seeding statement.
const SEED_CHUNK: usize = 20_000;
/// Timers per transaction when scheduling through the runtime.
const SCHEDULE_BATCH: usize = 500;
/// The SLA window of the playbook below (received_at = deadline - window).
const WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// Everybody works around the clock with room for every lead, so a breach always reassigns.
const PLAYBOOK: &str = r#"
[intake]
[activation]
default_team = "sales"
[activation.escalation]
max_reassignments = 1
routing_delay = "1m"
[[activation.teams]]
id = "sales"
name = "Sales"
manager = "lead"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
[[activation.owners]]
id = "a"
name = "A"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000000
[[activation.owners]]
id = "b"
name = "B"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000000
[[activation.owners]]
id = "lead"
name = "Lead"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 100000000
[[activation.sla]]
name = "all"
window = "1h"
[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
"#;

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if args.runs("timers-dispatch") {
        rows.extend(dispatch(args).await?);
    }
    if args.runs("timers-sla") {
        rows.extend(open_timers(args).await?);
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 1. A million open SLA timers in the real activation service
// ---------------------------------------------------------------------------------------

async fn open_timers(args: &Args) -> anyhow::Result<Vec<Row>> {
    let bin = Kind::Activation.locate(args.activation_bin.as_deref(), "timers-sla")?;
    let dir = tempfile::tempdir()?;
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK)?;
    let intake_db = BenchDb::create(&args.postgres).await?;
    let empty_db = BenchDb::create(&args.postgres).await?;
    let full_db = BenchDb::create(&args.postgres).await?;
    let result = async {
        let intake = Intake::start(args, &intake_db.url, &playbook).await?;
        let result = measure_open_timers(
            args,
            &bin,
            dir.path(),
            &playbook,
            &intake.url,
            &empty_db.url,
            &full_db.url,
        )
        .await;
        intake.stop().await;
        result
    }
    .await;
    intake_db.drop().await;
    empty_db.drop().await;
    full_db.drop().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure_open_timers(
    args: &Args,
    bin: &Path,
    dir: &Path,
    playbook: &Path,
    intake_url: &str,
    empty_url: &str,
    full_url: &str,
) -> anyhow::Result<Vec<Row>> {
    // The same binary with nothing to do: the memory baseline.
    eprintln!("timers-sla: activation on an empty database (memory baseline) ...");
    let mut empty = spawn(args, bin, dir, "empty", empty_url, playbook, intake_url)?;
    let up = empty.wait_ready().await?;
    tokio::time::sleep(SETTLE).await;
    let empty_mem = empty.memory()?;
    empty.stop();
    eprintln!(
        "timers-sla:   up in {:.0} ms, RSS {:.1} MB, peak {:.1} MB",
        up.as_secs_f64() * 1e3,
        empty_mem.rss_mb,
        empty_mem.hwm_mb
    );

    let open = args.open_timers.max(args.sla_band);
    let band = args.sla_band;
    eprintln!("timers-sla: seeding {open} open activations with their SLA timers ...");
    let seeded = Instant::now();
    let db = Db::connect(full_url, 2).await?;
    db.migrate(activation::ActivationService::migrations())
        .await?;
    let template = Template::build()?;
    let far = open - band;
    let now = Timestamp::now();
    let far_deadlines: Vec<i64> = {
        // Deadlines spread over 2 to 10 hours from now, in no particular order.
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
    seed(full_url, &template, &far_deadlines).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(full_url)
        .await?;
    sqlx::query("VACUUM ANALYZE activations")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE timers").execute(&pool).await?;
    let seeding = seeded.elapsed();
    eprintln!(
        "timers-sla:   {far} far-future rows seeded and vacuumed in {:.1} s",
        seeding.as_secs_f64()
    );

    // The band, due from BAND_START after the spawn on, then the service right away.
    let band_start = Timestamp::now() + BAND_START;
    let step = BAND_SPREAD.as_micros() as i64 / band.max(1) as i64;
    let band_deadlines: Vec<i64> = (0..band)
        .map(|i| to_micros(band_start) + i as i64 * step)
        .collect();
    let band_ids = seed(full_url, &template, &band_deadlines).await?;
    finish_seed(&pool).await?;
    check_seeded(&db, &band_ids[0]).await?;
    let timer_count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers")
        .fetch_one(&pool)
        .await?;
    // The bulk load's WAL is checkpointed now, not while the band is measured.
    sqlx::query("CHECKPOINT").execute(&pool).await?;
    let checkpoints = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
        )
        .fetch_one(&pool)
        .await
    };
    let checkpoints_before = checkpoints().await?;
    let deadlines: HashMap<String, Timestamp> = band_ids
        .iter()
        .zip(&band_deadlines)
        .map(|(id, d)| (id.clone(), runtime::db::from_micros(*d)))
        .collect();

    eprintln!(
        "timers-sla: activation with {timer_count} open SLA timers; {band} due over {} s from {} s after start ...",
        BAND_SPREAD.as_secs(),
        BAND_START.as_secs()
    );
    let mut service = spawn(args, bin, dir, "full", full_url, playbook, intake_url)?;
    let up = service.wait_ready().await?;
    let channel = tonic::transport::Endpoint::from_shared(service.url())?
        .connect()
        .await?;
    let seen: Arc<Mutex<Vec<Breach>>> = Arc::default();
    let mut events = ActivationServiceClient::new(channel)
        .subscribe(SubscribeRequest {
            from: Some(SubscribeFrom {
                event_types: vec!["SlaBreached".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
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
                    seen.lock()
                        .map(|mut s| {
                            s.push(Breach {
                                lead: event.aggregate_id,
                                occurred,
                                observed,
                            });
                        })
                        .ok();
                }
            }
        }
    });
    tokio::time::sleep(SETTLE).await;
    let steady = service.memory()?;
    if Timestamp::now() > band_start {
        eprintln!("timers-sla:   warning: the band started before the steady reading");
    }
    eprintln!(
        "timers-sla:   up in {:.0} ms, RSS {:.1} MB; waiting for the band ...",
        up.as_secs_f64() * 1e3,
        steady.rss_mb
    );
    // Until every breach in the band is seen, or a minute after the last deadline.
    let give_up =
        band_start + SignedDuration::try_from(BAND_SPREAD)? + SignedDuration::from_secs(60);
    let mut max_rss = steady.rss_mb;
    loop {
        let count = seen.lock().map(|s| s.len()).unwrap_or(0);
        if count >= band || Timestamp::now() > give_up {
            break;
        }
        if let Ok(m) = service.memory() {
            max_rss = max_rss.max(m.rss_mb);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = service.memory()?;
    let checkpoints_during = checkpoints().await? - checkpoints_before;
    service.stop();
    watch.abort();

    // What the breaches left in the database.
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_type, COUNT(*) FROM event_log GROUP BY event_type ORDER BY 1")
            .fetch_all(&pool)
            .await?;
    let breached: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM activations WHERE record LIKE '%\"breaches\":1%'")
            .fetch_one(&pool)
            .await?;
    let open_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timers")
        .fetch_one(&pool)
        .await?;
    let timers_table = table_stats(full_url, "timers").await?;
    pool.close().await;
    db.close().await;

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut by_subscriber = Vec::new();
    let mut by_event = Vec::new();
    for breach in &seen {
        if let Some(deadline) = deadlines.get(&breach.lead) {
            by_subscriber.push(ms(breach.observed.duration_since(*deadline)));
            if let Some(occurred) = breach.occurred {
                by_event.push(ms(occurred.duration_since(*deadline)));
            }
        }
    }
    by_subscriber.sort_by(f64::total_cmp);
    by_event.sort_by(f64::total_cmp);
    let missing = band.saturating_sub(by_subscriber.len());
    let event_summary = counts
        .iter()
        .map(|(t, n)| format!("{n} {}", t.rsplit('.').next().unwrap_or(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let verified = format!(
        "{} of {band} band breaches seen{}; log: {event_summary}; {breached} activations with a breach; {open_after} timers open after",
        by_subscriber.len(),
        if missing > 0 { " (MISSING SOME!)" } else { "" },
    );
    let lateness = |name: &str, sorted: &[f64], p: f64, note: String| Row {
        name: name.to_owned(),
        value: pct(sorted, p),
        unit: "ms".into(),
        baseline_name: "target p99 (issue)".into(),
        baseline: TARGET_LATENESS_P99_MS,
        ratio: pct(sorted, p) / TARGET_LATENESS_P99_MS,
        note,
    };
    let k = |n: usize| format!("{}k", n / 1000);
    Ok(vec![
        Row {
            name: format!("activation RSS, {} open SLA timers", k(open)),
            value: steady.rss_mb,
            unit: "MB".into(),
            baseline_name: "same binary, 0 open timers".into(),
            baseline: empty_mem.rss_mb,
            ratio: steady.rss_mb / empty_mem.rss_mb,
            note: format!(
                "target <= {TARGET_RSS_MB} MB; VmRSS {} s after start; up in {:.0} ms with {timer_count} timers \
                 (vs {:.0} ms on the empty database, migrations included); seeding took {:.0} s",
                SETTLE.as_secs(),
                up.as_secs_f64() * 1e3,
                empty_mem.up_ms,
                seeding.as_secs_f64(),
            ),
        },
        Row {
            name: format!("activation peak RSS (VmHWM), {} + band", k(open)),
            value: end.hwm_mb,
            unit: "MB".into(),
            baseline_name: "same binary peak, 0 open timers".into(),
            baseline: empty_mem.hwm_mb,
            ratio: end.hwm_mb / empty_mem.hwm_mb,
            note: format!(
                "largest sampled VmRSS during the band {max_rss:.1} MB; timers table after: {timers_table}"
            ),
        },
        lateness(
            &format!("SLA breach lateness p50, subscriber ({band})"),
            &by_subscriber,
            0.5,
            String::new(),
        ),
        lateness(
            &format!("SLA breach lateness p99, subscriber ({band})"),
            &by_subscriber,
            0.99,
            format!(
                "Subscribe(SlaBreached) arrival - deadline; max {:.1} ms; {verified}; \
                 {checkpoints_during} PostgreSQL checkpoints during the run",
                pct(&by_subscriber, 1.0)
            ),
        ),
        lateness(
            "SLA breach lateness p50, event occurred_at",
            &by_event,
            0.5,
            String::new(),
        ),
        lateness(
            "SLA breach lateness p99, event occurred_at",
            &by_event,
            0.99,
            format!(
                "SlaBreached.occurred_at (the breach transaction's clock) - deadline; max {:.1} ms",
                pct(&by_event, 1.0)
            ),
        ),
    ])
}

/// The activation binary on `database_url`.
fn spawn(
    args: &Args,
    bin: &Path,
    dir: &Path,
    label: &str,
    database_url: &str,
    playbook: &Path,
    intake_url: &str,
) -> anyhow::Result<Service> {
    let playbook = playbook.to_string_lossy();
    Service::spawn(
        args,
        Kind::Activation,
        bin,
        dir,
        label,
        database_url,
        &[
            ("FAIRCHANCE_PLAYBOOK", playbook.as_ref()),
            ("FAIRCHANCE_INTAKE_URL", intake_url),
        ],
    )
}

#[derive(Debug, Clone)]
struct Breach {
    lead: String,
    occurred: Option<Timestamp>,
    observed: Timestamp,
}

/// The activation row activation writes for a lead assigned to owner `a` or `b`, as JSON
/// templates made by activation's own types, with placeholders the seeding SQL replaces per row.
struct Template {
    /// Owner `a`'s record, then owner `b`'s.
    records: [String; 2],
    context: Vec<u8>,
}

const LEAD_PLACEHOLDER: uuid::Uuid = uuid::Uuid::from_u128(0xbeefbeef_beef_7eef_beef_beefbeefbeef);
const RECEIVED_PLACEHOLDER: &str = "2001-02-03T04:05:06Z";
const DEADLINE_PLACEHOLDER: &str = "2002-03-04T05:06:07Z";

impl Template {
    fn build() -> anyhow::Result<Self> {
        use activation::domain::{OwnerId, TeamId};
        use activation::record::{ActivationRecord, State};
        let playbook: activation::playbook::ActivationPlaybook =
            runtime::playbook::parse("bench playbook", PLAYBOOK)?;
        let input =
            intake::convert::lead_input_to_proto(&crate::intake_bench::sample_lead("sla", 7));
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
        let (facts, packet) = activation::intake_events::from_accepted(&accepted)?;
        let received: Timestamp = RECEIVED_PLACEHOLDER.parse()?;
        let deadline: Timestamp = DEADLINE_PLACEHOLDER.parse()?;
        let queued = ActivationRecord {
            lead: LEAD_PLACEHOLDER,
            state: State::Queued,
            team: TeamId("sales".into()),
            owner: None,
            routed_by: "default team".into(),
            sla_policy: "all".into(),
            received_at: received,
            window_started_at: received,
            assigned_at: None,
            deadline,
            waiting_cause: None,
            breaches: 0,
            reassignments: 0,
            previous_owners: Vec::new(),
            activated_at: None,
            within_sla: false,
            time_to_activation: None,
            plan: activation::domain::first_action::plan_first_action(&facts, &playbook),
            facts,
            owner_timezone: String::new(),
            manager: None,
        };
        let mut records = [String::new(), String::new()];
        for (slot, owner) in records.iter_mut().zip(["a", "b"]) {
            let mut record = queued.clone();
            record.assign(&playbook, OwnerId(owner.into()), received);
            let json = serde_json::to_string(&record)?;
            // Each placeholder must stand for exactly the fields it is meant to.
            for (placeholder, expected) in [
                (format!("\"{RECEIVED_PLACEHOLDER}\""), 3),
                (format!("\"{DEADLINE_PLACEHOLDER}\""), 1),
            ] {
                let found = json.matches(&placeholder).count();
                anyhow::ensure!(
                    found == expected,
                    "record template: {placeholder} found {found} times, expected {expected}: {json}"
                );
            }
            *slot = json;
        }
        Ok(Self {
            records,
            context: packet.encode_to_vec(),
        })
    }
}

/// Inserts an assigned activation and its SLA timer per deadline (owners `a` and `b` in
/// turn), two connections in parallel; returns the lead ids in the order of `deadlines`.
/// Triggers are off (the owner-load counts are written by [`finish_seed`]).
async fn seed(url: &str, template: &Template, deadlines: &[i64]) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = deadlines
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let sql = format!(
        "WITH s AS ( \
           SELECT u.lead_id, u.timer_id, u.deadline, u.deadline - $4::bigint AS received, \
                  CASE WHEN u.n % 2 = 0 THEN 'a' ELSE 'b' END AS owner \
           FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(lead_id, timer_id, deadline, n) \
         ), a AS ( \
           INSERT INTO activations (lead_id, state, team_id, owner_id, deadline, received_at, record, context) \
           SELECT s.lead_id, 'assigned', 'sales', s.owner, s.deadline, s.received, \
                  replace(replace(replace(CASE WHEN s.owner = 'a' THEN $5::text ELSE $6::text END, \
                                          $7::text, s.lead_id), $8::text, {received}), $9::text, {deadline}), \
                  $10::bytea \
           FROM s \
         ) \
         INSERT INTO timers (timer_id, kind, subject, due_at, payload) \
         SELECT s.timer_id, '{kind}', s.lead_id, s.deadline, ''::bytea FROM s",
        received = iso("s.received"),
        deadline = iso("s.deadline"),
        kind = activation::service::SLA_TIMER,
    );
    let work: Vec<(usize, usize)> = (0..deadlines.len())
        .step_by(SEED_CHUNK)
        .map(|start| (start, (start + SEED_CHUNK).min(deadlines.len())))
        .collect();
    let work = Arc::new(Mutex::new(work));
    let ids = Arc::new(ids);
    let deadlines = Arc::new(deadlines.to_vec());
    let template = Arc::new((template.records.clone(), template.context.clone()));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (work, ids, deadlines, template, sql, url) = (
            work.clone(),
            ids.clone(),
            deadlines.clone(),
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
                let timer_ids: Vec<String> = (start..end)
                    .map(|_| uuid::Uuid::now_v7().to_string())
                    .collect();
                sqlx::query(&sql)
                    .bind(&ids[start..end])
                    .bind(&timer_ids)
                    .bind(&deadlines[start..end])
                    .bind(WINDOW.as_micros() as i64)
                    .bind(template.0[0].as_str())
                    .bind(template.0[1].as_str())
                    .bind(LEAD_PLACEHOLDER.to_string())
                    .bind(RECEIVED_PLACEHOLDER)
                    .bind(DEADLINE_PLACEHOLDER)
                    .bind(template.1.as_slice())
                    .execute(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(Arc::try_unwrap(ids).unwrap_or_else(|ids| (*ids).clone()))
}

/// The owner-load counts activation's trigger keeps (it was off while seeding).
async fn finish_seed(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO owner_load (owner_id, open) \
         SELECT owner_id, COUNT(*) FROM activations WHERE state = 'assigned' AND owner_id <> '' GROUP BY owner_id \
         ON CONFLICT (owner_id) DO UPDATE SET open = excluded.open",
    )
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE owner_load").execute(pool).await?;
    Ok(())
}

/// Reads a seeded row back through activation's own store, so a template that no longer
/// matches the record fails here rather than in the service.
async fn check_seeded(db: &Db, lead: &str) -> anyhow::Result<()> {
    let lead: uuid::Uuid = lead.parse()?;
    let (record, context) = activation::store::Store::new(db.clone())
        .load(lead)
        .await?
        .context("a seeded activation is missing")?;
    anyhow::ensure!(record.lead == lead && record.plan.context_ref == lead.to_string());
    anyhow::ensure!(record.received_at.duration_until(record.deadline) == WINDOW);
    proto::activation::v1::ContextPacket::decode(context.as_slice())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Dispatch rate: runtime timers against raw SKIP LOCKED claim-and-complete
// ---------------------------------------------------------------------------------------

async fn dispatch(args: &Args) -> anyhow::Result<Vec<Row>> {
    let bench = BenchDb::create(&args.postgres).await?;
    let result = measure_dispatch(args, &bench.url).await;
    bench.drop().await;
    result
}

/// The same, with each row's effect (a row in `raw_fired`) written by the same statement.
const RAW_CLAIM_COMPLETE_RECORD: &str = "WITH c AS (SELECT timer_id FROM raw_timers WHERE due_at <= $1 \
     ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
     d AS (DELETE FROM raw_timers t USING c WHERE t.timer_id = c.timer_id RETURNING t.subject) \
     INSERT INTO raw_fired (subject) SELECT subject FROM d";

async fn measure_dispatch(args: &Args, url: &str) -> anyhow::Result<Vec<Row>> {
    let n = args.dispatch_rows;
    let k = args.dispatch_workers.max(1);
    let admin = PgPoolOptions::new().max_connections(2).connect(url).await?;
    create_raw_table(&admin).await?;
    for ddl in [
        "CREATE TABLE raw_fired (seq BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL)",
        "CREATE TABLE fired (seq BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&admin).await?;
    }

    // Raw: every row due, claimed and deleted 500 at a time by K workers.
    eprintln!("timers-dispatch: raw SKIP LOCKED claim+complete of {n} due rows, {k} workers ...");
    seed_raw(&admin, n).await?;
    let (raw_done, raw_rate) = raw_loop(url, k, RAW_CLAIM_COMPLETE).await?;
    let raw_table = table_stats(url, "raw_timers").await?;
    eprintln!("timers-dispatch:   {raw_rate:.0} rows/s ({raw_done} rows); table {raw_table}");
    eprintln!("timers-dispatch: raw claim+complete+record, the effect in the same statement ...");
    seed_raw(&admin, n).await?;
    let (effect_done, effect_rate) = raw_loop(url, k, RAW_CLAIM_COMPLETE_RECORD).await?;
    eprintln!("timers-dispatch:   {effect_rate:.0} rows/s ({effect_done} rows)");

    // Runtime: schedule N due timers (K schedulers, 500 per transaction), then K replicas fire.
    eprintln!("timers-dispatch: runtime Timers: scheduling {n} due timers ...");
    let db = Db::connect(url, args.pool).await?;
    db.migrate(&RUNTIME_MIGRATIONS).await?;
    let due = Timestamp::now() - SignedDuration::from_secs(1);
    let started = Instant::now();
    let schedulers: Vec<_> = (0..k)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let mine: Vec<usize> = (w..n).step_by(k).collect();
                for chunk in mine.chunks(SCHEDULE_BATCH) {
                    let mut tx = db.begin().await?;
                    for &i in chunk {
                        let timer = NewTimer {
                            kind: "bench_step".into(),
                            subject: format!("s{i}"),
                            due_at: due - SignedDuration::from_micros(i as i64),
                            payload: Vec::new(),
                        };
                        Timers::schedule(&mut tx, &timer).await?;
                    }
                    tx.commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for s in schedulers {
        s.await??;
    }
    let schedule_rate = n as f64 / started.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE timers").execute(&admin).await?;
    eprintln!(
        "timers-dispatch:   scheduled at {schedule_rate:.0}/s; firing with {k} Timers replicas ..."
    );
    let (fired, rate) = drain(k, |_| {
        let timers = Timers::new(db.clone());
        move || {
            let timers = timers.clone();
            async move { Ok(timers.fire_due(Timestamp::now(), &RecordFiring).await? as u64) }
        }
    })
    .await?;
    db.close().await;
    let runtime_table = table_stats(url, "timers").await?;
    eprintln!("timers-dispatch:   {rate:.0} steps/s ({fired} fired); table {runtime_table}");
    let (recorded, raw_recorded, left): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM fired), (SELECT COUNT(*) FROM raw_fired), (SELECT COUNT(*) FROM timers)",
    )
    .fetch_one(&admin)
    .await?;
    admin.close().await;

    let all = [recorded, raw_recorded, raw_done as i64, effect_done as i64];
    let check = if all.iter().all(|&c| c == n as i64) && left == 0 {
        String::new()
    } else {
        format!(
            "; MISMATCH: {recorded} fired, {raw_done} raw, {effect_done}/{raw_recorded} raw+record of {n}, {left} left!"
        )
    };
    Ok(vec![
        Row {
            name: format!("runtime timers dispatch ({k} replicas)"),
            value: rate,
            unit: "steps/s".into(),
            baseline_name: format!("raw SKIP LOCKED claim+complete ({RAW_BATCH}/stmt)"),
            baseline: raw_rate,
            ratio: rate / raw_rate,
            note: format!(
                "{n} due rows each, {k} concurrent claimers; Timers::fire_due takes the default chunk of \
                 due timers per transaction and fires them one by one (the handler's insert into \
                 `fired`, a statement per timer); scheduling them ran at {schedule_rate:.0}/s ({SCHEDULE_BATCH} per transaction){check}"
            ),
        },
        Row {
            name: "raw claim+complete+record effect, batched".into(),
            value: effect_rate,
            unit: "rows/s".into(),
            baseline_name: format!("raw SKIP LOCKED claim+complete ({RAW_BATCH}/stmt)"),
            baseline: raw_rate,
            ratio: effect_rate / raw_rate,
            note: "one statement per 500: claim, delete and insert each row's effect: the ceiling \
                   for a dispatcher that completes a whole batch in one transaction"
                .into(),
        },
        Row {
            name: format!("timers table after {}k fired (runtime)", n / 1000),
            value: runtime_table.mb(),
            unit: "MB".into(),
            baseline_name: "raw table after the same churn".into(),
            baseline: raw_table.mb(),
            ratio: runtime_table.mb() / raw_table.mb(),
            note: format!(
                "pg_total_relation_size, pg_stat_user_tables before any vacuum, table empty: runtime {runtime_table}; \
                 raw {raw_table}"
            ),
        },
    ])
}

/// Records each firing in the transaction that completes the timer.
struct RecordFiring;

impl TimerHandler for RecordFiring {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO fired (subject) VALUES ($1)")
            .bind(timer.subject.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
