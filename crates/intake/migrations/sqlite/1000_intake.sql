-- Accepted leads. `input` is the submission as normalised (JSON), returned intact by GetLead;
-- the other columns are what intake queries by.
CREATE TABLE leads (
    lead_id        TEXT PRIMARY KEY,
    contact_key    TEXT NOT NULL,
    email          TEXT NOT NULL,
    phone          TEXT NOT NULL,
    source         TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    completeness   INTEGER NOT NULL,
    icp_tier       TEXT NOT NULL,
    do_not_contact INTEGER NOT NULL,
    input          TEXT NOT NULL
);
CREATE INDEX leads_email ON leads (email) WHERE email <> '';
CREATE INDEX leads_phone ON leads (phone) WHERE phone <> '';

-- Later submissions merged into a lead, each with its own context.
CREATE TABLE touches (
    touch_id    TEXT PRIMARY KEY,
    lead_id     TEXT NOT NULL REFERENCES leads (lead_id),
    received_at INTEGER NOT NULL,
    input       TEXT NOT NULL
);
CREATE INDEX touches_lead ON touches (lead_id, received_at);

-- The current lead of each contact (by normalised email, else E.164 phone): the row
-- duplicates are found by, and locked while deciding to merge.
CREATE TABLE contacts (
    contact_key       TEXT PRIMARY KEY,
    lead_id           TEXT NOT NULL,
    first_received_at INTEGER NOT NULL
);

-- Opted-out contacts, by email and by phone.
CREATE TABLE suppressions (
    contact_key  TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    opted_out_at INTEGER NOT NULL
);

-- The review queue: well-formed leads that failed data-quality rules.
CREATE TABLE rejections (
    rejection_id TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    problems     TEXT NOT NULL,
    input        TEXT NOT NULL,
    lead_id      TEXT,
    note         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rejections_queue ON rejections (state, rejection_id);
