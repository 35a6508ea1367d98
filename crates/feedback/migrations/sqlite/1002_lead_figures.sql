-- The figures reports group, filter and aggregate on, one narrow row per lead beside its fact,
-- so a report is a GROUP BY over the period's figure rows rather than every fact loaded and
-- decoded (and a scan reads a few dozen bytes per lead, not the fact's JSON). The fact stays
-- the source of truth: the service derives this row from it whenever it writes the fact, and
-- on start recomputes every fact whose row is missing or has an older figures_version.
-- Nothing here depends on the playbook or the clock; the fair-chance rule is evaluated over
-- these inputs when a report is read.
CREATE TABLE lead_figures (
    lead_id                 TEXT PRIMARY KEY,
    figures_version         INTEGER NOT NULL,
    received_at             BIGINT NOT NULL,
    source                  TEXT NOT NULL,
    campaign                TEXT NOT NULL,
    channel                 TEXT NOT NULL,
    accepted                SMALLINT NOT NULL,
    review_of               TEXT,
    may_contact             SMALLINT NOT NULL,
    activated               SMALLINT NOT NULL,
    in_sla                  SMALLINT NOT NULL,
    late                    SMALLINT NOT NULL,
    activation_micros       BIGINT,
    breaches                INTEGER NOT NULL,
    touches_before_response INTEGER,
    persisted_touches       INTEGER NOT NULL,
    reached_meeting         SMALLINT NOT NULL,
    answered                SMALLINT NOT NULL,
    touches                 INTEGER NOT NULL,
    touch_span              BIGINT NOT NULL,
    follow_up_closed        SMALLINT NOT NULL,
    enrolled                SMALLINT NOT NULL,
    grace_from              BIGINT,
    unproven_objections     INTEGER NOT NULL,
    ended                   SMALLINT NOT NULL,
    lost                    SMALLINT NOT NULL,
    loss_reason             TEXT,
    handed_off              SMALLINT NOT NULL,
    with_debt               SMALLINT NOT NULL,
    missing_stages          INTEGER NOT NULL,
    -- Objections raised, counted by checkpoint (a JSON object); NULL when none.
    objections              TEXT,
    -- The furthest funnel stage, as its position from accepted (1) to won (6).
    funnel_stage            SMALLINT NOT NULL
);
CREATE INDEX lead_figures_received ON lead_figures (received_at);
-- Few leads raise objections: their counts are read without scanning the rest.
CREATE INDEX lead_figures_objections ON lead_figures (received_at) WHERE objections IS NOT NULL;
CREATE INDEX lead_figures_review_of ON lead_figures (review_of) WHERE review_of IS NOT NULL;

-- Rejections get their group keys as columns too.
ALTER TABLE rejection_facts ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE rejection_facts ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
ALTER TABLE rejection_facts ADD COLUMN channel TEXT NOT NULL DEFAULT '';
UPDATE rejection_facts SET source = json_extract(fact, '$.source'),
    campaign = json_extract(fact, '$.campaign'), channel = json_extract(fact, '$.channel');
