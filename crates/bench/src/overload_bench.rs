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
//! run.
//!
//! The load generator runs on the same machine. Left to share the CPUs, it takes from the
//! server the CPU that ten times the load costs to send, and the figures measure the machine
//! rather than the service; so by default ([`CpuSplit`]) intake and PostgreSQL get every CPU
//! but the first and the generator gets that one, for the sustainable run as for the overload,
//! as if the load came from another machine. The note says how much of the offered load the
//! generator managed to send.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use intake::convert::lead_input_to_proto;
use prost::Message;
use proto::intake::v1 as pb;
use tokio::sync::mpsc;
use tonic::codegen::{Bytes, http};

use crate::common::{CpuSplit, Kind, Service, pct};
use crate::intake_bench::sample_lead;
use crate::{Args, Row};

/// HTTP/2 connections the load is spread over.
const CHANNELS: usize = 8;
/// Longest a single call may take before the client gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const SUBMIT_LEAD: &str = "/fairchance.intake.v1.IntakeService/SubmitLead";

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Admitted,
    Shed,
    /// Any other error (a timeout included): the service neither served nor refused cleanly.
    Failed,
}

/// gRPC status codes the outcome depends on.
const OK: i32 = 0;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;

/// A `SubmitLead` request for lead `n` of caller `tag`, framed for the wire (the gRPC
/// length-prefixed message).
fn framed_request(tag: &str, n: usize) -> Bytes {
    let request = pb::SubmitLeadRequest {
        lead: Some(lead_input_to_proto(&sample_lead(tag, n))),
        idempotency_key: String::new(),
    };
    let len = request.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    request.encode_raw(&mut frame);
    Bytes::from(frame)
}

/// The load generator's client: gRPC unary calls on bare HTTP/2. Requests are framed before the
/// clock starts, so a call costs the generator little more than its frames and one CPU can
/// offer ten times what intake sustains. tonic's client encodes, buffers and hops tasks for
/// every call: on one CPU it could not send that fast, and the calls it queued would count
/// against the service as slow refusals and timeouts.
#[derive(Clone)]
struct Connection {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            send,
            uri: format!("http://{addr}{SUBMIT_LEAD}").parse()?,
        })
    }

    async fn submit(&self, request: Bytes) -> (Outcome, Duration) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, self.call(request)).await {
            Ok(Ok(OK)) => Outcome::Admitted,
            Ok(Ok(RESOURCE_EXHAUSTED | UNAVAILABLE)) => Outcome::Shed,
            Ok(Ok(_) | Err(_)) | Err(_) => Outcome::Failed,
        };
        (outcome, started.elapsed())
    }

    /// The call's gRPC status code.
    async fn call(&self, body: Bytes) -> anyhow::Result<i32> {
        let request = http::Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", CALL_TIMEOUT.as_millis()))
            .body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(body, true)?;
        let response = response.await?;
        // A refusal is trailers-only: its status comes with the headers.
        if let Some(code) = grpc_status(response.headers()) {
            return Ok(code);
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        grpc_status(&trailers).ok_or_else(|| anyhow::anyhow!("the response has no grpc-status"))
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
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

/// `tasks` callers, each sending its next call when the last one answered. `run` tells the
/// leads of one run from another's: a lead sent again would be a merge, not a new lead.
async fn closed_loop(
    channels: &[Connection],
    run: &'static str,
    tasks: usize,
    duration: Duration,
) -> Tally {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let channel = channels[t % channels.len()].clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    done.push(
                        channel
                            .submit(framed_request(&format!("{run}{t}"), n))
                            .await,
                    );
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
/// one to end. Returns the tally and how many calls were started. Every request is framed
/// before the first is sent.
async fn open_loop(channels: &[Connection], rate: f64, duration: Duration) -> (Tally, usize) {
    let total = (rate * duration.as_secs_f64()).ceil() as usize;
    let mut requests: Vec<Bytes> = (0..total).map(|n| framed_request("o", n)).collect();
    requests.reverse();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < duration {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due {
            let Some(request) = requests.pop() else { break };
            let channel = channels[sent % channels.len()].clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send(channel.submit(request).await);
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
    let split = if args.overload_split_cpus {
        // Without the right to move PostgreSQL, measure anyway: the note says how.
        CpuSplit::new()
            .inspect_err(|error| {
                eprintln!("overload: not splitting the CPUs ({error:#}); the generator shares them")
            })
            .ok()
    } else {
        None
    };
    let mut service = Service::spawn_on(
        split.as_ref().map(CpuSplit::service_cpus),
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
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        channels.push(Connection::open(service.addr()).await?);
    }

    // Warm up, then the sustainable rate: half the limit in flight, nothing refused.
    closed_loop(&channels, "w", limit / 2, Duration::from_secs(1)).await;
    let sustained = closed_loop(&channels, "s", limit / 2, args.duration).await;
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
    let arrangement = match &split {
        Some(split) => format!(
            "intake and PostgreSQL on CPUs {}, the generator on CPU 0",
            split.service_cpus()
        ),
        None => "intake, PostgreSQL and the generator sharing every CPU".to_owned(),
    };
    drop(split);

    let sent_rate = sent as f64 / args.duration.as_secs_f64();
    let shed_share = overloaded.shed.len() as f64 / overloaded.total().max(1) as f64;
    let note = format!(
        "{arrangement}; limit {limit} in flight; offered {:.0}/s ({}x the sustained {:.0}/s), the generator sent {:.0}/s; \
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
