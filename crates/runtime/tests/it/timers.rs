//! Durable timers on both backends: due order, rescheduling, exactly-once firing across
//! concurrent schedulers, crash recovery through leases, the live scheduler loop, and the
//! trace a timer fires in.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use runtime::consumer::HandlerError;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{Db, ManualClock, Tx};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

fn t0() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

fn timer(subject: &str, due: Timestamp) -> NewTimer {
    NewTimer {
        kind: "sla_deadline".into(),
        subject: subject.into(),
        due_at: due,
        payload: subject.as_bytes().to_vec(),
    }
}

async fn schedule(db: &Db, timers: &[NewTimer]) {
    let mut tx = db.begin().await.unwrap();
    for t in timers {
        Timers::schedule(&mut tx, t).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Records each fired timer in the same transaction that completes it.
struct Record;

impl TimerHandler for Record {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO fired (subject) VALUES ($1)")
            .bind(timer.subject.clone())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A fresh PostgreSQL database with the `fired` table, for the scenarios only it can run.
async fn postgres() -> Option<(TestDb, Db)> {
    let test_db = TestDb::postgres().await?;
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    prepare(&db).await;
    Some((test_db, db))
}

async fn fired(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT subject FROM fired ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn prepare(db: &Db) {
    let ddl = match db.backend() {
        runtime::Backend::Postgres => {
            "CREATE TABLE fired (seq BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL)"
        }
        runtime::Backend::Sqlite => {
            "CREATE TABLE fired (seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL)"
        }
    };
    sqlx::query(ddl).execute(db.pool()).await.unwrap();
}

pub async fn due_timers_fire_in_order_once(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let m = SignedDuration::from_mins;
    schedule(
        &db,
        &[
            timer("c", t0() + m(30)),
            timer("a", t0() + m(5)),
            timer("b", t0() + m(10)),
        ],
    )
    .await;
    assert_eq!(timers.next_due(t0()).await.unwrap(), Some(t0() + m(5)));
    assert_eq!(timers.fire_due(t0(), &Record).await.unwrap(), 0);
    assert_eq!(timers.fire_due(t0() + m(10), &Record).await.unwrap(), 2);
    assert_eq!(fired(&db).await, ["a", "b"]);
    // Fired timers are gone; firing again does nothing.
    assert_eq!(timers.fire_due(t0() + m(10), &Record).await.unwrap(), 0);
    assert_eq!(timers.counts(t0() + m(10)).await.unwrap(), (1, 0));
    assert_eq!(timers.fire_due(t0() + m(60), &Record).await.unwrap(), 1);
    assert_eq!(fired(&db).await, ["a", "b", "c"]);
}

pub async fn rescheduling_replaces_and_cancel_removes(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let m = SignedDuration::from_mins;
    schedule(&db, &[timer("a", t0() + m(5)), timer("b", t0() + m(5))]).await;
    // A fresh window for "a" (a reassignment), and "b" activated in time.
    schedule(&db, &[timer("a", t0() + m(65))]).await;
    let mut tx = db.begin().await.unwrap();
    assert!(Timers::cancel(&mut tx, "sla_deadline", "b").await.unwrap());
    assert!(
        !Timers::cancel(&mut tx, "sla_deadline", "nope")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(timers.fire_due(t0() + m(10), &Record).await.unwrap(), 0);
    assert_eq!(timers.fire_due(t0() + m(70), &Record).await.unwrap(), 1);
    assert_eq!(fired(&db).await, ["a"]);
}

pub async fn a_crashed_claim_is_retried_after_its_lease_and_its_late_fire_rolls_back(db: Db) {
    prepare(&db).await;
    let crashed = Timers::new(db.clone());
    let other = Timers::new(db.clone());
    schedule(&db, &[timer("a", t0())]).await;
    // A replica claims the timer and dies before firing it.
    let claimed = crashed.claim_due(t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    // Within the lease nobody else takes it.
    assert_eq!(
        other
            .fire_due(t0() + SignedDuration::from_secs(10), &Record)
            .await
            .unwrap(),
        0
    );
    // After the lease another replica fires it.
    assert_eq!(
        other
            .fire_due(t0() + SignedDuration::from_secs(31), &Record)
            .await
            .unwrap(),
        1
    );
    assert_eq!(fired(&db).await, ["a"]);
    // The first replica, back from the dead, cannot complete it any more.
    let mut tx = db.begin().await.unwrap();
    assert!(!crashed.complete(&mut tx, &claimed[0]).await.unwrap());
    tx.rollback().await.unwrap();
}

pub async fn released_claims_fire_at_once(db: Db) {
    prepare(&db).await;
    let stopping = Timers::new(db.clone());
    let other = Timers::new(db.clone());
    schedule(&db, &[timer("a", t0())]).await;
    assert_eq!(stopping.claim_due(t0(), 10).await.unwrap().len(), 1);
    stopping.release().await.unwrap();
    assert_eq!(other.fire_due(t0(), &Record).await.unwrap(), 1);
}

pub async fn the_scheduler_sleeps_until_due_and_wakes_for_new_timers(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let clock = runtime::SystemClock;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let timers = timers.clone();
        let stop = stop.clone();
        async move { timers.run(Arc::new(clock), Record, stop).await }
    });
    // Scheduled while the loop is asleep with nothing to do.
    tokio::time::sleep(Duration::from_millis(100)).await;
    schedule(
        &db,
        &[timer(
            "soon",
            Timestamp::now() + SignedDuration::from_millis(300),
        )],
    )
    .await;
    timers.wake();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = fired(&db).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["soon"]);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// A running scheduler looks for due timers from a floor after a look that left nothing due,
/// but only for a while: a timer set below it by another process, without a wake-up (here one
/// due an hour ago), is still found and fired.
pub async fn a_timer_set_below_the_floor_without_a_wake_up_still_fires(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let timers = timers.clone();
        let stop = stop.clone();
        async move {
            timers
                .run(Arc::new(runtime::SystemClock), Record, stop)
                .await
        }
    });
    let wait_for = |n: usize| {
        let db = db.clone();
        async move {
            for _ in 0..200 {
                let seen = fired(&db).await;
                if seen.len() >= n {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            fired(&db).await
        }
    };
    schedule(&db, &[timer("first", Timestamp::now())]).await;
    timers.wake();
    assert_eq!(wait_for(1).await, ["first"]);
    // Fired, the scheduler found nothing else due: it now looks from about now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hour_ago = Timestamp::now() - SignedDuration::from_hours(1);
    schedule(&db, &[timer("behind", hour_ago)]).await;
    assert_eq!(wait_for(2).await, ["first", "behind"]);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Several schedulers of one process, each with a handler of its own, share the due timers:
/// every timer fires exactly once, also those scheduled while they run (a wake-up on the
/// original reaches them all), and stopping ends every one of them.
pub async fn spawned_schedulers_fire_each_timer_once(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let due = Timestamp::now() - SignedDuration::from_secs(1);
    let early: Vec<NewTimer> = (0..700)
        .map(|i| timer(&format!("early-{i}"), due))
        .collect();
    schedule(&db, &early).await;
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let workers = timers.spawn(3, Arc::new(runtime::SystemClock), stop.clone(), || {
        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Record
    });
    assert_eq!(workers.len(), 3);
    assert_eq!(
        made.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one handler per scheduler"
    );
    // Scheduled while they run: the fallback poll would find them too, but only after a
    // second; the wake-up makes it sooner.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late: Vec<NewTimer> = (0..50).map(|i| timer(&format!("late-{i}"), due)).collect();
    schedule(&db, &late).await;
    timers.wake();
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = fired(&db).await;
        if seen.len() >= 750 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let distinct: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (750, 750));
    stop.cancel();
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Records like [`Record`], but fails (after writing) for subjects starting with "bad".
struct FailSome;

impl TimerHandler for FailSome {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        Record.fire(tx, timer).await?;
        if timer.subject.starts_with("bad") {
            // A database error mid-transaction, as a broken handler would cause one: on
            // PostgreSQL it aborts the transaction unless only its savepoint is rolled back.
            sqlx::query("SELECT no_such_column FROM fired")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

pub async fn a_failing_timer_rolls_back_alone_and_stays_claimed(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let now: Timestamp = "2026-11-02T09:00:00Z".parse().unwrap();
    let mut batch = Vec::new();
    for n in 0..100 {
        let subject = if n % 10 == 3 {
            format!("bad-{n}")
        } else {
            format!("good-{n}")
        };
        batch.push(timer(&subject, now - SignedDuration::from_secs(100 - n)));
    }
    schedule(&db, &batch).await;
    let fired_now = timers.fire_due(now, &FailSome).await.unwrap();
    assert_eq!(fired_now, 90);
    let recorded = fired(&db).await;
    assert_eq!(recorded.len(), 90, "the failures' own writes rolled back");
    assert!(recorded.iter().all(|s| s.starts_with("good")));
    // The failed ones are still there, claimed until their lease runs out, then retried.
    let (total, _) = timers.counts(now).await.unwrap();
    assert_eq!(total, 10);
    assert_eq!(timers.fire_due(now, &FailSome).await.unwrap(), 0);
    let later = now + SignedDuration::from_mins(1);
    assert_eq!(timers.fire_due(later, &Record).await.unwrap(), 10);
    assert_eq!(fired(&db).await.len(), 100);
}

/// Notes the trace each fire runs in, and refuses subjects starting with "bad".
#[derive(Default)]
struct Traces(std::sync::Mutex<Vec<(String, TraceId)>>);

impl TimerHandler for Traces {
    async fn fire(&self, _tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        let trace = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id();
        self.0
            .lock()
            .expect("traces")
            .push((timer.subject.clone(), trace));
        if timer.subject.starts_with("bad") {
            return Err("refused".into());
        }
        Ok(())
    }
}

/// Buffers what it fires and writes it in `flush`, with one statement per transaction, as a
/// batching handler does; refuses subjects starting with "bad" in `flush`, after buffering.
#[derive(Default)]
struct Buffered {
    loaded: std::sync::Mutex<Vec<Vec<String>>>,
    pending: std::sync::Mutex<Vec<String>>,
    flushes: std::sync::atomic::AtomicUsize,
}

impl TimerHandler for Buffered {
    async fn load(&self, _tx: &mut Tx, timers: &[Timer]) -> Result<(), HandlerError> {
        self.pending.lock().unwrap().clear();
        let subjects = timers.iter().map(|t| t.subject.clone()).collect();
        self.loaded.lock().unwrap().push(subjects);
        Ok(())
    }

    async fn fire(&self, _tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        let loaded = self
            .loaded
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        if !loaded.contains(&timer.subject) {
            return Err("fired without being loaded".into());
        }
        self.pending.lock().unwrap().push(timer.subject.clone());
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx) -> Result<(), HandlerError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if pending.iter().any(|s| s.starts_with("bad")) {
            return Err("a bad timer in this flush".into());
        }
        let values = (1..=pending.len())
            .map(|i| format!("(${i})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO fired (subject) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for subject in &pending {
            query = query.bind(subject.clone());
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }
}

impl Traces {
    fn of(&self, subject: &str) -> Vec<TraceId> {
        let seen = self.0.lock().expect("traces");
        seen.iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// A timer fires in a span of the trace it was scheduled in, on the fast path (one
/// transaction for the chunk) and on the one-savepoint-per-timer path a failure falls back to.
pub async fn a_timer_fires_in_the_trace_that_scheduled_it(db: Db) {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = testkit::set_thread_subscriber(subscriber);
    let trace_of = |span: &tracing::Span| span.context().span().span_context().trace_id();

    let (first, second) = (tracing::info_span!("first"), tracing::info_span!("second"));
    schedule(&db, &[timer("a", t0())])
        .instrument(first.clone())
        .await;
    schedule(&db, &[timer("b", t0())])
        .instrument(second.clone())
        .await;
    let timers = Timers::new(db.clone());
    let handler = Traces::default();
    // Again, now that this test's spans are in use: `timer.fire` may have been registered
    // by another test's thread since (see `testkit::set_thread_subscriber`).
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(timers.fire_due(t0(), &handler).await.unwrap(), 2);
    assert_ne!(trace_of(&first), trace_of(&second));
    assert_eq!(handler.of("a"), [trace_of(&first)]);
    assert_eq!(handler.of("b"), [trace_of(&second)]);

    // A failure rolls the chunk back and fires it again timer by timer: still in each trace.
    let third = tracing::info_span!("third");
    // "c" is due first, so the fast path fires it before failing on "bad".
    let earlier = t0() - SignedDuration::from_secs(1);
    schedule(&db, &[timer("c", earlier), timer("bad", t0())])
        .instrument(third.clone())
        .await;
    let handler = Traces::default();
    assert_eq!(timers.fire_due(t0(), &handler).await.unwrap(), 1);
    assert_eq!(handler.of("c"), [trace_of(&third), trace_of(&third)]);
    assert_eq!(handler.of("bad"), [trace_of(&third), trace_of(&third)]);
}

pub async fn buffered_effects_are_flushed_per_transaction_and_a_failure_stays_alone(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let now = t0();
    let good: Vec<NewTimer> = (0..300)
        .map(|n| {
            timer(
                &format!("good-{n:03}"),
                now - SignedDuration::from_secs(300 - n),
            )
        })
        .collect();
    schedule(&db, &good).await;
    let handler = Buffered::default();
    assert_eq!(timers.fire_due(now, &handler).await.unwrap(), 300);
    let mut recorded = fired(&db).await;
    recorded.sort();
    assert_eq!(recorded.len(), 300);
    assert_eq!(
        recorded,
        good.iter().map(|t| t.subject.clone()).collect::<Vec<_>>()
    );
    let flushes = handler.flushes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        flushes < 300 / 4,
        "{flushes} flushes for 300 timers: effects are not written per transaction"
    );

    // One bad timer among 20: its chunk fails as a whole, then fires timer by timer, each
    // loaded and flushed alone, so only the bad one stays behind.
    let mut batch = Vec::new();
    for n in 0..20 {
        let subject = if n == 7 {
            "bad-7".to_owned()
        } else {
            format!("more-{n:02}")
        };
        batch.push(timer(&subject, now - SignedDuration::from_secs(20 - n)));
    }
    schedule(&db, &batch).await;
    let handler = Buffered::default();
    assert_eq!(timers.fire_due(now, &handler).await.unwrap(), 19);
    let more = fired(&db)
        .await
        .into_iter()
        .filter(|s| !s.starts_with("good"))
        .collect::<Vec<_>>();
    assert_eq!(more.len(), 19);
    assert!(more.iter().all(|s| s.starts_with("more")), "{more:?}");
    let (total, _) = timers.counts(now).await.unwrap();
    assert_eq!(total, 1, "the bad timer stays claimed, to be retried");
}

/// Records like [`Record`], but its `prepare` fails while `ready` is false, as followup's
/// does when intake cannot say which leads may be contacted.
#[derive(Default)]
struct Unprepared {
    ready: std::sync::atomic::AtomicBool,
    prepared: std::sync::atomic::AtomicUsize,
}

impl TimerHandler for Unprepared {
    async fn prepare(&self, batch: &[Timer]) -> Result<(), HandlerError> {
        if !self.ready.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("the other service is away".into());
        }
        self.prepared
            .fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        Record.fire(tx, timer).await
    }
}

pub async fn a_failed_prepare_fires_nothing_and_leaves_the_batch_claimed(db: Db) {
    prepare(&db).await;
    let timers = Timers::new(db.clone());
    let now = t0();
    let batch: Vec<NewTimer> = (0..40)
        .map(|n| {
            timer(
                &format!("lead-{n:02}"),
                now - SignedDuration::from_secs(40 - n),
            )
        })
        .collect();
    schedule(&db, &batch).await;
    let handler = Unprepared::default();
    assert_eq!(timers.fire_due(now, &handler).await.unwrap(), 0);
    assert!(
        fired(&db).await.is_empty(),
        "nothing fires before prepare answered"
    );
    // Left claimed, not given back: another replica (or this one) does not retry it at once.
    let (total, due) = timers.counts(now).await.unwrap();
    assert_eq!((total, due), (40, 40));
    handler
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let other = Timers::new(db.clone());
    let fired_now = other.fire_due(now, &handler).await.unwrap()
        + timers.fire_due(now, &handler).await.unwrap();
    assert!(
        fired_now < 40,
        "the claimed part of the batch waits for its lease: {fired_now} fired"
    );
    // After the lease, everything fires, once.
    let later = now + SignedDuration::from_mins(1);
    assert_eq!(
        fired_now + other.fire_due(later, &handler).await.unwrap(),
        40
    );
    let mut recorded = fired(&db).await;
    recorded.sort();
    assert_eq!(
        recorded,
        batch.iter().map(|t| t.subject.clone()).collect::<Vec<_>>()
    );
}

pub async fn schedule_all_upserts_and_cancel_all_removes(db: Db) {
    let timers = Timers::new(db.clone());
    let now = t0();
    schedule(&db, &[timer("a", now + SignedDuration::from_mins(5))]).await;
    let mut tx = db.begin().await.unwrap();
    // "a" moves earlier; of the two "b", the later one counts.
    let untraced = |timer: NewTimer| (timer, Default::default());
    Timers::schedule_all(
        &mut tx,
        &[
            untraced(timer("a", now - SignedDuration::from_mins(1))),
            untraced(timer("b", now + SignedDuration::from_mins(9))),
            untraced(timer("b", now - SignedDuration::from_mins(2))),
            untraced(timer("c", now - SignedDuration::from_mins(3))),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(timers.counts(now).await.unwrap(), (3, 3));
    let mut tx = db.begin().await.unwrap();
    let cancelled = Timers::cancel_all(&mut tx, "sla_deadline", &["c".into(), "zz".into()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(cancelled, 1);
    let claimed: Vec<String> = timers
        .claim_due(now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.subject)
        .collect();
    assert_eq!(claimed, ["b", "a"]);
}

on_both_backends!(
    due_timers_fire_in_order_once,
    rescheduling_replaces_and_cancel_removes,
    a_crashed_claim_is_retried_after_its_lease_and_its_late_fire_rolls_back,
    released_claims_fire_at_once,
    the_scheduler_sleeps_until_due_and_wakes_for_new_timers,
    a_timer_set_below_the_floor_without_a_wake_up_still_fires,
    spawned_schedulers_fire_each_timer_once,
    a_failing_timer_rolls_back_alone_and_stays_claimed,
    a_timer_fires_in_the_trace_that_scheduled_it,
    buffered_effects_are_flushed_per_transaction_and_a_failure_stays_alone,
    a_failed_prepare_fires_nothing_and_leaves_the_batch_claimed,
    schedule_all_upserts_and_cancel_all_removes,
);

/// Many schedulers on PostgreSQL share due timers without firing any twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_schedulers_fire_each_timer_exactly_once() {
    let Some((_guard, db)) = postgres().await else {
        return;
    };
    let total = 2000;
    let all: Vec<NewTimer> = (0..total)
        .map(|n| timer(&format!("lead-{n}"), t0()))
        .collect();
    for chunk in all.chunks(500) {
        schedule(&db, chunk).await;
    }
    let clock = ManualClock::new(t0() + SignedDuration::from_mins(1));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let timers = Timers::new(db.clone());
            let now = runtime::Clock::now(&clock);
            tokio::spawn(async move { timers.fire_due(now, &Record).await.unwrap() })
        })
        .collect();
    let mut fired_total = 0;
    for w in workers {
        fired_total += w.await.unwrap();
    }
    assert_eq!(fired_total, total);
    let subjects = fired(&db).await;
    let unique: std::collections::HashSet<_> = subjects.iter().collect();
    assert_eq!(subjects.len(), total);
    assert_eq!(unique.len(), total);
}

/// Fires like [`Record`], slowly, and notes which scheduler fired each timer.
struct SlowRecord {
    scheduler: usize,
    order: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl TimerHandler for SlowRecord {
    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Record.fire(tx, timer).await?;
        self.order.lock().unwrap().push(self.scheduler);
        Ok(())
    }
}

/// Of a process's idle schedulers only one watches for the next due time, but a backlog it
/// finds brings in the others at once, not after their fallback second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_brings_in_the_schedulers_that_were_not_watching() {
    let Some((_guard, db)) = postgres().await else {
        return;
    };
    let timers = Timers::new(db.clone());
    let order = Arc::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = CancellationToken::new();
    let workers = timers.spawn(3, Arc::new(runtime::SystemClock), stop.clone(), || {
        SlowRecord {
            scheduler: next.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            order: Arc::clone(&order),
        }
    });
    // Each finds nothing due; one then watches, two wait.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let due = Timestamp::now() - SignedDuration::from_secs(1);
    let backlog: Vec<NewTimer> = (0..300)
        .map(|i| timer(&format!("backlog-{i}"), due))
        .collect();
    schedule(&db, &backlog).await;
    timers.wake();
    let all_fired = testkit::eventually(500, || async { fired(&db).await.len() >= 300 }).await;
    assert!(all_fired, "the backlog was not worked off");
    // Alone, the watcher would take 32 timers a transaction at 5 ms each: the first three
    // transactions' worth by about 0.5 s, before the others' fallback second runs out.
    let early: std::collections::HashSet<usize> =
        order.lock().unwrap()[..96].iter().copied().collect();
    assert!(
        early.len() > 1,
        "only scheduler {early:?} fired the first three transactions' worth"
    );
    stop.cancel();
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Fails its first `load` once another transaction waits to reschedule the timer it took, as
/// when an API call that locked the same lead first wins the deadlock that follows.
struct RescheduledMeanwhile {
    db: Db,
    to: Timestamp,
    rescheduling: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TimerHandler for RescheduledMeanwhile {
    async fn load(&self, _tx: &mut Tx, timers: &[Timer]) -> Result<(), HandlerError> {
        if self.rescheduling.lock().unwrap().is_some() {
            // The retry after the failure: loads like any handler.
            return Ok(());
        }
        let (db, again) = (self.db.clone(), timer(&timers[0].subject, self.to));
        let rescheduling = tokio::spawn(async move { schedule(&db, &[again]).await });
        let waiting = testkit::eventually(250, || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(self.db.pool())
            .await
            .unwrap();
            waiting > 0
        })
        .await;
        assert!(waiting, "the rescheduling never waited for the taken row");
        *self.rescheduling.lock().unwrap() = Some(rescheduling);
        Err("lost a deadlock".into())
    }

    async fn fire(&self, tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        Record.fire(tx, timer).await
    }
}

/// A timer rescheduled while the transaction that took it failed is not fired by the retry
/// that follows the failure: it waits for its new due time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_rescheduled_while_its_fire_failed_waits_for_its_new_due_time() {
    let Some((_guard, db)) = postgres().await else {
        return;
    };
    let now = t0();
    schedule(&db, &[timer("lead", now - SignedDuration::from_secs(1))]).await;
    let later = now + SignedDuration::from_mins(10);
    let handler = RescheduledMeanwhile {
        db: db.clone(),
        to: later,
        rescheduling: Default::default(),
    };
    let timers = Timers::new(db.clone());
    assert_eq!(timers.fire_due(now, &handler).await.unwrap(), 0);
    let rescheduling = handler.rescheduling.lock().unwrap().take();
    rescheduling.expect("load ran").await.unwrap();
    // What `fire_due` did not fire is not fired by anyone else before its time either.
    assert_eq!(
        Timers::new(db.clone())
            .fire_due(now, &Record)
            .await
            .unwrap(),
        0
    );
    assert!(fired(&db).await.is_empty(), "fired before its new due time");
    assert_eq!(timers.counts(now).await.unwrap(), (1, 0));
    assert_eq!(timers.fire_due(later, &Record).await.unwrap(), 1);
    assert_eq!(fired(&db).await, ["lead"]);
}
