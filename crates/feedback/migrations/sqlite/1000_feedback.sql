-- One fact row per lead, projected from every service's events and the CRM's outcomes. The
-- columns are what reports filter and group by; `fact` (JSON) holds the rest.
CREATE TABLE lead_facts (
    lead_id     TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    -- When intake received the lead; 0 until intake's event has arrived (streams are consumed
    -- independently, so another service's event can come first).
    received_at BIGINT NOT NULL,
    fact        TEXT NOT NULL,
    -- The lead's preserved context (JSON list of labelled fields) for the timeline.
    context     TEXT NOT NULL
);
CREATE INDEX lead_facts_received ON lead_facts (received_at);

-- Submissions rejected into intake's review queue: there is no lead, but they are received
-- and they are the data-quality feedback each source needs.
CREATE TABLE rejection_facts (
    rejection_id TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL,
    fact         TEXT NOT NULL
);
CREATE INDEX rejection_facts_received ON rejection_facts (received_at);

-- Everything that happened to a lead, across services, for the hand-off view.
CREATE TABLE timeline (
    lead_id    TEXT NOT NULL,
    at         BIGINT NOT NULL,
    entry_id   TEXT NOT NULL,
    service    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    summary    TEXT NOT NULL,
    PRIMARY KEY (lead_id, at, entry_id)
);

-- Outcomes from the CRM: the one input feedback owns (everything else is replayable from the
-- other services' logs), kept apart so a rebuild of the projections re-applies them.
CREATE TABLE outcomes (
    outcome_id TEXT PRIMARY KEY,
    lead_id    TEXT NOT NULL,
    stage      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    note       TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX outcomes_lead ON outcomes (lead_id);
