-- Accepted leads. `input` is the submission as normalised (JSON), returned intact by GetLead;
-- the other columns are what intake queries by.
CREATE TABLE leads (
    lead_id        TEXT PRIMARY KEY,
    contact_key    TEXT NOT NULL,
    email          TEXT NOT NULL,
    phone          TEXT NOT NULL,
    source         TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    completeness   BIGINT NOT NULL,
    icp_tier       TEXT NOT NULL,
    do_not_contact BIGINT NOT NULL,
    input          TEXT NOT NULL
);
CREATE INDEX leads_email ON leads (email) WHERE email <> '';
CREATE INDEX leads_phone ON leads (phone) WHERE phone <> '';

-- Later submissions merged into a lead, each with its own context.
CREATE TABLE touches (
    touch_id    TEXT PRIMARY KEY,
    lead_id     TEXT NOT NULL REFERENCES leads (lead_id),
    received_at BIGINT NOT NULL,
    input       TEXT NOT NULL
);
CREATE INDEX touches_lead ON touches (lead_id, received_at);

-- One row per contact key (normalised email, E.164 phone): the contact's current lead (empty
-- when the contact has none yet) and whether it opted out. Submissions and opt-outs of a
-- contact lock its rows, so an opt-out and a lead of the same contact are always decided one
-- after the other and a lead can never miss a committed opt-out.
CREATE TABLE contacts (
    contact_key       TEXT PRIMARY KEY,
    lead_id           TEXT NOT NULL,
    first_received_at BIGINT NOT NULL,
    suppressed        BIGINT NOT NULL DEFAULT 0
);

-- Opt-outs as recorded (why and when), by email and by phone.
CREATE TABLE suppressions (
    contact_key  TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    opted_out_at BIGINT NOT NULL
);

-- The review queue: well-formed leads that failed data-quality rules.
CREATE TABLE rejections (
    rejection_id TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    state        TEXT NOT NULL,
    problems     TEXT NOT NULL,
    input        TEXT NOT NULL,
    lead_id      TEXT,
    note         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rejections_queue ON rejections (state, rejection_id);
