//! Intake: unary `SubmitLead` at N concurrent calls and streaming `SubmitLeads`, each next to
//! the raw rate of what it must at least do, a lead row plus an outbox row per transaction,
//! written straight to PostgreSQL by the same process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use intake::IntakeService;
use intake::convert::lead_input_to_proto;
use intake::domain::{IntentKind, IntentStrength, LeadInput};
use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::pii::Pii;
use runtime::service::{ServiceContext, ServiceSpec};
use runtime::{Db, SystemClock};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::{Args, Row};

/// Concurrent client streams in the streaming measurement.
const STREAMS: usize = 4;
/// Alternating rounds of baseline and figure; medians are reported.
const ROUNDS: usize = 3;
/// HTTP/2 connections the unary clients share.
const CHANNELS: usize = 4;

pub fn sample_lead(tag: &str, n: usize) -> LeadInput {
    let mut lead = LeadInput::default();
    lead.contact.name = Pii::new(format!("Bench Person {n}"));
    lead.contact.email = Pii::new(format!("person{n}.{tag}@company{}.example.com", n % 97));
    lead.contact.company = format!("Company {}", n % 97);
    lead.contact.title = "Head of Revenue Operations".into();
    lead.contact.country = "DE".into();
    if n.is_multiple_of(2) {
        lead.contact.phone = Pii::new(format!("+49 30 {:07}", 1_000_000 + n % 8_000_000));
    }
    lead.source.source = "website-demo-form".into();
    lead.source.channel = "paid_search".into();
    lead.source.campaign = "q4-demo".into();
    lead.source.landing_page = "https://example.com/demo?utm_source=google".into();
    lead.source.message =
        "We route 2,000 inbound leads a month across 40 reps and miss our SLA.".into();
    lead.source.utm.source = "google".into();
    lead.source.utm.medium = "cpc".into();
    lead.intent.kind = IntentKind::DemoRequest;
    lead.intent.strength = IntentStrength::High;
    lead.attributes.insert("employees".into(), "450".into());
    lead.attributes.insert("industry".into(), "software".into());
    lead
}

struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `work(task, n)` from `tasks` concurrent loops for `duration`; rate and latency.
async fn closed_loop<F, Fut>(tasks: usize, duration: Duration, work: F) -> anyhow::Result<Measured>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (work, stop) = (work.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    work(t, n).await?;
                    latencies.push(t0.elapsed());
                    n += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Ok(Measured {
        rate: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    })
}

/// The raw floor: one lead row and one outbox row per transaction, nothing else.
async fn raw_unary(
    pool: PgPool,
    round: usize,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    closed_loop(tasks, duration, move |t, n| {
        let pool = pool.clone();
        async move {
            let lead = sample_lead(&format!("raw{round}-{t}"), n);
            let input = serde_json::to_string(&lead)?;
            let id = uuid::Uuid::now_v7().to_string();
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO leads (lead_id, contact_key, email, phone, source, received_at, completeness, icp_tier, \
                 do_not_contact, input) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id)
            .bind(format!("email:{}", lead.contact.email.expose()))
            .bind(lead.contact.email.as_str())
            .bind(lead.contact.phone.as_str())
            .bind(&lead.source.source)
            .bind(0_i64)
            .bind(80_i64)
            .bind("A")
            .bind(0_i64)
            .bind(&input)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO event_log (event_id, event_type, aggregate_id, occurred_at, payload, trace_context) \
                 VALUES ($1, $2, $3, $4, $5, '')",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind("fairchance.intake.v1.LeadAccepted")
            .bind(&id)
            .bind(0_i64)
            .bind(input.as_bytes())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}

/// The raw floor for bulk: multi-row inserts of `batch` leads and outbox rows per transaction.
async fn raw_batched(
    pool: PgPool,
    round: usize,
    total: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let per_stream = total / STREAMS;
    let handles: Vec<_> = (0..STREAMS)
        .map(|s| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while n < per_stream {
                    let size = batch.min(per_stream - n);
                    let mut leads = sqlx::QueryBuilder::new(
                        "INSERT INTO leads (lead_id, contact_key, email, phone, source, received_at, completeness, \
                         icp_tier, do_not_contact, input) ",
                    );
                    let rows: Vec<_> = (n..n + size).map(|i| (uuid::Uuid::now_v7().to_string(), sample_lead(&format!("rawb{round}-{s}"), i))).collect();
                    let inputs: Vec<String> = rows.iter().map(|(_, l)| serde_json::to_string(l).unwrap_or_default()).collect();
                    leads.push_values(rows.iter().zip(&inputs), |mut b, ((id, lead), input)| {
                        b.push_bind(id)
                            .push_bind(format!("email:{}", lead.contact.email.expose()))
                            .push_bind(lead.contact.email.as_str())
                            .push_bind(lead.contact.phone.as_str())
                            .push_bind(&lead.source.source)
                            .push_bind(0_i64)
                            .push_bind(80_i64)
                            .push_bind("A")
                            .push_bind(0_i64)
                            .push_bind(input);
                    });
                    let mut events = sqlx::QueryBuilder::new(
                        "INSERT INTO event_log (event_id, event_type, aggregate_id, occurred_at, payload, trace_context) ",
                    );
                    events.push_values(rows.iter().zip(&inputs), |mut b, ((id, _), input)| {
                        b.push_bind(uuid::Uuid::now_v7().to_string())
                            .push_bind("fairchance.intake.v1.LeadAccepted")
                            .push_bind(id)
                            .push_bind(0_i64)
                            .push_bind(input.as_bytes())
                            .push_bind("");
                    });
                    let mut tx = pool.begin().await?;
                    leads.build().execute(&mut *tx).await?;
                    events.build().execute(&mut *tx).await?;
                    tx.commit().await?;
                    n += size;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn unary(
    addr: std::net::SocketAddr,
    round: usize,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let mut channels = Vec::new();
    for _ in 0..CHANNELS {
        channels.push(testkit::channel(addr).await);
    }
    closed_loop(tasks, duration, move |t, n| {
        let mut client = IntakeServiceClient::new(channels[t % CHANNELS].clone());
        async move {
            let lead = lead_input_to_proto(&sample_lead(&format!("u{round}-{t}"), n));
            let response = client
                .submit_lead(pb::SubmitLeadRequest {
                    lead: Some(lead),
                    idempotency_key: String::new(),
                })
                .await?
                .into_inner();
            anyhow::ensure!(
                response.outcome() == pb::SubmitOutcome::Accepted,
                "unexpected outcome {:?}",
                response.outcome()
            );
            Ok(())
        }
    })
    .await
}

async fn streaming(addr: std::net::SocketAddr, round: usize, total: usize) -> anyhow::Result<f64> {
    let per_stream = total / STREAMS;
    // Build the requests first: the figure is intake's rate, not the generator's.
    let batches: Vec<Vec<pb::SubmitLeadsRequest>> = (0..STREAMS)
        .map(|s| {
            (0..per_stream)
                .map(|n| pb::SubmitLeadsRequest {
                    lead: Some(lead_input_to_proto(&sample_lead(
                        &format!("s{round}-{s}"),
                        n,
                    ))),
                    idempotency_key: String::new(),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut handles = Vec::new();
    for items in batches {
        let channel = testkit::channel(addr).await;
        handles.push(tokio::spawn(async move {
            let mut client =
                IntakeServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
            let response = client
                .submit_leads(tokio_stream::iter(items))
                .await?
                .into_inner();
            anyhow::ensure!(
                response.accepted as usize == per_stream,
                "accepted {} of {per_stream}",
                response.accepted
            );
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let db = crate::BenchDb::create(&args.postgres).await?;
    let result = measure(args, &db.url).await;
    db.drop().await;
    result
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<Vec<Row>> {
    let db = Db::connect(url, args.pool).await?;
    db.migrate(IntakeService::migrations()).await?;
    let raw_pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .connect(url)
        .await?;

    let stop = CancellationToken::new();
    let mut config = runtime::config::ServiceConfig::load(
        &runtime::config::Sources::default(),
        &runtime::config::Defaults::service("intake", 0),
    )?;
    config.database_url = url.to_owned();
    config.server.max_message_bytes = 64 * 1024 * 1024;
    let ctx = ServiceContext {
        db: db.clone(),
        config: config.clone(),
        clock: Arc::new(SystemClock),
        shutdown: stop.clone(),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = IntakeService::start(ctx, &mut routes).await?;
    let (listener, addr) = testkit::bind_local().await;
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        runtime::server::serve(listener, routes, health, &config.server, server_stop).await
    });

    // Rounds alternate baseline and figure, so drift (table growth, autovacuum, other load)
    // hits both alike; medians are reported.
    let (mut raw_runs, mut unary_runs, mut raw_bulk_runs, mut stream_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let r = round + 1;
        eprintln!(
            "round {r}/{ROUNDS}: raw lead+outbox transactions, {} concurrent, {:?}",
            args.concurrency, args.duration
        );
        raw_runs.push(raw_unary(raw_pool.clone(), round, args.concurrency, args.duration).await?);
        eprintln!(
            "round {r}/{ROUNDS}: intake SubmitLead, {} concurrent, {:?}",
            args.concurrency, args.duration
        );
        unary_runs.push(unary(addr, round, args.concurrency, args.duration).await?);
        eprintln!(
            "round {r}/{ROUNDS}: raw multi-row batches, {} leads",
            args.stream_leads
        );
        raw_bulk_runs.push(raw_batched(raw_pool.clone(), round, args.stream_leads, 256).await?);
        eprintln!(
            "round {r}/{ROUNDS}: intake SubmitLeads streaming, {} leads",
            args.stream_leads
        );
        stream_runs.push(streaming(addr, round, args.stream_leads).await?);
    }
    stop.cancel();
    let _ = server.await;
    db.close().await;
    raw_pool.close().await;

    let summarize = |runs: &[Measured]| Measured {
        rate: median(runs.iter().map(|m| m.rate)),
        p50_ms: median(runs.iter().map(|m| m.p50_ms)),
        p99_ms: median(runs.iter().map(|m| m.p99_ms)),
    };
    let raw = summarize(&raw_runs);
    let unary = summarize(&unary_runs);
    let raw_bulk = median(raw_bulk_runs.into_iter());
    let stream = median(stream_runs.into_iter());

    let c = args.concurrency;
    Ok(vec![
        Row {
            name: format!("intake SubmitLead throughput ({c} concurrent)"),
            value: unary.rate,
            unit: "leads/s".into(),
            baseline_name: format!("raw lead+outbox tx ({c} concurrent)"),
            baseline: raw.rate,
            ratio: unary.rate / raw.rate,
            note: "target ratio >= 0.7".into(),
        },
        Row {
            name: "intake SubmitLead latency p50".into(),
            value: unary.p50_ms,
            unit: "ms".into(),
            baseline_name: "raw lead+outbox tx p50".into(),
            baseline: raw.p50_ms,
            ratio: unary.p50_ms / raw.p50_ms,
            note: String::new(),
        },
        Row {
            name: "intake SubmitLead latency p99".into(),
            value: unary.p99_ms,
            unit: "ms".into(),
            baseline_name: "raw lead+outbox tx p99".into(),
            baseline: raw.p99_ms,
            ratio: unary.p99_ms / raw.p99_ms,
            note: "target p99 <= 10 ms".into(),
        },
        Row {
            name: format!("intake SubmitLeads streaming ({STREAMS} streams)"),
            value: stream,
            unit: "leads/s".into(),
            baseline_name: "raw multi-row lead+outbox, 256/tx".into(),
            baseline: raw_bulk,
            ratio: stream / raw_bulk,
            note: "target >= 100000 leads/s".into(),
        },
    ])
}
