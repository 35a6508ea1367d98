-- Durable timers: SLA deadlines, follow-up steps. One row per (kind, subject); due rows are
-- claimed in batches with FOR UPDATE SKIP LOCKED under a lease, so replicas share the work
-- without double firing and a crashed replica's claims are picked up when the lease ends.
CREATE TABLE timers (
    timer_id      TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    due_at        INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    claimed_by    TEXT NOT NULL DEFAULT '',
    claimed_until INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, subject)
);
CREATE INDEX timers_due ON timers (due_at);
