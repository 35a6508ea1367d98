-- The figures reports group, filter and aggregate on, as columns beside each fact, so a report
-- is a GROUP BY over the period's rows rather than every fact loaded and decoded. The fact
-- (JSON) stays the source of truth: the service derives these from it whenever it writes it,
-- and on start recomputes every row whose figures_version is older than its own (0: written
-- before these columns existed). Nothing here depends on the playbook or the clock; the
-- fair-chance rule is evaluated over these inputs when a report is read.
ALTER TABLE lead_facts ADD COLUMN figures_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN accepted SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN review_of TEXT;
ALTER TABLE lead_facts ADD COLUMN may_contact SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN activated SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN in_sla SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN late SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN activation_micros BIGINT;
ALTER TABLE lead_facts ADD COLUMN breaches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN touches_before_response INTEGER;
ALTER TABLE lead_facts ADD COLUMN persisted_touches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN reached_meeting SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN answered SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN touches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN touch_span BIGINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN follow_up_closed SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN enrolled SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN grace_from BIGINT;
ALTER TABLE lead_facts ADD COLUMN unproven_objections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN ended SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN lost SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN loss_reason TEXT;
ALTER TABLE lead_facts ADD COLUMN handed_off SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN with_debt SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE lead_facts ADD COLUMN missing_stages INTEGER NOT NULL DEFAULT 0;
-- Objections raised, counted by checkpoint (a JSON object); NULL when none.
ALTER TABLE lead_facts ADD COLUMN objections TEXT;
-- The furthest funnel stage, as its position from accepted (1) to won (6).
ALTER TABLE lead_facts ADD COLUMN funnel_stage SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX lead_facts_review_of ON lead_facts (review_of) WHERE review_of IS NOT NULL;
CREATE INDEX lead_facts_stale ON lead_facts (figures_version);

-- Rejections get their group keys as columns too.
ALTER TABLE rejection_facts ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE rejection_facts ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
ALTER TABLE rejection_facts ADD COLUMN channel TEXT NOT NULL DEFAULT '';
UPDATE rejection_facts SET source = fact::json ->> 'source',
    campaign = fact::json ->> 'campaign', channel = fact::json ->> 'channel';
