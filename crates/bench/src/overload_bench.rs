//! Overload: intake, as deployed (its own process, a concurrency limit), offered ten times the
//! rate it sustains. What a service should do then is refuse the excess at once
//! (RESOURCE_EXHAUSTED or UNAVAILABLE, which clients retry elsewhere or later) and keep serving
//! what it admits as fast as before, in bounded memory, rather than queue everything and time
//! out for everyone.
//!
//! The sustainable rate is measured first, in the same run: a closed loop at half the
//! concurrency limit (every call admitted). Then an open loop offers `--overload-factor` times
//! that rate for the same time, whatever the answers. Figures: the admitted calls' throughput
//! and p99 next to the sustainable run's, how fast the excess is refused (p99) next to an
//! admitted call's p50, and the server's peak memory next to its memory after the sustainable
//! run. The load generator runs on the same machine and takes CPU from the server; the note
//! says how much of the offered load it managed to send.

use std::time::{Duration, Instant};

use intake::convert::lead_input_to_proto;
use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Kind, Service, pct};
use crate::intake_bench::sample_lead;
use crate::{Args, Row};

/// HTTP/2 connections the load is spread over.
const CHANNELS: usize = 8;
/// Longest a single call may take before the client gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Admitted,
    Shed,
    /// Any other error (a timeout included): the service neither served nor refused cleanly.
    Failed,
}

fn outcome(result: &Result<tonic::Response<pb::SubmitLeadResponse>, tonic::Status>) -> Outcome {
    match result {
        Ok(_) => Outcome::Admitted,
        Err(status) if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) => {
            Outcome::Shed
        }
        Err(_) => Outcome::Failed,
    }
}

async fn submit(channel: Channel, tag: String, n: usize) -> (Outcome, Duration) {
    let mut client = IntakeServiceClient::new(channel);
    let lead = lead_input_to_proto(&sample_lead(&tag, n));
    let mut request = tonic::Request::new(pb::SubmitLeadRequest {
        lead: Some(lead),
        idempotency_key: String::new(),
    });
    request.set_timeout(CALL_TIMEOUT);
    let started = Instant::now();
    let result = client.submit_lead(request).await;
    (outcome(&result), started.elapsed())
}

/// Calls and their latencies (ms) by outcome, over `elapsed`.
#[derive(Debug, Default)]
struct Tally {
    admitted: Vec<f64>,
    shed: Vec<f64>,
    failed: usize,
    elapsed: f64,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, latency: Duration) {
        let ms = latency.as_secs_f64() * 1e3;
        match outcome {
            Outcome::Admitted => self.admitted.push(ms),
            Outcome::Shed => self.shed.push(ms),
            Outcome::Failed => self.failed += 1,
        }
    }

    fn finish(mut self, elapsed: Duration) -> Self {
        self.admitted.sort_by(f64::total_cmp);
        self.shed.sort_by(f64::total_cmp);
        self.elapsed = elapsed.as_secs_f64();
        self
    }

    fn admitted_rate(&self) -> f64 {
        self.admitted.len() as f64 / self.elapsed
    }

    fn total(&self) -> usize {
        self.admitted.len() + self.shed.len() + self.failed
    }
}

/// `tasks` callers, each sending its next call when the last one answered.
async fn closed_loop(channels: &[Channel], tasks: usize, duration: Duration) -> Tally {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let channel = channels[t % channels.len()].clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    done.push(submit(channel.clone(), format!("s{t}"), n).await);
                    n += 1;
                }
                done
            })
        })
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        for (outcome, latency) in handle.await.unwrap_or_default() {
            tally.add(outcome, latency);
        }
    }
    tally.finish(started.elapsed())
}

/// Calls started at `rate` per second for `duration`, whatever the answers; waits for every
/// one to end. Returns the tally and how many calls were started.
async fn open_loop(channels: &[Channel], rate: f64, duration: Duration) -> (Tally, usize) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while sent < due {
            let channel = channels[sent % channels.len()].clone();
            let done = done_tx.clone();
            let n = sent;
            tokio::spawn(async move {
                let _ = done.send(submit(channel, "o".into(), n).await);
            });
            sent += 1;
        }
    }
    drop(done_tx);
    let mut tally = Tally::default();
    while let Some((outcome, latency)) = done_rx.recv().await {
        tally.add(outcome, latency);
    }
    (tally.finish(started.elapsed()), sent)
}

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let db = crate::BenchDb::create(&args.postgres).await?;
    let result = measure(args, &db.url).await;
    db.drop().await;
    result
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<Vec<Row>> {
    let bin = Kind::Intake.locate(None, "overload")?;
    let dir = tempfile::tempdir()?;
    let limit = args.overload_limit;
    let mut service = Service::spawn(
        args,
        Kind::Intake,
        &bin,
        dir.path(),
        "overload",
        url,
        &[
            ("FAIRCHANCE_CONCURRENCY_LIMIT", &limit.to_string()),
            ("FAIRCHANCE_MIGRATE_ON_START", "true"),
        ],
    )?;
    service.wait_ready().await?;
    let endpoint = tonic::transport::Endpoint::from_shared(service.url())?;
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        channels.push(endpoint.connect().await?);
    }

    // Warm up, then the sustainable rate: half the limit in flight, nothing refused.
    closed_loop(&channels, limit / 2, Duration::from_secs(1)).await;
    let sustained = closed_loop(&channels, limit / 2, args.duration).await;
    let memory_sustained = service.memory()?.rss_mb;
    anyhow::ensure!(
        !sustained.admitted.is_empty(),
        "overload: no call was admitted in the sustainable run ({} failed)",
        sustained.failed
    );

    let rate = sustained.admitted_rate();
    let offered = rate * args.overload_factor;
    let (overloaded, sent) = open_loop(&channels, offered, args.duration).await;
    let memory_peak = service.memory()?.hwm_mb;
    let (warnings, _) = service.warnings();
    service.stop();

    let sent_rate = sent as f64 / args.duration.as_secs_f64();
    let shed_share = overloaded.shed.len() as f64 / overloaded.total().max(1) as f64;
    let note = format!(
        "limit {limit} in flight; offered {:.0}/s ({}x the sustained {:.0}/s), the generator sent {:.0}/s; \
         {} admitted, {} shed ({:.0}%), {} failed otherwise; {warnings} warning lines",
        offered,
        args.overload_factor,
        rate,
        sent_rate,
        overloaded.admitted.len(),
        overloaded.shed.len(),
        shed_share * 100.0,
        overloaded.failed,
    );
    let row = |name: &str, value: f64, unit: &str, baseline_name: &str, baseline: f64| Row {
        name: name.into(),
        value,
        unit: unit.into(),
        baseline_name: baseline_name.into(),
        baseline,
        ratio: value / baseline,
        note: String::new(),
    };
    let mut rows = vec![
        row(
            "overload: admitted calls/s",
            overloaded.admitted_rate(),
            "calls/s",
            "sustainable run, calls/s",
            rate,
        ),
        row(
            "overload: admitted p99",
            pct(&overloaded.admitted, 0.99),
            "ms",
            "sustainable run p99",
            pct(&sustained.admitted, 0.99),
        ),
        row(
            "overload: refusal p99",
            pct(&overloaded.shed, 0.99),
            "ms",
            "sustainable run p50",
            pct(&sustained.admitted, 0.5),
        ),
        row(
            "overload: server peak RSS",
            memory_peak,
            "MB",
            "RSS after the sustainable run",
            memory_sustained,
        ),
    ];
    rows[0].note = note;
    Ok(rows)
}
