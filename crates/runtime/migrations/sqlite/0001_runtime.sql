-- The transactional outbox (see the PostgreSQL migration for why `txid` exists). SQLite has a
-- single writer, so commit order is `seq` order and `txid` stays 0.
CREATE TABLE event_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    txid          INTEGER NOT NULL DEFAULT 0,
    event_id      TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    aggregate_id  TEXT NOT NULL,
    occurred_at   INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    trace_context TEXT NOT NULL DEFAULT ''
);

CREATE TABLE consumer_cursors (
    consumer   TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
