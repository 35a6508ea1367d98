-- The audit trail of erasures (EraseContact): when, under which request reference, and which
-- leads and rejected submissions were blanked. It names ids only, never the person.
CREATE TABLE erasures (
    erasure_id       TEXT PRIMARY KEY,
    reference        TEXT NOT NULL,
    erased_at        BIGINT NOT NULL,
    lead_ids         TEXT NOT NULL,
    rejection_ids    TEXT NOT NULL,
    events_rewritten BIGINT NOT NULL
);
