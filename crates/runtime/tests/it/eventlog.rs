//! The event log, consumer cursors and idempotency records: one conformance suite run
//! against SQLite and PostgreSQL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use proto::events::v1::{Event, SubscribeFrom};
use proto::intake::v1::ContactOptedOut;
use runtime::consumer::{self, EventHandler, HandlerError};
use runtime::idempotency::{self, Claim};
use runtime::{Db, EventLog, NewEvent, Tx};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

fn event(n: usize) -> NewEvent {
    let msg = ContactOptedOut {
        lead_ids: vec![format!("lead-{n}")],
        ..Default::default()
    };
    NewEvent::new(format!("agg-{}", n % 3), &msg, jiff::Timestamp::now())
}

fn lead_of(e: &Event) -> String {
    let any = e.payload.as_ref().expect("payload");
    ContactOptedOut::decode(any.value.as_slice())
        .expect("decode")
        .lead_ids[0]
        .clone()
}

async fn append_committed(log: &EventLog, range: std::ops::Range<usize>) {
    let mut tx = log.db().begin().await.unwrap();
    let events: Vec<_> = range.map(event).collect();
    log.append(&mut tx, &events).await.unwrap();
    log.commit(tx).await.unwrap();
}

async fn next(
    stream: &mut (impl futures::Stream<Item = Result<Event, tonic::Status>> + Unpin),
) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event within 10s")
        .expect("stream open")
        .expect("event ok")
}

/// Reads until `n` events are visible. On PostgreSQL a commit becomes readable once every
/// older transaction in the cluster (other tests' included) has finished.
async fn read_n(log: &EventLog, after: runtime::Cursor, n: usize) -> Vec<runtime::StoredEvent> {
    for _ in 0..200 {
        let read = log.read_after(after, 100).await.unwrap();
        if read.len() >= n {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} events visible after 10s");
}

pub async fn appended_events_appear_only_after_commit(db: Db) {
    let log = EventLog::new(db.clone(), "test");
    let mut tx = db.begin().await.unwrap();
    log.append(&mut tx, &[event(0), event(1)]).await.unwrap();
    assert!(
        log.read_after(Default::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    log.commit(tx).await.unwrap();
    let read = read_n(&log, Default::default(), 2).await;
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].type_name, "fairchance.intake.v1.ContactOptedOut");
    assert_eq!(read[0].short_type(), "ContactOptedOut");
    assert!(read[0].cursor < read[1].cursor);

    // Rolled back events never appear.
    let mut tx = db.begin().await.unwrap();
    log.append(&mut tx, &[event(2)]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(log.count().await.unwrap(), 2);

    // Reading resumes after a cursor.
    let rest = read_n(&log, read[0].cursor, 1).await;
    assert_eq!(rest, read[1..].to_vec());
}

pub async fn subscribe_replays_then_tails_live(db: Db) {
    let log = EventLog::new(db, "test");
    append_committed(&log, 0..3).await;
    let stop = CancellationToken::new();
    let mut stream = log
        .subscribe(SubscribeFrom::default(), stop.clone())
        .unwrap();
    let replayed: Vec<_> = [
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
    ]
    .to_vec();
    assert_eq!(
        replayed.iter().map(lead_of).collect::<Vec<_>>(),
        ["lead-0", "lead-1", "lead-2"]
    );
    assert_eq!(replayed[0].source_service, "test");
    assert_eq!(replayed[0].event_type, "ContactOptedOut");
    assert_eq!(
        replayed[0].payload.as_ref().unwrap().type_url,
        "type.googleapis.com/fairchance.intake.v1.ContactOptedOut"
    );

    // Live: committed after the replay finished.
    append_committed(&log, 3..5).await;
    assert_eq!(lead_of(&next(&mut stream).await), "lead-3");
    assert_eq!(lead_of(&next(&mut stream).await), "lead-4");

    // Resuming after a cursor skips what was seen.
    read_n(&log, Default::default(), 5).await;
    let from = SubscribeFrom {
        after_cursor: replayed[1].cursor.clone(),
        replay_only: true,
        ..Default::default()
    };
    let resumed: Vec<_> = log
        .subscribe(from, stop.clone())
        .unwrap()
        .map(|e| lead_of(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(resumed, ["lead-2", "lead-3", "lead-4"]);

    // Shutdown ends live streams, so a graceful shutdown can finish.
    stop.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("stream ends on shutdown");
    assert!(end.is_none());
}

/// Subscribers waiting at the head share their reads of the live tail (one query per
/// commit): each still gets every event once and in order, whether it caught up long ago or
/// joins while commits keep coming, and commits that land while a shared read runs are not
/// lost.
pub async fn many_live_subscribers_each_get_every_event_once(db: Db) {
    const SUBSCRIBERS: usize = 12;
    const COMMITS: usize = 60;
    let log = EventLog::new(db, "test");
    append_committed(&log, 0..2).await;
    let stop = CancellationToken::new();
    let subscribe = |log: &EventLog| {
        let mut stream = log
            .subscribe(SubscribeFrom::default(), stop.clone())
            .unwrap();
        tokio::spawn(async move {
            let mut leads = Vec::new();
            while leads.len() < COMMITS + 2 {
                leads.push(lead_of(&next(&mut stream).await));
            }
            // Nothing more: no event twice.
            let extra = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
            assert!(extra.is_err(), "unexpected extra event: {extra:?}");
            leads
        })
    };
    let mut readers: Vec<_> = (0..SUBSCRIBERS / 2).map(|_| subscribe(&log)).collect();
    // Let the first half catch up and wait at the head.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 2..COMMITS + 2 {
                append_committed(&log, n..n + 1).await;
                if n % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // The second half joins while commits are coming in.
    readers.extend((SUBSCRIBERS / 2..SUBSCRIBERS).map(|_| subscribe(&log)));
    writer.await.unwrap();
    let expected: Vec<String> = (0..COMMITS + 2).map(|n| format!("lead-{n}")).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    stop.cancel();
}

pub async fn subscribe_filters_types_and_rejects_bad_cursors(db: Db) {
    let log = EventLog::new(db, "test");
    append_committed(&log, 0..2).await;
    read_n(&log, Default::default(), 2).await;
    let stop = CancellationToken::new();
    let only = |types: &[&str]| SubscribeFrom {
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        replay_only: true,
        ..Default::default()
    };
    let none: Vec<_> = log
        .subscribe(only(&["LeadAccepted"]), stop.clone())
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());
    let all: Vec<_> = log
        .subscribe(only(&["ContactOptedOut"]), stop.clone())
        .unwrap()
        .collect()
        .await;
    assert_eq!(all.len(), 2);

    let bad = SubscribeFrom {
        after_cursor: "yesterday".into(),
        ..Default::default()
    };
    let status = log.subscribe(bad, stop).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("from.after_cursor"),
        "{}",
        status.message()
    );
}

/// Records consumed leads in its own table; fails on a chosen lead once.
struct Recorder {
    fail_on: Option<String>,
    failures: AtomicUsize,
}

impl EventHandler for Recorder {
    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        let lead = lead_of(event);
        sqlx::query("INSERT INTO consumed (lead) VALUES ($1)")
            .bind(lead.clone())
            .execute(&mut **tx)
            .await?;
        if self.fail_on.as_deref() == Some(lead.as_str())
            && self.failures.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Err("simulated crash after writing effects".into());
        }
        Ok(())
    }
}

pub async fn consumers_take_effect_exactly_once(upstream: Db, downstream: Db) {
    let log = EventLog::new(upstream, "test");
    append_committed(&log, 0..5).await;
    read_n(&log, Default::default(), 5).await;
    sqlx::query("CREATE TABLE consumed (lead TEXT NOT NULL)")
        .execute(downstream.pool())
        .await
        .unwrap();
    let recorder = Recorder {
        fail_on: Some("lead-2".into()),
        failures: AtomicUsize::new(0),
    };

    // First pass stops at the failing event: its partial effects roll back with the cursor.
    let stop = CancellationToken::new();
    let mut stream = log
        .subscribe(
            SubscribeFrom {
                replay_only: true,
                ..Default::default()
            },
            stop.clone(),
        )
        .unwrap();
    while let Some(event) = stream.next().await {
        if consumer::apply(&downstream, "recorder", &recorder, &event.unwrap())
            .await
            .is_err()
        {
            break;
        }
    }
    let saved = consumer::load_cursor(&downstream, "recorder")
        .await
        .unwrap();
    assert!(!saved.is_empty());

    // The runner resumes from the saved cursor and applies the rest exactly once.
    let runner_stop = CancellationToken::new();
    let connect_log = log.clone();
    let connect_stop = stop.clone();
    let runner = tokio::spawn(consumer::run(
        downstream.clone(),
        "recorder".to_owned(),
        move |after| {
            let from = SubscribeFrom {
                after_cursor: after,
                ..Default::default()
            };
            let stream = connect_log.subscribe(from, connect_stop.clone());
            async move { stream }
        },
        recorder,
        runner_stop.clone(),
    ));
    let expected: Vec<String> = (0..5).map(|n| format!("lead-{n}")).collect();
    let mut consumed = Vec::new();
    for _ in 0..200 {
        consumed = sqlx::query_scalar::<_, String>("SELECT lead FROM consumed ORDER BY lead")
            .fetch_all(downstream.pool())
            .await
            .unwrap();
        if consumed.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner_stop.cancel();
    runner.await.unwrap();
    assert_eq!(consumed, expected);
    let last = read_n(&log, Default::default(), 5)
        .await
        .last()
        .unwrap()
        .cursor
        .to_string();
    assert_eq!(
        consumer::load_cursor(&downstream, "recorder")
            .await
            .unwrap(),
        last
    );
}

/// Counts what it consumed; never fails.
struct Counter;

impl EventHandler for Counter {
    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO consumed (lead) VALUES ($1)")
            .bind(lead_of(event))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

pub async fn two_replicas_of_a_consumer_apply_each_event_once(upstream: Db, downstream: Db) {
    let log = EventLog::new(upstream, "test");
    sqlx::query("CREATE TABLE consumed (lead TEXT NOT NULL)")
        .execute(downstream.pool())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let (log, stop2) = (log.clone(), stop.clone());
            tokio::spawn(consumer::run(
                downstream.clone(),
                "counter".to_owned(),
                move |after| {
                    let from = SubscribeFrom {
                        after_cursor: after,
                        ..Default::default()
                    };
                    let stream = log.subscribe(from, stop2.clone());
                    async move { stream }
                },
                Counter,
                stop.clone(),
            ))
        })
        .collect();
    for chunk in 0..10 {
        append_committed(&log, chunk * 10..chunk * 10 + 10).await;
    }
    for _ in 0..400 {
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consumed")
            .fetch_one(downstream.pool())
            .await
            .unwrap();
        if seen >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a late duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    for r in replicas {
        r.await.unwrap();
    }
    let consumed: Vec<String> = sqlx::query_scalar("SELECT lead FROM consumed")
        .fetch_all(downstream.pool())
        .await
        .unwrap();
    let unique: std::collections::HashSet<_> = consumed.iter().collect();
    assert_eq!(unique.len(), 100);
    assert_eq!(consumed.len(), 100, "some events were applied twice");
}

pub async fn idempotency_replays_and_refuses_reuse(db: Db) {
    let now = jiff::Timestamp::now();
    let hash = idempotency::request_hash(b"request-a");
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        idempotency::claim(&mut tx, "Submit", "k1", &hash, now)
            .await
            .unwrap(),
        Claim::New
    );
    idempotency::store(&mut tx, "Submit", "k1", b"answer")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        idempotency::claim(&mut tx, "Submit", "k1", &hash, now)
            .await
            .unwrap(),
        Claim::Replay(b"answer".to_vec())
    );
    let other = idempotency::request_hash(b"request-b");
    assert_eq!(
        idempotency::claim(&mut tx, "Submit", "k1", &other, now)
            .await
            .unwrap(),
        Claim::Conflict
    );
    // Keys are scoped: the same key in another scope is new.
    assert_eq!(
        idempotency::claim(&mut tx, "Other", "k1", &other, now)
            .await
            .unwrap(),
        Claim::New
    );
    tx.rollback().await.unwrap();

    // A claim rolled back with its work leaves nothing behind.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        idempotency::claim(&mut tx, "Submit", "k2", &hash, now)
            .await
            .unwrap(),
        Claim::New
    );
    tx.rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        idempotency::claim(&mut tx, "Submit", "k2", &hash, now)
            .await
            .unwrap(),
        Claim::New
    );
    tx.rollback().await.unwrap();
}

/// Instantiates every scenario above as a test on one backend.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            async fn fresh() -> Option<(TestDb, Db)> {
                let test_db: Option<TestDb> = $make;
                let test_db = test_db?;
                let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
                Some((test_db, db))
            }

            conformance!(@one appended_events_appear_only_after_commit, subscribe_replays_then_tails_live,
                many_live_subscribers_each_get_every_event_once,
                subscribe_filters_types_and_rejects_bad_cursors, idempotency_replays_and_refuses_reuse);

            #[tokio::test]
            async fn two_replicas_of_a_consumer_apply_each_event_once() {
                let Some((_g1, up)) = fresh().await else { return };
                let Some((_g2, down)) = fresh().await else { return };
                super::two_replicas_of_a_consumer_apply_each_event_once(up, down).await;
            }

            #[tokio::test]
            async fn consumers_take_effect_exactly_once() {
                let Some((_g1, up)) = fresh().await else { return };
                let Some((_g2, down)) = fresh().await else { return };
                super::consumers_take_effect_exactly_once(up, down).await;
            }
        }
    };
    (@one $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, db)) = fresh().await else { return };
                super::$name(db).await;
            }
        )*
    };
}

conformance!(sqlite, Some(TestDb::sqlite()));
conformance!(postgres, TestDb::postgres().await);
