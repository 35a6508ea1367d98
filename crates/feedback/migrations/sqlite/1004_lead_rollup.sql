-- Rollups of the report's figures over the settled leads, so a report over a long period sums
-- a few rows per grain of time instead of aggregating every lead. A lead is settled when its
-- fair-chance verdict no longer depends on the time it is read; recent leads are not, and a
-- report computes them from their rows as before. The rollups are a function of the playbook's
-- rule (the verdict, the persistence threshold, the targeting reasons): they are rebuilt when
-- its fingerprint in lead_rollup_state differs from the rule a report is read with.
--
-- Both rollup tables are append-only between compactions: a lead is added when a report folds
-- it in, and when its fact changes afterwards the save takes its old contribution back out
-- with a row of negated figures, so writers never wait on one another for a shared total.

-- The code a lead was folded in with (verdict + 4 * persisted + 8 * lost on targeting), NULL
-- while it is not in the rollups.
ALTER TABLE lead_figures ADD COLUMN rolled SMALLINT;
-- The leads a report computes from their rows: recent, changed since folded, or new.
CREATE INDEX lead_figures_unrolled ON lead_figures (received_at) WHERE rolled IS NULL AND accepted = 1;
-- The exact times of the buckets that hold a percentile, read without a scan.
CREATE INDEX lead_figures_activation ON lead_figures (activation_micros);

-- The report's summable figures per grain of received_at, group keys and verdict.
CREATE TABLE lead_rollup (
    grain          BIGINT NOT NULL,
    source         TEXT NOT NULL,
    campaign       TEXT NOT NULL,
    channel        TEXT NOT NULL,
    verdict        SMALLINT NOT NULL,
    accepted       BIGINT NOT NULL,
    reviewed       BIGINT NOT NULL,
    contactable    BIGINT NOT NULL,
    in_sla         BIGINT NOT NULL,
    ignored        BIGINT NOT NULL,
    tbr_total      BIGINT NOT NULL,
    tbr_count      BIGINT NOT NULL,
    persisted      BIGINT NOT NULL,
    persisted_met  BIGINT NOT NULL,
    met            BIGINT NOT NULL,
    handed_off     BIGINT NOT NULL,
    with_debt      BIGINT NOT NULL,
    missing_stages BIGINT NOT NULL,
    lost           BIGINT NOT NULL,
    lost_targeted  BIGINT NOT NULL
);
CREATE INDEX lead_rollup_grain ON lead_rollup (grain);
-- The grains a compaction rewrites: those with taken-back contributions.
CREATE INDEX lead_rollup_taken_back ON lead_rollup (grain) WHERE accepted < 0;

-- Times of activation counted per grain, group keys and percentile bucket.
CREATE TABLE lead_rollup_times (
    grain    BIGINT NOT NULL,
    source   TEXT NOT NULL,
    campaign TEXT NOT NULL,
    channel  TEXT NOT NULL,
    bucket   BIGINT NOT NULL,
    n        BIGINT NOT NULL
);
CREATE INDEX lead_rollup_times_grain ON lead_rollup_times (grain);
CREATE INDEX lead_rollup_times_taken_back ON lead_rollup_times (grain) WHERE n < 0;

-- The rule the rollups were folded with, and the latest moment a fold was as of: a report as
-- of an earlier moment cannot use them (a lead settled since may not have been then).
CREATE TABLE lead_rollup_state (
    singleton   SMALLINT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    watermark   BIGINT NOT NULL
);
INSERT INTO lead_rollup_state (singleton, fingerprint, watermark) VALUES (1, '', 0);
