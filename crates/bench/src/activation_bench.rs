//! Activation: a lead accepted at intake until its `LeadAssigned` reaches a `WatchActivations`
//! subscriber, at a steady submission rate on PostgreSQL, next to the same run's latency of
//! intake's own `LeadAccepted` reaching an intake subscriber (the hop activation adds is
//! the difference). The first second after the services start is reported on its own row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intake::convert::lead_input_to_proto;
use proto::activation::v1::WatchActivationsRequest;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::service::{ServiceContext, ServiceSpec};
use runtime::{Db, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::{Args, BenchDb, Row};

/// Submissions per second.
const RATE: u64 = 500;
/// How long leads are submitted and measured.
const SECONDS: u64 = 10;
/// Leads submitted at the same rate first, and reported apart: the services have just
/// started (new connections to new databases, statements prepared on first use), which a
/// service that has been running for more than a second has behind it.
const WARMUP_SECONDS: u64 = 1;

/// Everybody works around the clock with room for every lead, so assignment never queues.
pub(crate) const PLAYBOOK: &str = r#"
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
capacity = 1000000
[[activation.owners]]
id = "b"
name = "B"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 1000000
[[activation.owners]]
id = "lead"
name = "Lead"
team = "sales"
timezone = "UTC"
hours = "mon-sun 00:00-24:00"
capacity = 1000000
[[activation.sla]]
name = "all"
window = "1h"
[[activation.plans]]
name = "call"
channel = "call"
template = "opener"
"#;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn run(args: &Args) -> anyhow::Result<Vec<Row>> {
    let intake_db = BenchDb::create(&args.postgres).await?;
    let activation_db = BenchDb::create(&args.postgres).await?;
    let result = measure(args, &intake_db.url, &activation_db.url).await;
    intake_db.drop().await;
    activation_db.drop().await;
    result
}

async fn measure(args: &Args, intake_url: &str, activation_url: &str) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK)?;
    let stop = CancellationToken::new();
    let (listener, addr) = testkit::bind_local().await;
    let mut config = runtime::config::ServiceConfig::load(
        &runtime::config::Sources::default(),
        &runtime::config::Defaults::service("bench", 0),
    )?;
    config.playbook = Some(playbook);
    config.upstreams.insert("intake", format!("http://{addr}"));
    let mut routes = tonic::service::RoutesBuilder::default();
    let mut health = Vec::new();
    let mut dbs = Vec::new();
    for (url, is_intake) in [(intake_url, true), (activation_url, false)] {
        let db = Db::connect(url, args.pool).await?;
        let ctx = ServiceContext {
            db: db.clone(),
            config: config.clone(),
            clock: Arc::new(SystemClock),
            shutdown: stop.clone(),
        };
        if is_intake {
            db.migrate(intake::IntakeService::migrations()).await?;
            health.extend(intake::IntakeService::start(ctx, &mut routes).await?);
        } else {
            db.migrate(activation::ActivationService::migrations())
                .await?;
            health.extend(activation::ActivationService::start(ctx, &mut routes).await?);
        }
        dbs.push(db);
    }
    let server_stop = stop.clone();
    let server_config = config.server.clone();
    let server = tokio::spawn(async move {
        runtime::server::serve(listener, routes, health, &server_config, server_stop).await
    });

    let channel = testkit::channel(addr).await;
    let accepted_seen: Seen = Arc::default();
    let assigned_seen: Seen = Arc::default();
    let mut intake_events = IntakeServiceClient::new(channel.clone())
        .subscribe(ipb::SubscribeRequest { from: None })
        .await?
        .into_inner();
    let mut activation_events = ActivationServiceClient::new(channel.clone())
        .watch_activations(WatchActivationsRequest::default())
        .await?
        .into_inner();
    let seen = accepted_seen.clone();
    let intake_watch = tokio::spawn(async move {
        while let Ok(Some(message)) = intake_events.message().await {
            if let Some(event) = message.event
                && event.event_type == "LeadAccepted"
            {
                seen.lock()
                    .map(|mut s| s.insert(event.aggregate_id, Instant::now()))
                    .ok();
            }
        }
    });
    let seen = assigned_seen.clone();
    let activation_watch = tokio::spawn(async move {
        while let Ok(Some(update)) = activation_events.message().await {
            if update.event_type == "LeadAssigned"
                && let Some(a) = update.activation
            {
                seen.lock()
                    .map(|mut s| s.insert(a.lead_id, Instant::now()))
                    .ok();
            }
        }
    });

    eprintln!(
        "activation: submitting {RATE} leads/s for {WARMUP_SECONDS}s + {SECONDS}s, watching LeadAssigned ..."
    );
    let sent: Seen = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut calls = Vec::new();
    for n in 0..(RATE * (WARMUP_SECONDS + SECONDS)) as usize {
        ticker.tick().await;
        let mut client = IntakeServiceClient::new(channel.clone());
        let sent = sent.clone();
        calls.push(tokio::spawn(async move {
            let lead = lead_input_to_proto(&crate::intake_bench::sample_lead("act", n));
            let t0 = Instant::now();
            let response = client
                .submit_lead(ipb::SubmitLeadRequest {
                    lead: Some(lead),
                    idempotency_key: String::new(),
                })
                .await;
            if let Ok(response) = response
                && let Some(lead) = response.into_inner().lead
            {
                sent.lock().map(|mut s| s.insert(lead.lead_id, t0)).ok();
            }
        }));
    }
    for call in calls {
        call.await?;
    }
    // Let the last events arrive.
    let expected = sent.lock().map(|s| s.len()).unwrap_or(0);
    for _ in 0..200 {
        let done = assigned_seen.lock().map(|s| s.len()).unwrap_or(0);
        if done >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    intake_watch.abort();
    activation_watch.abort();
    let _ = server.await;
    for db in dbs {
        db.close().await;
    }

    // Submitted in order at a steady rate: the warm-up leads are the first sent.
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let measured_from = sent
        .values()
        .min()
        .copied()
        .map(|first| first + Duration::from_secs(WARMUP_SECONDS));
    let latencies = |seen: &Seen, warmup: bool| -> Vec<Duration> {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut all: Vec<Duration> = sent
            .iter()
            .filter(|(_, t0)| measured_from.is_some_and(|from| (**t0 < from) == warmup))
            .filter_map(|(id, t0)| seen.get(id).map(|t1| t1.saturating_duration_since(*t0)))
            .collect();
        all.sort();
        all
    };
    let assigned = latencies(&assigned_seen, false);
    let accepted = latencies(&accepted_seen, false);
    let assigned_cold = latencies(&assigned_seen, true);
    let accepted_cold = latencies(&accepted_seen, true);
    let ms = |all: &[Duration], p: f64| crate::intake_bench::percentile(all, p);
    let missing = expected.saturating_sub(assigned.len() + assigned_cold.len());
    let note = if missing == 0 {
        "target p99 <= 20 ms".to_owned()
    } else {
        format!("{missing} leads never seen assigned!")
    };
    // A percentile of the leads' assignment latency against the same of intake's own hop.
    let row = |name: String, assigned: &[Duration], accepted: &[Duration], p: f64, note: String| {
        let (value, baseline) = (ms(assigned, p), ms(accepted, p));
        Row {
            name,
            value,
            unit: "ms".into(),
            baseline_name: format!("LeadAccepted seen by intake subscriber p{}", p * 100.0),
            baseline,
            ratio: value / baseline,
            note,
        }
    };
    Ok(vec![
        row(
            format!("lead accepted -> LeadAssigned seen, p50 ({RATE}/s)"),
            &assigned,
            &accepted,
            0.5,
            String::new(),
        ),
        row(
            format!("lead accepted -> LeadAssigned seen, p99 ({RATE}/s)"),
            &assigned,
            &accepted,
            0.99,
            note,
        ),
        row(
            format!("the same, p99 over the first {WARMUP_SECONDS}s after start"),
            &assigned_cold,
            &accepted_cold,
            0.99,
            "not in the figures above".into(),
        ),
    ])
}
