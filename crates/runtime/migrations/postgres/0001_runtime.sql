-- The transactional outbox. Rows are appended in the same transaction as the state change
-- they describe and never updated.
--
-- Concurrent transactions commit out of order, so `seq` alone cannot order the log: a reader
-- could hand out a cursor past a row whose transaction commits later. Each row therefore
-- records the id of the transaction that wrote it (`txid`), readers order by (txid, seq) and
-- only read rows of transactions older than every transaction still running
-- (pg_snapshot_xmin), so nothing can later appear behind a cursor already handed out.
CREATE TABLE event_log (
    seq           BIGSERIAL PRIMARY KEY,
    txid          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id      TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    aggregate_id  TEXT NOT NULL,
    occurred_at   BIGINT NOT NULL,
    payload       BYTEA NOT NULL,
    trace_context TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_log_order ON event_log (txid, seq);

-- Live tail across processes: wake listeners when a transaction that appended events commits
-- (NOTIFY is delivered at commit, once per statement here).
CREATE FUNCTION event_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fairchance_event_log', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
CREATE TRIGGER event_log_notify AFTER INSERT ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION event_log_notify();

-- Where each consumer of another service's stream has got to. Updated in the same
-- transaction as the effects of the events it consumed: each event takes effect once.
CREATE TABLE consumer_cursors (
    consumer   TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Answers to requests that carried an idempotency key, so a retry gets the original answer.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     BYTEA,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
