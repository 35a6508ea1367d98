//! Consuming another service's event stream with exactly-once effect.
//!
//! The consumer's cursor lives in its own database and is saved in the same transaction as
//! the effects of the event it consumed: after a crash it resumes exactly after the last
//! event whose effects committed. A failing handler is retried (from the same event) with
//! backoff, never skipped.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use proto::events::v1::Event;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::db::{Db, DbError, Tx, to_micros};

/// Error a handler may return; the event is retried.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Applies one event's effects inside the consumer's transaction.
pub trait EventHandler: Send + Sync {
    fn handle(
        &self,
        tx: &mut Tx,
        event: &Event,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called inside the transaction before any of its events is handled: the place to load
    /// what they all need with one query per table, so a batch costs a few round trips rather
    /// than a few per event (as [`crate::timers::TimerHandler::load`]). An error rolls the batch
    /// back like a failing `handle`.
    fn load(
        &self,
        tx: &mut Tx,
        events: &[Event],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (tx, events);
        async { Ok(()) }
    }

    /// Called inside the transaction after its events were handled, before the cursor is saved
    /// and it commits: the place to write what `handle` kept for the whole batch.
    fn flush(&self, tx: &mut Tx) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }

    /// Called after the transaction that applied the effects committed: the place to wake
    /// this process's own subscribers and schedulers.
    fn after_commit(&self) {}
}

/// The cursor a consumer has committed, empty before its first event.
pub async fn load_cursor(db: &Db, consumer: &str) -> Result<String, DbError> {
    let cursor: Option<String> =
        sqlx::query_scalar("SELECT cursor FROM consumer_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(db.pool())
            .await?;
    Ok(cursor.unwrap_or_default())
}

/// Saves a consumer's cursor inside the transaction that applied the event.
pub async fn save_cursor(
    tx: &mut Tx,
    consumer: &str,
    cursor: &str,
    now: jiff::Timestamp,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO consumer_cursors (consumer, cursor, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    )
    .bind(consumer)
    .bind(cursor)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies one event and advances the cursor in one transaction.
pub async fn apply<H: EventHandler>(
    db: &Db,
    consumer: &str,
    handler: &H,
    event: &Event,
) -> Result<(), HandlerError> {
    let after = load_cursor(db, consumer).await?;
    apply_batch(db, consumer, handler, &after, std::slice::from_ref(event)).await
}

/// Another replica of this consumer applied events past the cursor this one read from.
#[derive(Debug, thiserror::Error)]
#[error("another replica advanced consumer {0}; resuming from its saved cursor")]
pub struct CursorMoved(String);

/// Applies events that follow cursor `after` in order, and advances the cursor past the last,
/// in one transaction: either all of them take effect or none does.
///
/// The cursor row is locked first and must still read `after`: with several replicas running
/// the same consumer, only one applies a given event; the others get [`CursorMoved`] and
/// resume from the saved cursor.
///
/// What the handler records with [`crate::metrics::on_commit`] is published only if the
/// batch commits: a batch that fails is applied again, and counted once.
pub async fn apply_batch<H: EventHandler>(
    db: &Db,
    consumer: &str,
    handler: &H,
    after: &str,
    events: &[Event],
) -> Result<(), HandlerError> {
    crate::metrics::transactional(apply_batch_tx(db, consumer, handler, after, events)).await
}

async fn apply_batch_tx<H: EventHandler>(
    db: &Db,
    consumer: &str,
    handler: &H,
    after: &str,
    events: &[Event],
) -> Result<(), HandlerError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let mut tx = db.begin().await?;
    let saved: String = sqlx::query_scalar(
        "INSERT INTO consumer_cursors (consumer, cursor, updated_at) VALUES ($1, '', 0) \
         ON CONFLICT (consumer) DO UPDATE SET consumer = excluded.consumer RETURNING cursor",
    )
    .bind(consumer)
    .fetch_one(&mut *tx)
    .await
    .map_err(DbError::from)?;
    if saved != after {
        return Err(CursorMoved(consumer.to_owned()).into());
    }
    handler.load(&mut tx, events).await?;
    for event in events {
        handler
            .handle(&mut tx, event)
            .instrument(consume_span(consumer, event))
            .await?;
    }
    handler.flush(&mut tx).await?;
    save_cursor(&mut tx, consumer, &last.cursor, jiff::Timestamp::now()).await?;
    tx.commit().await.map_err(DbError::from)?;
    handler.after_commit();
    Ok(())
}

/// The span an event is handled in: a child of the span that appended it upstream (the trace
/// context its envelope carries), so one trace follows a lead from service to service, and
/// what the handler appends carries this span on.
fn consume_span(consumer: &str, event: &Event) -> tracing::Span {
    let event_type = event
        .payload
        .as_ref()
        .map(|p| p.type_url.rsplit('/').next().unwrap_or_default())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "consume",
        consumer = %consumer,
        event_type = %event_type,
        otel.kind = "consumer"
    );
    let parent = TraceContextPropagator::new().extract(&event.trace_context);
    let _ = span.set_parent(parent);
    span
}

/// Events applied in one transaction when the upstream has several ready: a consumer that
/// fell behind catches up with one commit per batch instead of one per event.
const BATCH: usize = 16;

/// Runs a consumer until `stop` is cancelled: opens the upstream stream after the saved
/// cursor with `connect`, applies each event, and reconnects with backoff when the stream
/// fails or ends.
///
/// Metrics, labelled with the consumer's name: events applied, interruptions, and the lag,
/// taken at each commit as the age of the batch's last event (now minus its `occurred_at`,
/// which the upstream sets when it appends it). It needs no call to the upstream: near zero
/// while the consumer keeps up, it grows while it works through a backlog (a replay after
/// downtime, a slow handler). A consumer that applies nothing keeps its last value; watch
/// `consumer_interruptions` and `rate(consumer_events)` for one that is stuck.
pub async fn run<H, F, Fut, S>(
    db: Db,
    consumer: String,
    connect: F,
    handler: H,
    stop: CancellationToken,
) where
    H: EventHandler,
    F: Fn(String) -> Fut + Send,
    Fut: Future<Output = Result<S, tonic::Status>> + Send,
    S: Stream<Item = Result<Event, tonic::Status>> + Send + Unpin,
{
    let mut backoff = Backoff::default();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let outcome: Result<(), HandlerError> = async {
            let mut cursor = load_cursor(&db, &consumer).await?;
            let mut stream = connect(cursor.clone()).await?;
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    next = stream.next() => next,
                };
                let mut batch = match next {
                    None => return Err("upstream stream ended".into()),
                    Some(Err(status)) => return Err(status.into()),
                    Some(Ok(event)) => vec![event],
                };
                // Take whatever else is already waiting, without waiting for more.
                let mut failed = None;
                while batch.len() < BATCH {
                    match futures::FutureExt::now_or_never(stream.next()) {
                        Some(Some(Ok(event))) => batch.push(event),
                        Some(Some(Err(status))) => {
                            failed = Some(status);
                            break;
                        }
                        Some(None) | None => break,
                    }
                }
                apply_batch(&db, &consumer, &handler, &cursor, &batch).await?;
                if let Some(last) = batch.last() {
                    cursor = last.cursor.clone();
                    crate::metrics::consumer_applied(
                        &consumer,
                        batch.len(),
                        last.occurred_at
                            .as_ref()
                            .and_then(crate::grpc::from_proto_timestamp),
                    );
                }
                backoff.reset();
                if let Some(status) = failed {
                    return Err(status.into());
                }
            }
        }
        .await;
        if let Err(error) = outcome {
            crate::metrics::consumer_interrupted(&consumer);
            tracing::warn!(consumer = %consumer, %error, "consumer interrupted; resuming from its saved cursor");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// Exponential backoff from 100 ms to 10 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let current = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        current
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// An upstream service's event stream, as [`run`] consumes it.
pub type UpstreamEvents =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event, tonic::Status>> + Send>>;

/// Where a consumer reads from: another fairchance service's `Subscribe` RPC.
///
/// Every service serves `Subscribe` with the same shapes (a `SubscribeFrom` in field 1 of the
/// request, one `Event` in field 1 of each response), so one client reads them all.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The client of the service, from the service's [`crate::client::Connector`].
    pub client: crate::client::Client,
    /// Fully qualified gRPC service name, e.g. `fairchance.intake.v1.IntakeService`.
    pub service: &'static str,
    /// Event types (short names) to receive; empty means all.
    pub event_types: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireSubscribeRequest {
    #[prost(message, optional, tag = "1")]
    from: Option<proto::events::v1::SubscribeFrom>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireSubscribeResponse {
    #[prost(message, optional, tag = "1")]
    event: Option<Event>,
}

impl Upstream {
    /// Opens the stream after `after_cursor`.
    pub async fn subscribe(&self, after_cursor: String) -> Result<UpstreamEvents, tonic::Status> {
        let method = crate::client::Method::<WireSubscribeRequest, WireSubscribeResponse>::dynamic(
            format!("/{}/Subscribe", self.service),
            true,
        );
        let request = WireSubscribeRequest {
            from: Some(proto::events::v1::SubscribeFrom {
                after_cursor,
                event_types: self.event_types.clone(),
                replay_only: false,
            }),
        };
        let stream = self.client.server_streaming(&method, request).await?;
        let service = self.service;
        Ok(Box::pin(stream.map(move |item| {
            item.and_then(|response| {
                response.event.ok_or_else(|| {
                    tonic::Status::internal(format!("{service} sent an empty event"))
                })
            })
        })))
    }
}
