//! Fan-out: many concurrent `WatchActivations` subscribers on one activation server (the real
//! binary, so the memory measured is the server's alone) next to a single subscriber in the
//! same run. Each round starts fresh databases and measures two things: how fast every
//! subscriber replays a backlog of assignments (events/s delivered per subscriber), and how
//! long a live assignment takes to reach each subscriber at a steady submission rate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intake::convert::lead_input_to_proto;
use proto::activation::v1::WatchActivationsRequest;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tokio::sync::watch;

use crate::common::{Intake, Kind, Service};
use crate::intake_bench::{percentile, sample_lead};
use crate::{Args, BenchDb, Row};

/// Live submissions per second while every subscriber is connected.
const RATE: u64 = 200;
/// How long live leads are submitted.
const SECONDS: u64 = 10;

/// What one round measured.
struct Round {
    /// Backlog events each subscriber received per second of its replay, mean over subscribers.
    replay_rate: f64,
    /// The slowest subscriber's replay rate.
    slowest_rate: f64,
    /// Submission to arrival of `LeadAssigned`, over every (subscriber, lead) pair, sorted.
    latencies: Vec<Duration>,
    /// Live (subscriber, lead) pairs never delivered.
    missing: usize,
    /// The server's resident memory, the highest sample while subscribers were connected.
    rss_mb: f64,
}

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    if !args.runs("fanout") {
        return Ok(Vec::new());
    }
    let bin = Kind::Activation.locate(args.activation_bin.as_deref(), "fanout")?;
    let dir = tempfile::tempdir()?;
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, crate::activation_bench::PLAYBOOK)?;
    let n = args.fanout_subscribers;
    let one = round(args, &bin, dir.path(), &playbook, 1).await?;
    let many = round(args, &bin, dir.path(), &playbook, n).await?;
    let ms = |r: &Round, p: f64| percentile(&r.latencies, p);
    let delivered = |r: &Round| {
        if r.missing == 0 {
            String::new()
        } else {
            format!("; {} live deliveries missing!", r.missing)
        }
    };
    Ok(vec![
        Row {
            name: format!("fan-out replay, events/s per subscriber ({n} subs)"),
            value: many.replay_rate,
            unit: "events/s".into(),
            baseline_name: "same, 1 subscriber".into(),
            baseline: one.replay_rate,
            ratio: many.replay_rate / one.replay_rate,
            note: format!(
                "{} LeadAssigned replayed from cursor 0 by every subscriber at once; slowest of {n}: {:.0}/s (aggregate {:.0}/s)",
                args.fanout_backlog,
                many.slowest_rate,
                many.replay_rate * n as f64
            ),
        },
        Row {
            name: format!("fan-out live delivery p50 ({n} subs, {RATE}/s)"),
            value: ms(&many, 0.5),
            unit: "ms".into(),
            baseline_name: "same, 1 subscriber".into(),
            baseline: ms(&one, 0.5),
            ratio: ms(&many, 0.5) / ms(&one, 0.5),
            note: String::new(),
        },
        Row {
            name: format!("fan-out live delivery p99 ({n} subs, {RATE}/s)"),
            value: ms(&many, 0.99),
            unit: "ms".into(),
            baseline_name: "same, 1 subscriber".into(),
            baseline: ms(&one, 0.99),
            ratio: ms(&many, 0.99) / ms(&one, 0.99),
            note: format!(
                "SubmitLead sent -> LeadAssigned seen on WatchActivations, every subscriber{}{}",
                delivered(&many),
                delivered(&one)
            ),
        },
        Row {
            name: format!("fan-out activation server RSS ({n} subs)"),
            value: many.rss_mb,
            unit: "MB".into(),
            baseline_name: "same, 1 subscriber".into(),
            baseline: one.rss_mb,
            ratio: many.rss_mb / one.rss_mb,
            note: "highest VmRSS sampled while the subscribers were connected".into(),
        },
    ])
}

async fn round(
    args: &Args,
    bin: &Path,
    dir: &Path,
    playbook: &Path,
    subscribers: usize,
) -> anyhow::Result<Round> {
    let intake_db = BenchDb::create(&args.postgres).await?;
    let activation_db = BenchDb::create(&args.postgres).await?;
    let result = async {
        let intake = Intake::start(args, &intake_db.url, playbook).await?;
        let playbook = playbook.to_string_lossy();
        let service = Service::spawn(
            args,
            Kind::Activation,
            bin,
            dir,
            &format!("fanout-{subscribers}"),
            &activation_db.url,
            &[
                ("FAIRCHANCE_PLAYBOOK", playbook.as_ref()),
                ("FAIRCHANCE_INTAKE_URL", intake.url.as_str()),
            ],
        );
        let result = match service {
            Ok(mut service) => {
                let result = match service.wait_ready().await {
                    Ok(_) => measure(args, &intake.url, &service, subscribers).await,
                    Err(e) => Err(e),
                };
                service.stop();
                result
            }
            Err(e) => Err(e),
        };
        intake.stop().await;
        result
    }
    .await;
    intake_db.drop().await;
    activation_db.drop().await;
    result
}

/// Lead id to when a subscriber saw it assigned.
type Seen = HashMap<String, Instant>;

async fn measure(
    args: &Args,
    intake_url: &str,
    service: &Service,
    subscribers: usize,
) -> anyhow::Result<Round> {
    let intake = tonic::transport::Endpoint::from_shared(intake_url.to_owned())?
        .connect()
        .await?;
    let backlog = args.fanout_backlog;
    eprintln!("fanout ({subscribers} subs): {backlog} leads for the backlog ...");
    let items: Vec<ipb::SubmitLeadsRequest> = (0..backlog)
        .map(|n| ipb::SubmitLeadsRequest {
            lead: Some(lead_input_to_proto(&sample_lead(
                &format!("fan{subscribers}b"),
                n,
            ))),
            idempotency_key: String::new(),
        })
        .collect();
    let accepted = IntakeServiceClient::new(intake.clone())
        .max_decoding_message_size(256 * 1024 * 1024)
        .submit_leads(tokio_stream::iter(items))
        .await?
        .into_inner()
        .accepted as usize;
    anyhow::ensure!(
        accepted == backlog,
        "intake accepted {accepted} of {backlog}"
    );

    // Wait until activation has assigned the whole backlog, so the replay reads a finished log.
    let endpoint = tonic::transport::Endpoint::from_shared(service.url())?;
    let mut probe = ActivationServiceClient::new(endpoint.connect().await?)
        .watch_activations(WatchActivationsRequest::default())
        .await?
        .into_inner();
    let mut assigned = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while assigned < backlog {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {assigned} of {backlog} assigned after 300 s"
        );
        match tokio::time::timeout(Duration::from_secs(30), probe.message()).await {
            Ok(Ok(Some(update))) if update.event_type == "LeadAssigned" => assigned += 1,
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => anyhow::bail!("the activation stream ended"),
            Ok(Err(status)) => anyhow::bail!("watching activations: {status}"),
            Err(_) => anyhow::bail!("no activation update for 30 s ({assigned} of {backlog})"),
        }
    }
    drop(probe);

    // Every subscriber on its own connection, as separate client processes would be.
    let mut channels = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        channels.push(endpoint.connect().await?);
    }
    eprintln!("fanout ({subscribers} subs): replay and {RATE} live leads/s for {SECONDS}s ...");
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(subscribers);
    let live: Vec<Arc<Mutex<Seen>>> = (0..subscribers).map(|_| Arc::default()).collect();
    let replays: Vec<Arc<Mutex<Option<f64>>>> = (0..subscribers).map(|_| Arc::default()).collect();
    for ((channel, seen), replay) in channels.into_iter().zip(&live).zip(&replays) {
        let mut go = go_rx.clone();
        let (seen, replay) = (seen.clone(), replay.clone());
        tasks.push(tokio::spawn(async move {
            let _ = go.wait_for(|go| *go).await;
            let started = Instant::now();
            let mut stream = ActivationServiceClient::new(channel)
                .watch_activations(WatchActivationsRequest::default())
                .await?
                .into_inner();
            let mut replayed = 0;
            while let Some(update) = stream.message().await? {
                if replayed < backlog {
                    replayed += 1;
                    if replayed == backlog {
                        let rate = replayed as f64 / started.elapsed().as_secs_f64();
                        replay.lock().map(|mut r| *r = Some(rate)).ok();
                    }
                } else if update.event_type == "LeadAssigned"
                    && let Some(a) = update.activation
                {
                    seen.lock()
                        .map(|mut s| s.insert(a.lead_id, Instant::now()))
                        .ok();
                }
            }
            anyhow::Ok(())
        }));
    }
    let _ = go_tx.send(true);

    // Live leads start once every subscriber has replayed, so the two phases do not mix.
    let replay_rates = |replays: &[Arc<Mutex<Option<f64>>>]| -> Vec<f64> {
        replays
            .iter()
            .filter_map(|r| r.lock().ok().and_then(|r| *r))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while replay_rates(&replays).len() < subscribers {
        if let Some(task) = tasks.iter_mut().find(|t| t.is_finished()) {
            let outcome = task.await;
            anyhow::bail!("a subscriber stopped during the replay: {outcome:?}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "subscribers still replaying after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rates = replay_rates(&replays);

    let mut rss_mb = f64::NAN;
    let mut sample_rss = || {
        if let Ok(memory) = service.memory() {
            rss_mb = rss_mb.max(memory.rss_mb);
        }
    };
    sample_rss();
    let sent: Arc<Mutex<Seen>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut calls = Vec::new();
    for n in 0..(RATE * SECONDS) as usize {
        ticker.tick().await;
        if n % (RATE as usize / 10) == 0 {
            sample_rss();
        }
        let mut client = IntakeServiceClient::new(intake.clone());
        let sent = sent.clone();
        let tag = format!("fan{subscribers}l");
        calls.push(tokio::spawn(async move {
            let lead = lead_input_to_proto(&sample_lead(&tag, n));
            let t0 = Instant::now();
            if let Ok(response) = client
                .submit_lead(ipb::SubmitLeadRequest {
                    lead: Some(lead),
                    idempotency_key: String::new(),
                })
                .await
                && let Some(lead) = response.into_inner().lead
            {
                sent.lock().map(|mut s| s.insert(lead.lead_id, t0)).ok();
            }
        }));
    }
    for call in calls {
        call.await?;
    }
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let expected = sent.len() * subscribers;
    let delivered = || -> usize {
        live.iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    };
    for _ in 0..400 {
        if delivered() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sample_rss();

    let mut latencies = Vec::with_capacity(expected);
    for seen in &live {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        latencies.extend(
            sent.iter()
                .filter_map(|(id, t0)| seen.get(id).map(|t1| t1.saturating_duration_since(*t0))),
        );
    }
    latencies.sort();
    let missing = expected - latencies.len();

    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    Ok(Round {
        replay_rate: rates.iter().sum::<f64>() / rates.len() as f64,
        slowest_rate: rates.iter().copied().fold(f64::INFINITY, f64::min),
        latencies,
        missing,
        rss_mb,
    })
}
