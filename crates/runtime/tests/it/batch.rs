//! Batched writes on both backends: every statement of a batch applies or none does, events
//! keep their order across chunks, and a batch larger than one statement may bind still
//! applies in full.

use std::collections::BTreeMap;

use jiff::Timestamp;
use runtime::db::{Batch, Value};
use runtime::timers::{NewTimer, Timers};
use runtime::{Db, EventLog, NewEvent};
use uuid::Uuid;

async fn prepare(db: &Db) {
    sqlx::query("CREATE TABLE notes (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
}

fn note(id: &str, n: i64) -> (String, Vec<Value<'_>>) {
    (
        "INSERT INTO notes (id, n) VALUES ($1, $2)".into(),
        vec![id.into(), n.into()],
    )
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        type_name: "fairchance.test.v1.Noted".into(),
        aggregate_id: format!("agg-{n}"),
        occurred_at: Timestamp::UNIX_EPOCH,
        payload: n.to_le_bytes().to_vec(),
    }
}

async fn notes(db: &Db) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT id, n FROM notes ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn logged(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT aggregate_id FROM event_log ORDER BY txid, seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Rows, timers and events pushed to one batch are all written by it, and the batch is empty
/// afterwards.
pub async fn a_batch_writes_every_table_it_was_given(db: Db) {
    prepare(&db).await;
    let log = EventLog::new(db.clone(), "test");
    let timers = vec![(
        NewTimer {
            kind: "sla_deadline".into(),
            subject: "lead-1".into(),
            due_at: Timestamp::UNIX_EPOCH,
            payload: b"p".to_vec(),
        },
        BTreeMap::new(),
    )];
    let events: Vec<_> = (0..3).map(|n| (event(n), BTreeMap::new())).collect();
    let mut tx = db.begin().await.unwrap();
    let mut batch = Batch::default();
    for (sql, values) in [note("a", 1), note("b", 2)] {
        batch.push(sql, values);
    }
    Timers::schedule_into(&mut batch, &timers);
    log.append_traced_into(&mut batch, &events);
    batch.push(
        "UPDATE notes SET n = $1 WHERE id = $2".into(),
        vec![7.into(), "missing".into()],
    );
    batch.execute(&mut tx).await.unwrap();
    assert!(batch.is_empty());
    tx.commit().await.unwrap();

    assert_eq!(notes(&db).await, [("a".into(), 1), ("b".into(), 2)]);
    assert_eq!(logged(&db).await, ["agg-0", "agg-1", "agg-2"]);
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM timers")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(subjects, ["lead-1"]);
}

/// One failing statement fails the batch, and the transaction's rollback leaves nothing of
/// it, nor of what the transaction wrote before.
pub async fn a_failing_statement_fails_the_whole_batch(db: Db) {
    prepare(&db).await;
    let mut tx = db.begin().await.unwrap();
    let (sql, values) = note("first", 1);
    let mut before = Batch::default();
    before.push(sql, values);
    before.execute(&mut tx).await.unwrap();
    let mut batch = Batch::default();
    for (sql, values) in [note("second", 2), note("first", 3)] {
        batch.push(sql, values);
    }
    let error = batch.execute(&mut tx).await.unwrap_err();
    assert!(error.is_unique_violation(), "{error}");
    tx.rollback().await.unwrap();
    assert!(notes(&db).await.is_empty());
}

/// Events appended in several chunks and across appends keep the order they were given,
/// though a batch's statements otherwise run in no set order.
pub async fn events_keep_their_order_across_chunks_and_appends(db: Db) {
    let log = EventLog::new(db.clone(), "test");
    let first: Vec<_> = (0..600).map(|n| (event(n), BTreeMap::new())).collect();
    let second: Vec<_> = (600..700).map(|n| (event(n), BTreeMap::new())).collect();
    let mut tx = db.begin().await.unwrap();
    let mut batch = Batch::default();
    log.append_traced_into(&mut batch, &first);
    log.append_traced_into(&mut batch, &second);
    batch.execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let expected: Vec<String> = (0..700).map(|n| format!("agg-{n}")).collect();
    assert_eq!(logged(&db).await, expected);
}

/// More parameters than one statement may bind are split over several, all applied.
pub async fn a_batch_beyond_one_statement_applies_in_full(db: Db) {
    prepare(&db).await;
    let ids: Vec<String> = (0..30_000).map(|n| format!("note-{n:05}")).collect();
    let mut tx = db.begin().await.unwrap();
    let mut batch = Batch::default();
    for chunk in ids.chunks(250) {
        let sql = format!(
            "INSERT INTO notes (id, n) VALUES {}",
            runtime::db::values_placeholders(chunk.len(), 2)
        );
        let values = chunk
            .iter()
            .flat_map(|id| [id.as_str().into(), Value::Int(id.len() as i64)])
            .collect();
        batch.push(sql, values);
    }
    batch.execute(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 30_000);
}

on_both_backends!(
    a_batch_writes_every_table_it_was_given,
    a_failing_statement_fails_the_whole_batch,
    events_keep_their_order_across_chunks_and_appends,
    a_batch_beyond_one_statement_applies_in_full,
);
