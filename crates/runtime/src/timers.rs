//! Durable timers: SLA deadlines, follow-up steps, anything that must happen at a time even
//! if the process that scheduled it is gone.
//!
//! Timers are rows, not tasks: one row per (kind, subject), scheduled inside the caller's
//! transaction. A scheduler deletes a chunk of due rows (skipping rows others hold, `FOR UPDATE
//! SKIP LOCKED`, on PostgreSQL) in the transaction that fires them; a chunk whose transaction
//! failed is claimed under a lease instead and fired row by row. It then sleeps until the next
//! due time or until woken by a newly scheduled one. A replica that dies mid-chunk loses
//! nothing: its transaction rolls back, or its lease runs out and another replica claims the
//! rows again; a fire whose lease was taken over in the meantime is rolled back, so each timer
//! takes effect once. A timer that came due while every replica was down fires on start.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::consumer::HandlerError;
use crate::db::{Backend, Batch, Db, DbError, Tx, Value, from_micros, to_micros};
use crate::metrics::Staged;
use crate::telemetry;

/// A timer to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer {
    /// What the timer is for, e.g. `sla_deadline`.
    pub kind: String,
    /// What it is about, e.g. a lead id. Scheduling the same kind and subject again replaces it.
    pub subject: String,
    pub due_at: Timestamp,
    pub payload: Vec<u8>,
}

/// A claimed timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub timer_id: String,
    pub kind: String,
    pub subject: String,
    pub due_at: Timestamp,
    pub payload: Vec<u8>,
    /// How many times it was claimed under a lease: 0 when taken straight by the transaction
    /// that fires it, 1 on the first claim, more when a previous claim's lease ran out.
    pub attempts: i64,
    /// W3C trace context of the span that scheduled it; the fire runs in a child of it.
    pub trace_context: BTreeMap<String, String>,
}

/// How many timers wait, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerBacklog {
    /// Every timer not yet fired.
    pub scheduled: i64,
    /// Those whose due time has passed.
    pub due: i64,
    /// Those due longer ago than the grace given to [`backlog`]: the scheduler is behind.
    pub overdue: i64,
}

/// Counts `db`'s timers: scheduled, due at `now`, and due more than `overdue_after` before
/// `now`. Due and overdue are range scans of the due-time index (normally few rows); the
/// scheduled total on PostgreSQL is the planner's row estimate, because counting a million
/// open timers every few seconds would cost more than the figure is worth.
pub async fn backlog(
    db: &Db,
    now: Timestamp,
    overdue_after: SignedDuration,
) -> Result<TimerBacklog, DbError> {
    let overdue_before = now.checked_sub(overdue_after).unwrap_or(now);
    let scheduled = match db.backend() {
        Backend::Postgres => {
            "SELECT CAST(GREATEST(reltuples, 0) AS BIGINT) FROM pg_class \
             WHERE oid = CAST('timers' AS regclass)"
        }
        Backend::Sqlite => "SELECT COUNT(*) FROM timers",
    };
    let scheduled: i64 = sqlx::query_scalar(scheduled).fetch_one(db.reader()).await?;
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM timers WHERE due_at <= $1) AS due, \
         (SELECT COUNT(*) FROM timers WHERE due_at <= $2) AS overdue",
    )
    .bind(to_micros(now))
    .bind(to_micros(overdue_before))
    .fetch_one(db.reader())
    .await?;
    let due: i64 = row.try_get("due")?;
    Ok(TimerBacklog {
        // The estimate can lag behind; never report fewer scheduled than due.
        scheduled: scheduled.max(due),
        due,
        overdue: row.try_get("overdue")?,
    })
}

/// Fires timers: applies their effects inside the transaction that completes them.
///
/// Metrics of a fire are recorded with [`crate::metrics::on_commit`]: they are published when
/// its transaction commits, and discarded with a rollback (the timer is fired again later).
pub trait TimerHandler: Send + Sync {
    /// Timers fired per transaction. A handler that loads and writes a transaction's effects a
    /// table at a time (`load`, `flush`) spreads its round trips further with more; one that
    /// locks rows per timer risks more deadlocks between replicas with more.
    const COMMIT_EVERY: usize = DEFAULT_COMMIT_EVERY;

    fn fire(
        &self,
        tx: &mut Tx,
        timer: &Timer,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called inside a transaction after its timers were completed and before any of them
    /// fires (`timers` are the ones that will): the place to load what they all need with one
    /// query per table, so a transaction of many timers costs a few round trips rather than a
    /// few per timer. An error rolls back the transaction like a failing `fire`.
    fn load(
        &self,
        tx: &mut Tx,
        timers: &[Timer],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (tx, timers);
        async { Ok(()) }
    }

    /// Called inside the transaction after its timers fired, before it commits: the place to
    /// write what `fire` buffered, with multi-row statements. An error rolls back everything
    /// the transaction fired, like a failing `fire`.
    fn flush(&self, tx: &mut Tx) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }

    /// Called after the transaction that applied the effects committed: the place to wake
    /// this process's own subscribers and schedulers.
    fn after_commit(&self) {}

    /// Called once per transaction's chunk before any of it fires, while the transaction
    /// takes and loads its timers: the place for one call that every timer of the chunk
    /// depends on (e.g. asking another service about all their subjects at once). An error
    /// leaves the whole chunk claimed: it is retried when the lease runs out, and nothing of
    /// it fires before.
    fn prepare(&self, batch: &[Timer]) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = batch;
        async { Ok(()) }
    }
}

/// What a claim or take returns: the columns [`Timer`] is read from.
const TIMER_COLUMNS: &str = "timer_id, kind, subject, due_at, payload, attempts, trace_context";
/// How long a claim lasts before another replica may take the timer over.
const LEASE: SignedDuration = SignedDuration::from_secs(30);
/// Timers fired per transaction unless the handler says otherwise: enough to spread a commit
/// over many, few enough that one transaction does not hold its locks (SQLite's single
/// writer, the rows a handler updates) for long.
const DEFAULT_COMMIT_EVERY: usize = 32;
/// Rows per statement of [`Timers::schedule_all`] and [`Timers::cancel_all`]: far below either
/// backend's limit on bound parameters.
const WRITE_ROWS: usize = 500;
/// Schedulers per process on PostgreSQL unless `FAIRCHANCE_TIMER_WORKERS` says otherwise. One
/// scheduler leaves the database idle while it works out a transaction's effects, and itself
/// idle while the database writes them; several overlap the two (on 2 cores, followup's
/// dispatch went from 5,400 steps/s with one to 7,700 with two and 10,400 with four).
pub const POSTGRES_WORKERS: usize = 4;

/// How many schedulers a process runs on `backend` with a pool of `pool` connections: the
/// configured number, else on PostgreSQL [`POSTGRES_WORKERS`] but at most half the pool (each
/// holds a connection while it fires; calls and consumers need the rest), and one on SQLite,
/// whose single writer a second scheduler would only wait for.
pub fn workers(configured: Option<usize>, backend: Backend, pool: u32) -> usize {
    configured.unwrap_or(match backend {
        Backend::Postgres => POSTGRES_WORKERS.min((pool as usize / 2).max(1)),
        Backend::Sqlite => 1,
    })
}

/// Longest sleep without looking: catches timers scheduled by other replicas and expired
/// leases. Timers scheduled in this process wake the scheduler at once.
const FALLBACK: Duration = Duration::from_secs(1);

/// What one transaction of [`Timers::fire_due`] did.
enum Taken {
    /// It fired this many timers (none: nothing was due) and committed.
    Fired(usize),
    /// It took `timers` and rolled back: `prepare` failed, or loading, firing or flushing.
    Failed {
        timers: Vec<Timer>,
        prepared: Result<(), HandlerError>,
    },
}

/// The timers of one service's database, claimed as one replica.
#[derive(Debug, Clone)]
pub struct Timers {
    db: Db,
    replica: String,
    wake: Arc<watch::Sender<u64>>,
    crew: Arc<Crew>,
}

/// What the schedulers of one process share (see [`Timers::run`]).
#[derive(Debug, Default)]
struct Crew {
    /// Held by the one scheduler that sleeps until the next due time.
    watch: tokio::sync::Mutex<()>,
    /// Wakes the others to help with a backlog.
    help: tokio::sync::Notify,
    /// Where the schedulers may start looking for due timers, for a while.
    floor: std::sync::Mutex<Option<Floor>>,
}

/// A due time below which the schedulers found no timer left to take. A fired timer's row
/// stays in the due-time index, dead, until vacuum, and a look for due timers walks every
/// such entry from the oldest on: behind a dispatched backlog of 200,000 steps that is 550
/// index pages, about a millisecond, on every step's path until autovacuum comes. A look
/// from the floor descends straight past them.
///
/// Only a full look (from the start of the index) that left nothing due sets a floor, and
/// only for [`FALLBACK`]; a wake-up drops it. A timer set below it by this process comes with
/// a wake-up. One set below it by another replica, or given back below it (a rolled-back
/// transaction of another replica, a lapsed lease), is found by the next full look, at most
/// [`FALLBACK`] later, as the fallback finds another replica's timers in any case.
#[derive(Debug, Clone, Copy)]
struct Floor {
    due_at: Timestamp,
    /// When the full look that set it began.
    since: std::time::Instant,
}

impl Crew {
    /// The floor to look from, if one is current.
    fn floor(&self) -> Option<Timestamp> {
        let floor = self.floor.lock().unwrap_or_else(|e| e.into_inner());
        floor
            .filter(|f| f.since.elapsed() < FALLBACK)
            .map(|f| f.due_at)
    }

    /// Records that a look from `from` (`None`: the start of the index), begun at `since`,
    /// left nothing due at `now` to take.
    fn looked(&self, from: Option<Timestamp>, now: Timestamp, since: std::time::Instant) {
        let mut floor = self.floor.lock().unwrap_or_else(|e| e.into_inner());
        match (from, floor.as_mut()) {
            (None, _) => *floor = Some(Floor { due_at: now, since }),
            // A look from a floor keeps that floor's age, raised to what it found.
            (Some(_), Some(current)) => current.due_at = current.due_at.max(now),
            // The floor was dropped meanwhile (a wake-up): only a full look sets one.
            (Some(_), None) => {}
        }
    }

    fn drop_floor(&self) {
        *self.floor.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Timers {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            replica: Uuid::now_v7().to_string(),
            wake: Arc::new(watch::channel(0).0),
            crew: Arc::default(),
        }
    }

    /// Schedules (or reschedules) a timer inside the caller's transaction. Call [`Timers::wake`]
    /// after the commit so this replica's scheduler looks again.
    ///
    /// The current span's trace context is stored with it, as the event log does at append:
    /// the fire continues the trace of whatever scheduled it (a rescheduling takes over).
    pub async fn schedule(tx: &mut Tx, timer: &NewTimer) -> Result<(), DbError> {
        let trace = telemetry::encode_trace_context(&telemetry::current_trace_context());
        sqlx::query(
            "INSERT INTO timers (timer_id, kind, subject, due_at, payload, trace_context) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, payload = excluded.payload, \
             trace_context = excluded.trace_context, claimed_by = '', claimed_until = 0, attempts = 0",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(timer.kind.as_str())
        .bind(timer.subject.as_str())
        .bind(to_micros(timer.due_at))
        .bind(timer.payload.clone())
        .bind(trace)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// [`Timers::schedule`] for many timers at once, with one statement per few hundred; of
    /// two timers of the same kind and subject, the later one is kept. Each comes with the
    /// trace context it continues when it fires (captured with
    /// [`telemetry::current_trace_context`] when it was decided, e.g. inside the span of the
    /// step that set it), since the timers are written together, outside those spans.
    pub async fn schedule_all(
        tx: &mut Tx,
        timers: &[(NewTimer, BTreeMap<String, String>)],
    ) -> Result<(), DbError> {
        let mut batch = Batch::default();
        Self::schedule_into(&mut batch, timers);
        batch.execute(tx).await
    }

    /// [`Timers::schedule_all`], as statements of `batch` (written with the rest of it).
    pub fn schedule_into<'a>(
        batch: &mut Batch<'a>,
        timers: &'a [(NewTimer, BTreeMap<String, String>)],
    ) {
        // PostgreSQL refuses a statement that upserts the same row twice.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<&(NewTimer, BTreeMap<String, String>)> = timers
            .iter()
            .rev()
            .filter(|(t, _)| seen.insert((t.kind.as_str(), t.subject.as_str())))
            .collect();
        unique.reverse();
        for chunk in unique.chunks(WRITE_ROWS) {
            let sql = format!(
                "INSERT INTO timers (timer_id, kind, subject, due_at, payload, trace_context) VALUES {} \
                 ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, payload = excluded.payload, \
                 trace_context = excluded.trace_context, claimed_by = '', claimed_until = 0, attempts = 0",
                crate::db::values_placeholders(chunk.len(), 6)
            );
            let mut values: Vec<Value<'a>> = Vec::with_capacity(chunk.len() * 6);
            for (timer, trace) in chunk {
                values.extend([
                    Uuid::now_v7().to_string().into(),
                    timer.kind.as_str().into(),
                    timer.subject.as_str().into(),
                    to_micros(timer.due_at).into(),
                    timer.payload.as_slice().into(),
                    telemetry::encode_trace_context(trace).into(),
                ]);
            }
            batch.push(sql, values);
        }
    }

    /// [`Timers::cancel`] for many subjects of one kind; returns how many there were.
    pub async fn cancel_all(tx: &mut Tx, kind: &str, subjects: &[String]) -> Result<u64, DbError> {
        let mut deleted = 0;
        for chunk in subjects.chunks(WRITE_ROWS) {
            let list = (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("DELETE FROM timers WHERE kind = $1 AND subject IN ({list})");
            let mut query = sqlx::query(&sql).bind(kind);
            for subject in chunk {
                query = query.bind(subject.as_str());
            }
            deleted += query.execute(&mut **tx).await?.rows_affected();
        }
        Ok(deleted)
    }

    /// [`Timers::cancel_all`], as statements of `batch` (written with the rest of it).
    pub fn cancel_into<'a>(batch: &mut Batch<'a>, kind: &'a str, subjects: &'a [String]) {
        for chunk in subjects.chunks(WRITE_ROWS) {
            let sql = format!(
                "DELETE FROM timers WHERE kind = $1 AND subject IN ({})",
                crate::db::list_placeholders(1, chunk.len())
            );
            let values = std::iter::once(kind.into())
                .chain(chunk.iter().map(|s| s.as_str().into()))
                .collect();
            batch.push(sql, values);
        }
    }

    /// Cancels a timer inside the caller's transaction; true if there was one.
    pub async fn cancel(tx: &mut Tx, kind: &str, subject: &str) -> Result<bool, DbError> {
        let deleted = sqlx::query("DELETE FROM timers WHERE kind = $1 AND subject = $2")
            .bind(kind)
            .bind(subject)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Another scheduler of the same timers, sharing this one's wake-up and crew. It claims under
    /// an id of its own, so the claims it fences and releases are its own, as another replica's
    /// are.
    fn worker(&self) -> Self {
        Self {
            db: self.db.clone(),
            replica: Uuid::now_v7().to_string(),
            wake: Arc::clone(&self.wake),
            crew: Arc::clone(&self.crew),
        }
    }

    /// Runs `workers` schedulers (see [`Timers::run`]) until `stop`, each with a handler made
    /// by `handler`: a handler keeps a transaction's state between `load`, `fire` and `flush`,
    /// so schedulers must not share one. They divide the due timers between them as replicas
    /// do (`SKIP LOCKED` claims, fenced completion), each under an id of its own (this one's
    /// stays unused), and share its wake-up: [`Timers::wake`] on it or a clone wakes the one
    /// watching for the next due time (see [`Timers::run`]).
    pub fn spawn<H, F>(
        &self,
        workers: usize,
        clock: SharedClock,
        stop: CancellationToken,
        handler: F,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        H: TimerHandler + 'static,
        F: Fn() -> H,
    {
        (0..workers.max(1))
            .map(|_| {
                let (worker, handler, clock, stop) =
                    (self.worker(), handler(), clock.clone(), stop.clone());
                tokio::spawn(async move { worker.run(clock, handler, stop).await })
            })
            .collect()
    }

    /// Wakes this replica's scheduler that watches for the next due time (after committing a
    /// newly scheduled timer).
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The row-lock clause of a query that picks due timers.
    fn skip_locked(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // One writer: nothing to skip.
            Backend::Sqlite => "",
        }
    }

    /// Claims up to `limit` timers due at `now`, earliest first, under a lease.
    pub async fn claim_due(&self, now: Timestamp, limit: i64) -> Result<Vec<Timer>, DbError> {
        let lock = self.skip_locked();
        let sql = format!(
            "UPDATE timers SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
             WHERE timer_id IN (SELECT timer_id FROM timers WHERE due_at <= $3 AND claimed_until <= $3 \
                                ORDER BY due_at LIMIT $4 {lock}) \
             RETURNING {TIMER_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(self.replica.as_str())
            .bind(to_micros(now.saturating_add(LEASE).unwrap_or(now)))
            .bind(to_micros(now))
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        let mut timers = rows
            .iter()
            .map(timer_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        timers.sort_by_key(|t| t.due_at);
        Ok(timers)
    }

    /// Deletes a claimed timer inside the transaction that will hold its effects; false when
    /// this replica no longer holds the claim (the lease ran out and another took over, or it
    /// was rescheduled): the caller must then do nothing and roll back.
    pub async fn complete(&self, tx: &mut Tx, timer: &Timer) -> Result<bool, DbError> {
        let deleted = sqlx::query(
            "DELETE FROM timers WHERE timer_id = $1 AND claimed_by = $2 AND attempts = $3",
        )
        .bind(timer.timer_id.as_str())
        .bind(self.replica.as_str())
        .bind(timer.attempts)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(deleted == 1)
    }

    /// Gives back this replica's claims (at shutdown), so others fire them at once.
    pub async fn release(&self) -> Result<(), DbError> {
        sqlx::query("UPDATE timers SET claimed_by = '', claimed_until = 0 WHERE claimed_by = $1")
            .bind(self.replica.as_str())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The earliest due time among unclaimed timers (and claims whose lease ran out).
    pub async fn next_due(&self, now: Timestamp) -> Result<Option<Timestamp>, DbError> {
        self.next_due_from(now, None).await
    }

    /// [`Timers::next_due`] at or after `from` (see [`Floor`]).
    async fn next_due_from(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, DbError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(due_at) FROM timers WHERE due_at >= $2 AND claimed_until <= $1",
        )
        .bind(to_micros(now))
        .bind(from.map_or(i64::MIN, to_micros))
        .fetch_one(self.db.reader())
        .await?;
        Ok(next.map(from_micros))
    }

    /// Number of timers, and of those due at `now` (for metrics).
    pub async fn counts(&self, now: Timestamp) -> Result<(i64, i64), DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END), 0) AS due FROM timers")
            .bind(to_micros(now))
            .fetch_one(self.db.reader())
            .await?;
        Ok((row.try_get("total")?, row.try_get("due")?))
    }

    /// Fires every timer due at `now`, a transaction's chunk at a time; returns how many took
    /// effect. A failing handler leaves its timer claimed: it is retried when the lease runs
    /// out.
    ///
    /// Each transaction takes (deletes) up to a chunk of due timers, skipping rows locked by
    /// others on PostgreSQL, and fires them. No claim is committed first, so a timer that just
    /// came due takes effect a round trip and a commit sooner, and each fired timer's row is
    /// written once. A replica that dies mid-transaction loses nothing: the rollback gives its
    /// rows back at once. A chunk that fails (`prepare`, `load`, `fire` or `flush`) is rolled
    /// back and claimed under a lease instead, then fired one by one, each failure kept to
    /// itself and retried when its lease runs out; or, when `prepare` failed, left claimed.
    pub async fn fire_due<H: TimerHandler>(
        &self,
        now: Timestamp,
        handler: &H,
    ) -> Result<usize, DbError> {
        Ok(self.fire_due_from(now, None, handler).await?.0)
    }

    /// [`Timers::fire_due`] looking from `from` (see [`Floor`]); also says whether it ended
    /// because nothing was left due to take (rather than on a batch that was not ready).
    async fn fire_due_from<H: TimerHandler>(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        handler: &H,
    ) -> Result<(usize, bool), DbError> {
        let chunk = H::COMMIT_EVERY.max(1);
        let mut fired = 0;
        loop {
            let (outcome, staged) =
                Staged::collect(self.take_and_fire(now, from, chunk, handler)).await;
            match outcome? {
                Taken::Fired(0) => return Ok((fired, true)),
                Taken::Fired(n) => {
                    staged.publish();
                    handler.after_commit();
                    fired += n;
                    if n < chunk {
                        return Ok((fired, true));
                    }
                    // A full transaction: likely more than one scheduler's worth is due.
                    self.crew.help.notify_waiters();
                }
                Taken::Failed { timers, prepared } => {
                    let claimed = self.claim_these(now, &timers).await?;
                    if let Err(error) = prepared {
                        tracing::warn!(timers = claimed.len(), %error, "timer batch not ready; retried after its lease");
                        return Ok((fired, false));
                    }
                    fired += self.fire_chunk(&claimed, handler).await?;
                }
            }
        }
    }

    /// One transaction of [`Timers::fire_due`].
    async fn take_and_fire<H: TimerHandler>(
        &self,
        now: Timestamp,
        from: Option<Timestamp>,
        limit: usize,
        handler: &H,
    ) -> Result<Taken, DbError> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "DELETE FROM timers WHERE timer_id IN (SELECT timer_id FROM timers \
             WHERE due_at >= $3 AND due_at <= $1 AND claimed_until <= $1 ORDER BY due_at LIMIT $2 {}) \
             RETURNING {TIMER_COLUMNS}",
            self.skip_locked()
        );
        let rows = sqlx::query(&sql)
            .bind(to_micros(now))
            .bind(limit as i64)
            .bind(from.map_or(i64::MIN, to_micros))
            .fetch_all(&mut *tx)
            .await?;
        let mut timers = rows
            .iter()
            .map(timer_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if timers.is_empty() {
            tx.rollback().await?;
            return Ok(Taken::Fired(0));
        }
        timers.sort_by_key(|t| t.due_at);
        let (prepared, loaded) =
            tokio::join!(handler.prepare(&timers), handler.load(&mut tx, &timers));
        // Nothing fires before `prepare` answered.
        if let Err(error) = prepared {
            tx.rollback().await?;
            return Ok(Taken::Failed {
                timers,
                prepared: Err(error),
            });
        }
        let applied = async {
            loaded?;
            for timer in &timers {
                handler
                    .fire(&mut tx, timer)
                    .instrument(fire_span(timer))
                    .await?;
            }
            handler.flush(&mut tx).await
        }
        .await;
        if applied.is_err() {
            tx.rollback().await?;
            return Ok(Taken::Failed {
                timers,
                prepared: Ok(()),
            });
        }
        tx.commit().await?;
        Ok(Taken::Fired(timers.len()))
    }

    /// Claims `timers` (taken and given back by a failed transaction) under a lease, those
    /// still due that no one else claimed in between: one rescheduled meanwhile (the
    /// transaction that failed may have been the loser of a deadlock with the one that
    /// rescheduled it) waits for its new due time.
    async fn claim_these(&self, now: Timestamp, timers: &[Timer]) -> Result<Vec<Timer>, DbError> {
        let mut claimed = Vec::with_capacity(timers.len());
        for chunk in timers.chunks(WRITE_ROWS) {
            let sql = format!(
                "UPDATE timers SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
                 WHERE due_at <= $3 AND claimed_until <= $3 AND timer_id IN ({}) RETURNING {TIMER_COLUMNS}",
                (0..chunk.len())
                    .map(|i| format!("${}", i + 4))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut query = sqlx::query(&sql)
                .bind(self.replica.as_str())
                .bind(to_micros(now.saturating_add(LEASE).unwrap_or(now)))
                .bind(to_micros(now));
            for timer in chunk {
                query = query.bind(timer.timer_id.as_str());
            }
            for row in query.fetch_all(self.db.pool()).await? {
                claimed.push(timer_from_row(&row)?);
            }
        }
        claimed.sort_by_key(|t| t.due_at);
        Ok(claimed)
    }

    /// Fires claimed timers in one transaction, each inside its own savepoint: one commit for
    /// the chunk, while a failing timer rolls back only itself and stays claimed, to be
    /// retried when its lease runs out.
    async fn fire_chunk<H: TimerHandler>(
        &self,
        chunk: &[Timer],
        handler: &H,
    ) -> Result<usize, DbError> {
        let mut tx = self.db.begin().await?;
        let mut fired = 0;
        // What the timers that took effect recorded, published after the commit.
        let mut kept = Staged::default();
        for timer in chunk {
            sqlx::query("SAVEPOINT timer").execute(&mut *tx).await?;
            // Completing first takes the row (fenced by the claim) before any effect, so a
            // replica that lost its claim does nothing, and the handler is free to schedule
            // the same timer again (a fresh window).
            let (outcome, staged) = Staged::collect(async {
                match self.complete(&mut tx, timer).await {
                    Ok(false) => {
                        tracing::info!(kind = %timer.kind, subject = %timer.subject, "timer taken over or rescheduled; skipped");
                        Ok(false)
                    }
                    Ok(true) => {
                        let timers = std::slice::from_ref(timer);
                        handler.load(&mut tx, timers).await?;
                        handler
                            .fire(&mut tx, timer)
                            .instrument(fire_span(timer))
                            .await?;
                        handler.flush(&mut tx).await?;
                        Ok(true)
                    }
                    Err(error) => Err(HandlerError::from(error)),
                }
            })
            .await;
            match outcome {
                Ok(took_effect) => {
                    sqlx::query("RELEASE SAVEPOINT timer")
                        .execute(&mut *tx)
                        .await?;
                    fired += usize::from(took_effect);
                    kept.append(staged);
                }
                Err(error) => {
                    tracing::warn!(kind = %timer.kind, subject = %timer.subject, %error, "timer failed; retried after its lease");
                    sqlx::query("ROLLBACK TO SAVEPOINT timer")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT timer")
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        kept.publish();
        if fired > 0 {
            handler.after_commit();
        }
        Ok(fired)
    }

    /// The scheduler: fires due timers, then sleeps until the next due time, a wake-up, or the
    /// fallback interval. Releases its claims when `stop` is cancelled.
    ///
    /// Of the schedulers of one process (see [`Timers::spawn`]), only one sleeps until the next
    /// due time and listens for wake-ups; the others sleep until it asks for help (it took a
    /// full transaction's worth: a backlog) or the fallback interval passes. All of them waking
    /// for every due time would have each race the others for timers only one takes, and on two
    /// cores that race doubled a lone follow-up step's due-to-visible latency. The price: while
    /// the watcher fires a chunk smaller than a transaction, no one watches, and a timer coming
    /// due meanwhile waits for that chunk's commit, or at most the fallback interval.
    ///
    /// Once a look has left nothing due, the schedulers look from that time on for a while
    /// (see [`Floor`]), past the entries that fired timers leave in the index until vacuum.
    pub async fn run<H: TimerHandler>(
        &self,
        clock: SharedClock,
        handler: H,
        stop: CancellationToken,
    ) {
        let mut woken = self.wake.subscribe();
        loop {
            woken.borrow_and_update();
            let now = clock.now();
            let from = self.crew.floor();
            let since = std::time::Instant::now();
            match self.fire_due_from(now, from, &handler).await {
                Ok((_, true)) => self.crew.looked(from, now, since),
                Ok((_, false)) => {}
                Err(error) => tracing::warn!(%error, "firing timers failed; retrying"),
            }
            let helped = self.crew.help.notified();
            let Ok(_watching) = self.crew.watch.try_lock() else {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = helped => {}
                    _ = tokio::time::sleep(FALLBACK) => {}
                }
                continue;
            };
            let sleep = match self.next_due_from(clock.now(), self.crew.floor()).await {
                Ok(Some(due)) => {
                    let until = clock.now().duration_until(due);
                    Duration::try_from(until)
                        .unwrap_or(Duration::ZERO)
                        .min(FALLBACK)
                }
                Ok(None) => FALLBACK,
                Err(error) => {
                    tracing::warn!(%error, "reading the next timer failed");
                    FALLBACK
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                // Something was scheduled here, perhaps below the floor.
                _ = woken.changed() => self.crew.drop_floor(),
                _ = sleep_precisely(sleep) => {}
            }
        }
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "releasing timer claims failed; they are retried after the lease");
        }
    }
}

/// The part of a sleep [`sleep_precisely`] spends on a blocking thread.
const PRECISE_TAIL: Duration = Duration::from_millis(2);

/// Sleeps for `duration`, waking within tens of microseconds of its end. tokio's timer ticks
/// in milliseconds and rounds up, so a scheduler it wakes is most of a millisecond late on
/// average, which a timer due now would add to its lateness. The last stretch is slept on a
/// blocking thread instead, held at most [`PRECISE_TAIL`]; a sleep given up meanwhile (a
/// wake-up won the race) leaves that thread to finish it.
async fn sleep_precisely(duration: Duration) {
    let end = tokio::time::Instant::now() + duration;
    if duration > PRECISE_TAIL {
        tokio::time::sleep_until(end - PRECISE_TAIL).await;
    }
    let left = end.saturating_duration_since(tokio::time::Instant::now());
    if !left.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
}

fn timer_from_row(row: &AnyRow) -> Result<Timer, DbError> {
    Ok(Timer {
        timer_id: row.try_get("timer_id")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        due_at: from_micros(row.try_get("due_at")?),
        payload: row.try_get("payload")?,
        attempts: row.try_get("attempts")?,
        trace_context: telemetry::decode_trace_context(&row.try_get::<String, _>("trace_context")?),
    })
}

/// The span a timer fires in: a child of the span that scheduled it, so what the handler
/// appends carries that trace on (a lead's SLA breach joins the lead's trace). No subject:
/// some are contact keys, personal data that must stay out of traces.
fn fire_span(timer: &Timer) -> tracing::Span {
    let span = tracing::info_span!(
        "timer.fire",
        kind = %timer.kind,
        attempts = timer.attempts,
        otel.kind = "consumer"
    );
    telemetry::set_parent_from(&span, &timer.trace_context);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_comes_from_a_full_look_and_lasts_until_a_wake_up_or_the_fallback() {
        let crew = Crew::default();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let now = std::time::Instant::now();
        assert_eq!(crew.floor(), None);
        // A look from a floor sets none.
        crew.looked(Some(t(5)), t(10), now);
        assert_eq!(crew.floor(), None);
        crew.looked(None, t(10), now);
        assert_eq!(crew.floor(), Some(t(10)));
        // Looks from it raise it, never lower it.
        crew.looked(Some(t(10)), t(20), now);
        crew.looked(Some(t(10)), t(15), now);
        assert_eq!(crew.floor(), Some(t(20)));
        crew.drop_floor();
        assert_eq!(crew.floor(), None);
        // A floor older than the fallback is not used, and looks from it keep its age.
        let old = now
            .checked_sub(FALLBACK + Duration::from_millis(1))
            .unwrap();
        crew.looked(None, t(30), old);
        crew.looked(Some(t(30)), t(40), now);
        assert_eq!(crew.floor(), None);
    }

    #[test]
    fn schedulers_default_by_backend_within_half_the_pool() {
        assert_eq!(workers(None, Backend::Postgres, 16), POSTGRES_WORKERS);
        assert_eq!(workers(None, Backend::Postgres, 4), 2);
        assert_eq!(workers(None, Backend::Postgres, 1), 1);
        assert_eq!(workers(None, Backend::Sqlite, 16), 1);
        // A configured number is taken as given (the configuration refuses one that would
        // hold the whole pool).
        assert_eq!(workers(Some(6), Backend::Postgres, 16), 6);
        assert_eq!(workers(Some(3), Backend::Sqlite, 16), 3);
    }
}
