//! The transactional outbox every service integrates through.
//!
//! A service appends its domain events inside the transaction that changes its state
//! ([`EventLog::append`]), and serves them on its `Subscribe` stream ([`EventLog::subscribe`]):
//! a replay from any cursor followed by a live tail. The tail is pushed, not slept: commits in
//! this process wake subscribers directly, and on PostgreSQL a trigger NOTIFYs other replicas
//! (see [`EventLog::listen`]); a slow poll only backs both up.
//!
//! Ordering on PostgreSQL is by the writing transaction's id and only below the snapshot's
//! xmin (see the migration), so a cursor handed out is never overtaken by a late commit.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use proto::events::v1::{Event, SubscribeFrom};
use sqlx::Row;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{Backend, Batch, Db, DbError, Tx, Value, from_micros, to_micros};

/// Position in an event log: the writing transaction and the row within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub txid: i64,
    pub seq: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor { txid: 0, seq: 0 };
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.txid, self.seq)
    }
}

/// A cursor string that is not one this service handed out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a cursor from this event log (expected the `cursor` of a received event)")]
pub struct BadCursor;

impl FromStr for Cursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Self::START);
        }
        let (txid, seq) = s.split_once('.').ok_or(BadCursor)?;
        let txid = txid.parse().map_err(|_| BadCursor)?;
        let seq = seq.parse().map_err(|_| BadCursor)?;
        if txid < 0 || seq < 0 {
            return Err(BadCursor);
        }
        Ok(Self { txid, seq })
    }
}

/// An event to append: a protobuf message about one aggregate.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Full protobuf name of the payload, e.g. `fairchance.intake.v1.LeadAccepted`.
    pub type_name: String,
    pub aggregate_id: String,
    pub occurred_at: Timestamp,
    pub payload: Vec<u8>,
}

impl NewEvent {
    pub fn new<M: prost::Name>(
        aggregate_id: impl Into<String>,
        message: &M,
        occurred_at: Timestamp,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            type_name: M::full_name(),
            aggregate_id: aggregate_id.into(),
            occurred_at,
            payload: message.encode_to_vec(),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub cursor: Cursor,
    pub event_id: String,
    pub type_name: String,
    pub aggregate_id: String,
    pub occurred_at: Timestamp,
    pub payload: Vec<u8>,
    pub trace_context: BTreeMap<String, String>,
}

impl StoredEvent {
    /// The short type, e.g. `LeadAccepted`.
    pub fn short_type(&self) -> &str {
        self.type_name.rsplit('.').next().unwrap_or(&self.type_name)
    }

    /// The wire envelope.
    pub fn to_proto(&self, source_service: &str) -> Event {
        Event {
            cursor: self.cursor.to_string(),
            event_id: self.event_id.clone(),
            source_service: source_service.to_owned(),
            event_type: self.short_type().to_owned(),
            aggregate_id: self.aggregate_id.clone(),
            occurred_at: Some(crate::grpc::to_proto_timestamp(self.occurred_at)),
            payload: Some(prost_types::Any {
                type_url: format!("type.googleapis.com/{}", self.type_name),
                value: self.payload.clone(),
            }),
            trace_context: self.trace_context.clone().into_iter().collect(),
        }
    }
}

/// How long a live subscriber waits without a wake-up before looking anyway: a safety net for
/// a lost notification or a commit by a process that cannot notify.
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Events read per query while replaying.
const BATCH: i64 = 500;

/// Events per `INSERT`: 256 rows of 6 stay far below either backend's limit on bound
/// parameters.
const EVENT_ROWS: usize = 256;
/// First and longest wait of [`EventLog::watch_held_back`] between its looks.
const RECHECK_FIRST: Duration = Duration::from_millis(2);
const RECHECK_MAX: Duration = Duration::from_millis(32);

/// One service's event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    db: Db,
    service: &'static str,
    /// Counts wake-ups: commits here, and notifications of other processes' commits.
    wake: Arc<watch::Sender<u64>>,
    /// The last read of the live tail, shared by the subscribers waiting at the same cursor.
    live: Arc<tokio::sync::Mutex<Option<LiveRead>>>,
    held_back: Arc<HeldBack>,
}

/// What [`EventLog::watch_held_back`] looks after: where the subscribers caught up.
#[derive(Debug, Default)]
struct HeldBack {
    /// The watcher was started (lazily: it needs a runtime).
    started: AtomicBool,
    /// The furthest cursor a subscriber caught up to.
    tail: std::sync::Mutex<Cursor>,
    /// A subscriber caught up.
    caught_up: tokio::sync::Notify,
}

/// A read after `after` that started when the wake-up count was `generation`: it holds every
/// event whose commit woke subscribers up to that count, or the error it met.
#[derive(Debug)]
struct LiveRead {
    after: Cursor,
    generation: u64,
    events: LiveResult,
}

/// What a read of the tail gave, shared by the subscribers that take it.
type LiveResult = Result<Arc<Vec<StoredEvent>>, Arc<DbError>>;

impl EventLog {
    pub fn new(db: Db, service: &'static str) -> Self {
        Self {
            db,
            service,
            wake: Arc::new(watch::channel(0).0),
            live: Arc::default(),
            held_back: Arc::default(),
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends events inside the caller's transaction; they become visible when it commits.
    /// They carry the trace context current now.
    pub async fn append(&self, tx: &mut Tx, events: &[NewEvent]) -> Result<(), DbError> {
        if events.is_empty() {
            return Ok(());
        }
        let trace =
            crate::telemetry::encode_trace_context(&crate::telemetry::current_trace_context());
        let rows = events
            .iter()
            .map(|e| (e, Cow::from(trace.as_str())))
            .collect();
        let mut batch = Batch::default();
        self.insert(&mut batch, rows);
        batch.execute(tx).await
    }

    /// [`EventLog::append`] for events gathered before they are written (e.g. the effects of
    /// many timers, written together), each with the trace context that was current when it
    /// was made (`crate::telemetry::current_trace_context()`).
    pub async fn append_traced(
        &self,
        tx: &mut Tx,
        events: &[(NewEvent, BTreeMap<String, String>)],
    ) -> Result<(), DbError> {
        let mut batch = Batch::default();
        self.append_traced_into(&mut batch, events);
        batch.execute(tx).await
    }

    /// [`EventLog::append_traced`], as statements of `batch` (written with the rest of it).
    pub fn append_traced_into<'a>(
        &self,
        batch: &mut Batch<'a>,
        events: &'a [(NewEvent, BTreeMap<String, String>)],
    ) {
        let rows: Vec<(&NewEvent, Cow<'_, str>)> = events
            .iter()
            .map(|(e, trace)| (e, crate::telemetry::encode_trace_context(trace).into()))
            .collect();
        self.insert(batch, rows);
    }

    fn insert<'a>(&self, batch: &mut Batch<'a>, events: Vec<(&'a NewEvent, Cow<'a, str>)>) {
        if events.is_empty() {
            return;
        }
        crate::metrics::events_appended(
            self.service,
            events
                .iter()
                .map(|(e, _)| e.type_name.rsplit('.').next().unwrap_or(&e.type_name)),
        );
        // Rows take their `seq` in the order of a statement's VALUES, and a batch runs its
        // statements in no set order: each chunk is fenced off from what is pushed after it
        // (the next chunk, or a later append).
        let mut rows = events.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(EVENT_ROWS).collect();
            let sql = format!(
                "INSERT INTO event_log (event_id, event_type, aggregate_id, occurred_at, payload, trace_context) VALUES {}",
                crate::db::values_placeholders(chunk.len(), 6)
            );
            let mut values: Vec<Value<'a>> = Vec::with_capacity(chunk.len() * 6);
            for (e, trace) in chunk {
                values.extend([
                    e.event_id.to_string().into(),
                    e.type_name.as_str().into(),
                    e.aggregate_id.as_str().into(),
                    to_micros(e.occurred_at).into(),
                    e.payload.as_slice().into(),
                    trace.into(),
                ]);
            }
            batch.push(sql, values);
            batch.fence();
        }
    }

    /// Commits a transaction that appended events and wakes this process's subscribers.
    pub async fn commit(&self, tx: Tx) -> Result<(), DbError> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Wakes live subscribers of this process to look for new events.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Up to `limit` events after `cursor`, in log order. On PostgreSQL only events of
    /// transactions older than every running one are returned, so the order is final.
    pub async fn read_after(
        &self,
        cursor: Cursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let sql = match self.db.backend() {
            Backend::Postgres => {
                "SELECT seq, txid, event_id, event_type, aggregate_id, occurred_at, payload, trace_context \
                 FROM event_log \
                 WHERE (txid, seq) > ($1, $2) \
                   AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY txid, seq LIMIT $3"
            }
            Backend::Sqlite => {
                "SELECT seq, txid, event_id, event_type, aggregate_id, occurred_at, payload, trace_context \
                 FROM event_log WHERE (txid, seq) > ($1, $2) ORDER BY txid, seq LIMIT $3"
            }
        };
        let rows = sqlx::query(sql)
            .bind(cursor.txid)
            .bind(cursor.seq)
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    cursor: Cursor {
                        txid: row.try_get("txid")?,
                        seq: row.try_get("seq")?,
                    },
                    event_id: row.try_get("event_id")?,
                    type_name: row.try_get("event_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    occurred_at: from_micros(row.try_get("occurred_at")?),
                    payload: row.try_get("payload")?,
                    trace_context: crate::telemetry::decode_trace_context(
                        &row.try_get::<String, _>("trace_context")?,
                    ),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// The events after `cursor` for a subscriber that is caught up and was woken at
    /// `generation`. Caught-up subscribers wait at the same cursor, and a commit wakes all of
    /// them at once: one of them reads and the others take its result, so a hundred watchers
    /// cost one query per commit instead of a hundred. A result is reused only if its read
    /// started after the wake-up the subscriber saw, so it holds everything that woke it. A
    /// failed read is shared too: with the database away, the subscribers queued behind it
    /// fail at once instead of each waiting out its own timeout in turn.
    async fn read_live(&self, cursor: Cursor, generation: u64) -> LiveResult {
        let mut last = self.live.lock().await;
        if let Some(read) = last.as_ref()
            && read.after == cursor
            && read.generation >= generation
        {
            return read.events.clone();
        }
        let started_at = *self.wake.borrow();
        let events = self
            .read_after(cursor, BATCH)
            .await
            .map(Arc::new)
            .map_err(Arc::new);
        *last = Some(LiveRead {
            after: cursor,
            generation: started_at,
            events: events.clone(),
        });
        events
    }

    /// Number of events in the log (for metrics and tests).
    pub async fn count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM event_log")
            .fetch_one(self.db.reader())
            .await?)
    }

    /// Replays the log after `from.after_cursor`, then tails it live until the client goes
    /// away or `shutdown` is cancelled (streams must end for a graceful shutdown to finish).
    pub fn subscribe(
        &self,
        from: SubscribeFrom,
        shutdown: CancellationToken,
    ) -> Result<ReceiverStream<Result<Event, tonic::Status>>, tonic::Status> {
        let cursor = parse_cursor("from.after_cursor", &from.after_cursor)?;
        let types = from.event_types;
        let service = self.service;
        Ok(
            self.stream(cursor, from.replay_only, shutdown, move |event| {
                let wanted = types.is_empty() || types.iter().any(|t| t == event.short_type());
                wanted.then(|| event.to_proto(service))
            }),
        )
    }

    /// Like [`EventLog::subscribe`], with each event turned into a message of the caller's
    /// by `map`; events it maps to `None` are skipped (the cursor still moves past them).
    /// Services build their own typed, filtered streams on it.
    pub fn stream<T, F>(
        &self,
        after: Cursor,
        replay_only: bool,
        shutdown: CancellationToken,
        map: F,
    ) -> ReceiverStream<Result<T, tonic::Status>>
    where
        T: Send + 'static,
        F: Fn(&StoredEvent) -> Option<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(256);
        let log = self.clone();
        tokio::spawn(async move {
            log.pump(after, replay_only, map, tx, shutdown).await;
        });
        ReceiverStream::new(rx)
    }

    async fn pump<T, F>(
        &self,
        mut cursor: Cursor,
        replay_only: bool,
        map: F,
        tx: mpsc::Sender<Result<T, tonic::Status>>,
        shutdown: CancellationToken,
    ) where
        F: Fn(&StoredEvent) -> Option<T>,
    {
        let mut woken = self.wake.subscribe();
        // Caught up and woken by a commit: the read can be shared (see `read_live`). Replays,
        // and reads after the fallback poll (which no wake-up announced), read on their own.
        let mut shared = false;
        loop {
            // Mark the wake-up seen before reading, so a commit during the read is not missed.
            let generation = *woken.borrow_and_update();
            let read = if shared {
                self.read_live(cursor, generation).await
            } else {
                self.read_after(cursor, BATCH)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::new)
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(service = self.service, %error, "event stream read failed");
                    let _ = tx
                        .send(Err(tonic::Status::unavailable(
                            "event log temporarily unavailable; resume from the last cursor",
                        )))
                        .await;
                    return;
                }
            };
            let full = batch.len() as i64 == BATCH;
            for event in batch.iter() {
                cursor = event.cursor;
                let Some(item) = map(event) else { continue };
                tokio::select! {
                    sent = tx.send(Ok(item)) => if sent.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
            }
            if full {
                shared = false;
                continue;
            }
            if replay_only {
                return;
            }
            self.caught_up(cursor);
            tokio::select! {
                _ = woken.changed() => shared = true,
                _ = tokio::time::sleep(FALLBACK_POLL) => shared = false,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Tells the held-back watcher a subscriber has read everything readable after `cursor`.
    fn caught_up(&self, cursor: Cursor) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        let held = &self.held_back;
        {
            let mut tail = held.tail.lock().unwrap_or_else(|e| e.into_inner());
            *tail = (*tail).max(cursor);
        }
        held.caught_up.notify_one();
        if !held.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().watch_held_back());
        }
    }

    /// On PostgreSQL an event is readable once every older transaction has ended (see
    /// [`EventLog::read_after`]), and that end may wake nobody: the older transaction may
    /// append no event, or run in another service's database of the same cluster (transaction
    /// ids, and so the snapshot's xmin, are cluster-wide; notifications are per database).
    /// Without this, an event committed behind one would wait for the next commit here, or
    /// for the fallback poll when there is none.
    ///
    /// So after subscribers catch up, if no wake-up comes within a moment, this looks past
    /// the tail they reached: nothing there, it waits for the next catch-up; an event that
    /// is readable, it wakes them; one still held back, it looks again later, the interval
    /// doubling (a long transaction elsewhere). Under load commits wake the subscribers
    /// sooner than that, so it seldom queries.
    async fn watch_held_back(self) {
        let held = Arc::clone(&self.held_back);
        loop {
            held.caught_up.notified().await;
            let mut delay = RECHECK_FIRST;
            loop {
                let seen = *self.wake.borrow();
                tokio::time::sleep(delay).await;
                if *self.wake.borrow() != seen {
                    // Woken meanwhile: the subscribers read again, and report when caught up.
                    break;
                }
                let tail = *held.tail.lock().unwrap_or_else(|e| e.into_inner());
                // The subscribers' own reads report a database that is away.
                let Ok(next) = sqlx::query_scalar::<_, bool>(
                    "SELECT txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                     FROM event_log WHERE (txid, seq) > ($1, $2) ORDER BY txid, seq LIMIT 1",
                )
                .bind(tail.txid)
                .bind(tail.seq)
                .fetch_optional(self.db.reader())
                .await
                else {
                    break;
                };
                match next {
                    None => break,
                    Some(true) => {
                        self.wake();
                        break;
                    }
                    Some(false) => delay = (delay * 2).min(RECHECK_MAX),
                }
            }
        }
    }

    /// Runs [`EventLog::listen`] in the background until `stop` is cancelled.
    pub fn spawn_listener(&self, stop: CancellationToken) {
        let log = self.clone();
        tokio::spawn(async move { log.listen(stop).await });
    }

    /// On PostgreSQL, listens for other processes' commits and wakes this process's
    /// subscribers; returns at once on SQLite. Runs until `stop` is cancelled.
    pub async fn listen(&self, stop: CancellationToken) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        loop {
            match sqlx::postgres::PgListener::connect(self.db.url()).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen("fairchance_event_log").await {
                        tracing::warn!(%error, "LISTEN failed; falling back to polling");
                    } else {
                        // Anything committed while we were not listening is picked up now.
                        self.wake();
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                n = listener.try_recv() => match n {
                                    Ok(Some(_)) => self.wake(),
                                    // Connection lost: the next try_recv reconnects; wake in case
                                    // a notification was lost with it.
                                    Ok(None) => self.wake(),
                                    Err(error) => {
                                        tracing::warn!(%error, "event notification listener failed");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot connect event notification listener"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The highest sequence number in `db`'s event log, 0 when empty: the number of events
/// appended, as the log is never pruned (an upper bound on PostgreSQL, whose sequences skip
/// the numbers of rolled-back inserts). One primary-key lookup, unlike `COUNT(*)`.
pub async fn head_seq(db: &Db) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log")
            .fetch_one(db.reader())
            .await?,
    )
}

/// Parses a cursor from a request, naming the field when it is not one of ours.
pub fn parse_cursor(field: &str, text: &str) -> Result<Cursor, tonic::Status> {
    text.parse()
        .map_err(|e: BadCursor| crate::grpc::invalid_argument([(field, e.to_string())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { txid: 981, seq: 12 };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        assert_eq!("".parse::<Cursor>().unwrap(), Cursor::START);
        for bad in ["12", "a.b", "1.-2", "-1.2", "1.2.3"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    /// A shared read of the tail is reused only by subscribers woken no later than it started:
    /// a commit that was announced after it must be read again, not answered from it.
    #[tokio::test]
    async fn a_live_read_is_reused_only_for_wake_ups_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate(&crate::db::RUNTIME_MIGRATIONS).await.unwrap();
        let log = EventLog::new(db, "test");
        let seen = *log.wake.borrow();
        assert!(log.read_live(Cursor::START, seen).await.unwrap().is_empty());

        // Committed without a wake-up (as another process's commit before its notification):
        // a subscriber woken by nothing new may get the shared, older answer...
        let mut tx = log.db().begin().await.unwrap();
        let msg = proto::intake::v1::ContactOptedOut::default();
        let event = NewEvent::new("agg", &msg, Timestamp::now());
        log.append(&mut tx, &[event]).await.unwrap();
        tx.commit().await.unwrap();
        assert!(log.read_live(Cursor::START, seen).await.unwrap().is_empty());

        // ...but once the commit is announced, the next read finds it.
        log.wake();
        let announced = *log.wake.borrow();
        assert_eq!(
            log.read_live(Cursor::START, announced).await.unwrap().len(),
            1
        );
    }

    /// An event committed while an older transaction runs is held back from subscribers, and
    /// that transaction's end may wake nobody (it may append nothing, or run in another
    /// database of the cluster): the watcher sees the event become readable and wakes them,
    /// rather than leaving it to the fallback poll.
    #[tokio::test]
    async fn an_event_held_back_by_an_older_transaction_wakes_subscribers_when_readable() {
        use futures::StreamExt;
        let Some(test_db) = testkit::TestDb::postgres().await else {
            return;
        };
        let db = Db::connect(&test_db.url, 4).await.unwrap();
        db.migrate(&crate::db::RUNTIME_MIGRATIONS).await.unwrap();
        let log = EventLog::new(db.clone(), "test");
        let mut older = db.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()::text")
            .execute(&mut *older)
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let msg = proto::intake::v1::ContactOptedOut::default();
        log.append(&mut tx, &[NewEvent::new("agg", &msg, Timestamp::now())])
            .await
            .unwrap();
        // Plain commits, and no listener: only the watcher can wake this log.
        tx.commit().await.unwrap();
        let stop = CancellationToken::new();
        let mut stream = log
            .subscribe(SubscribeFrom::default(), stop.clone())
            .unwrap();
        let started = testkit::eventually(500, || async {
            log.held_back.started.load(Ordering::SeqCst)
        });
        assert!(started.await, "the subscriber caught up without the event");
        let mut woken = log.wake.subscribe();
        older.commit().await.unwrap();

        tokio::time::timeout(Duration::from_secs(30), woken.changed())
            .await
            .expect("the watcher wakes subscribers once the event is readable")
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the event arrives")
            .expect("stream open")
            .expect("event");
        assert_eq!(event.aggregate_id, "agg");
        stop.cancel();
    }

    /// Events gathered before they are written keep each its own trace context.
    #[tokio::test]
    async fn events_appended_together_keep_their_own_trace_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate(&crate::db::RUNTIME_MIGRATIONS).await.unwrap();
        let log = EventLog::new(db, "test");
        let msg = proto::intake::v1::ContactOptedOut::default();
        let traced = |parent: &str| {
            let context: BTreeMap<String, String> =
                [("traceparent".to_owned(), parent.to_owned())].into();
            (NewEvent::new("agg", &msg, Timestamp::now()), context)
        };
        let first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let second = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut tx = log.db().begin().await.unwrap();
        log.append_traced(&mut tx, &[traced(first), traced(second)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let stored = log.read_after(Cursor::START, 10).await.unwrap();
        let parents: Vec<&str> = stored
            .iter()
            .map(|e| e.trace_context["traceparent"].as_str())
            .collect();
        assert_eq!(parents, [first, second]);
    }
}
