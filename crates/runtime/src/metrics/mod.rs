//! Prometheus metrics, written once for every service: one registry per process, the RED
//! layer the gRPC server runs every call through ([`RpcMetricsLayer`]), the runtime's own
//! instruments (event log, timers, consumers), and the HTTP endpoint that serves them
//! ([`serve_endpoint`]) on its own port (`FAIRCHANCE_METRICS_ADDR`).
//!
//! Labels carry only names fixed in code or in the playbook (gRPC services and methods,
//! status codes, event types, consumer names, SLA policies, causes), never a lead's data:
//! a label value is a time series, and personal data must not end up in one. Unknown RPC
//! paths are labelled `unknown` for the same reason (and to bound cardinality).
//!
//! Services register their own instruments with [`register`]. What happens inside a
//! transaction is recorded with [`on_commit`], so an effect that rolls back and is retried
//! is counted once.

mod endpoint;
mod layer;
mod staged;

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};
use tokio_util::sync::CancellationToken;

use crate::db::{Db, DbError};

pub use endpoint::{CONTENT_TYPE, EndpointError, serve_endpoint, spawn_endpoint};
pub use layer::{RpcMetricsLayer, RpcMetricsService, code_name};
/// The client library, for services defining their own instruments.
pub use prometheus_client;
pub use staged::{Staged, on_commit, transactional};

/// Every metric name starts with this (and an underscore).
pub const PREFIX: &str = "fairchance";

/// How often [`sample_database`] looks at the timers and the event log.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// A timer due this long ago and still not fired counts as overdue: its scheduler is not
/// keeping up (the scheduler normally fires within milliseconds of the due time).
pub const OVERDUE_AFTER: Duration = Duration::from_secs(60);

static REGISTRY: LazyLock<Mutex<Registry>> =
    LazyLock::new(|| Mutex::new(Registry::with_prefix(PREFIX)));

/// Registers a service's instrument under `fairchance_<name>` in the process registry.
/// Instruments are cheap handles: keep a clone and record on it.
pub fn register(name: &str, help: &str, metric: impl Metric) {
    lock().register(name, help, metric);
}

/// Like [`register`], with a unit appended to the name (`_seconds`).
pub fn register_with_unit(name: &str, help: &str, unit: Unit, metric: impl Metric) {
    lock().register_with_unit(name, help, unit, metric);
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while registering leaves the registry usable: recording must never fail.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every registered metric in the text exposition format (OpenMetrics 1.0, which
/// Prometheus scrapes natively), ending with `# EOF`. A labelled family shows once it has
/// a first series.
pub fn encode() -> String {
    // Registers the runtime's families, whatever has been recorded yet.
    let _ = runtime();
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &lock());
    text
}

/// Latency buckets for RPCs, in seconds: 1 ms to 30 s (the longest request timeout).
const RPC_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

/// One RPC's identity and outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RpcLabels {
    pub grpc_service: &'static str,
    pub grpc_method: &'static str,
    pub grpc_code: &'static str,
}

/// One RPC's identity.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub grpc_service: &'static str,
    pub grpc_method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    service: &'static str,
    event_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

/// The runtime's instruments, registered on first use.
pub(crate) struct RuntimeMetrics {
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    events_appended: Family<EventLabels, Counter>,
    outbox_events: Family<ServiceLabels, Gauge>,
    timers_scheduled: Family<ServiceLabels, Gauge>,
    timers_due: Family<ServiceLabels, Gauge>,
    timers_overdue: Family<ServiceLabels, Gauge>,
    consumer_lag: Family<ConsumerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    consumer_events: Family<ConsumerLabels, Counter>,
    consumer_interruptions: Family<ConsumerLabels, Counter>,
}

static RUNTIME: LazyLock<RuntimeMetrics> = LazyLock::new(|| {
    let m = RuntimeMetrics {
        rpc_requests: Family::default(),
        rpc_duration: Family::new_with_constructor(rpc_histogram),
        events_appended: Family::default(),
        outbox_events: Family::default(),
        timers_scheduled: Family::default(),
        timers_due: Family::default(),
        timers_overdue: Family::default(),
        consumer_lag: Family::default(),
        consumer_events: Family::default(),
        consumer_interruptions: Family::default(),
    };
    let mut r = lock();
    r.register(
        "rpc_requests",
        "gRPC calls handled, by service, method and status code",
        m.rpc_requests.clone(),
    );
    r.register_with_unit(
        "rpc_duration",
        "Time to answer a gRPC call (to the response headers for streaming calls)",
        Unit::Seconds,
        m.rpc_duration.clone(),
    );
    r.register(
        "events_appended",
        "Events appended to the service's event log (the outbox), by type, counted on commit",
        m.events_appended.clone(),
    );
    r.register(
        "outbox_events",
        "Events in the service's event log (its highest sequence number)",
        m.outbox_events.clone(),
    );
    r.register(
        "timers_scheduled",
        "Durable timers scheduled and not yet fired",
        m.timers_scheduled.clone(),
    );
    r.register(
        "timers_due",
        "Durable timers whose due time has passed and that have not fired yet",
        m.timers_due.clone(),
    );
    r.register(
        "timers_overdue",
        "Durable timers due more than a minute ago and not fired: the scheduler is behind",
        m.timers_overdue.clone(),
    );
    r.register_with_unit(
        "consumer_lag",
        "Age of the last event a consumer applied, when it committed (commit time minus the event's occurred_at)",
        Unit::Seconds,
        m.consumer_lag.clone(),
    );
    r.register(
        "consumer_events",
        "Events a consumer applied (committed)",
        m.consumer_events.clone(),
    );
    r.register(
        "consumer_interruptions",
        "Times a consumer's stream or handler failed and it resumed from its saved cursor",
        m.consumer_interruptions.clone(),
    );
    drop(r);
    m
});

pub(crate) fn runtime() -> &'static RuntimeMetrics {
    &RUNTIME
}

/// Counts events appended by `service`, once the transaction holding them commits.
pub(crate) fn events_appended<'a>(service: &'static str, types: impl Iterator<Item = &'a str>) {
    let mut counts: Vec<(String, u64)> = Vec::new();
    for short in types {
        match counts.iter_mut().find(|(t, _)| t == short) {
            Some((_, n)) => *n += 1,
            None => counts.push((short.to_owned(), 1)),
        }
    }
    on_commit(move || {
        for (event_type, n) in counts {
            runtime()
                .events_appended
                .get_or_create(&EventLabels {
                    service,
                    event_type,
                })
                .inc_by(n);
        }
    });
}

/// Records a consumer's committed batch: `applied` events, the last of which occurred at
/// `last_occurred_at`.
pub(crate) fn consumer_applied(
    consumer: &str,
    applied: usize,
    last_occurred_at: Option<jiff::Timestamp>,
) {
    let labels = ConsumerLabels {
        consumer: consumer.to_owned(),
    };
    let m = runtime();
    m.consumer_events
        .get_or_create(&labels)
        .inc_by(applied as u64);
    if let Some(at) = last_occurred_at {
        let lag = jiff::Timestamp::now().duration_since(at).as_secs_f64();
        m.consumer_lag.get_or_create(&labels).set(lag.max(0.0));
    }
}

/// Records that a consumer was interrupted and will resume.
pub(crate) fn consumer_interrupted(consumer: &str) {
    runtime()
        .consumer_interruptions
        .get_or_create(&ConsumerLabels {
            consumer: consumer.to_owned(),
        })
        .inc();
}

/// What one look at a service's database found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSample {
    /// Events in the event log (its highest sequence number).
    pub outbox_events: i64,
    pub timers: crate::timers::TimerBacklog,
}

/// Looks at `db`'s event log and timers once (two index-backed queries) and sets the
/// gauges of `service`.
pub async fn sample_database_once(service: &str, db: &Db) -> Result<DatabaseSample, DbError> {
    let outbox_events = crate::eventlog::head_seq(db).await?;
    let overdue_after = jiff::SignedDuration::try_from(OVERDUE_AFTER).unwrap_or_default();
    let timers = crate::timers::backlog(db, jiff::Timestamp::now(), overdue_after).await?;
    let labels = ServiceLabels {
        service: service.to_owned(),
    };
    let m = runtime();
    m.outbox_events.get_or_create(&labels).set(outbox_events);
    m.timers_scheduled
        .get_or_create(&labels)
        .set(timers.scheduled);
    m.timers_due.get_or_create(&labels).set(timers.due);
    m.timers_overdue.get_or_create(&labels).set(timers.overdue);
    Ok(DatabaseSample {
        outbox_events,
        timers,
    })
}

/// Samples `db` every [`SAMPLE_EVERY`] until `stop` is cancelled. A failed look is logged
/// and leaves the gauges as they were (health reports the database itself).
pub async fn sample_database(service: String, db: Db, stop: CancellationToken) {
    loop {
        if let Err(error) = sample_database_once(&service, &db).await {
            tracing::debug!(service = %service, %error, "sampling metrics from the database failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// The short service name of a fully qualified gRPC service: `intake` for
/// `fairchance.intake.v1.IntakeService`; other names are kept whole.
pub fn short_service_name(grpc_service: &str) -> &str {
    match grpc_service.strip_prefix("fairchance.") {
        Some(rest) => rest.split('.').next().unwrap_or(rest),
        None => grpc_service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_come_from_the_package() {
        assert_eq!(
            short_service_name("fairchance.intake.v1.IntakeService"),
            "intake"
        );
        assert_eq!(
            short_service_name("grpc.health.v1.Health"),
            "grpc.health.v1.Health"
        );
    }

    #[test]
    fn families_are_typed_with_units_and_the_text_ends_with_eof() {
        consumer_interrupted("metrics.unit");
        consumer_applied("metrics.unit", 2, Some(jiff::Timestamp::now()));
        let text = encode();
        for line in [
            "# TYPE fairchance_consumer_interruptions counter",
            "fairchance_consumer_interruptions_total{consumer=\"metrics.unit\"} 1",
            "fairchance_consumer_events_total{consumer=\"metrics.unit\"} 2",
            "# TYPE fairchance_consumer_lag_seconds gauge",
            "# UNIT fairchance_consumer_lag_seconds seconds",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
