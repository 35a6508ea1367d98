-- A rebuild of the rollups under a new rule goes one grain per transaction, in order, so it
-- never holds the figure rows (or SQLite's one writer) for long. While it runs, the grains
-- before rebuilt_to hold the rule of lead_rollup_state's fingerprint and those from it on
-- still hold the previous rule's contributions, which a report does not use (it reads their
-- leads from rows). NULL when no rebuild is under way.
ALTER TABLE lead_rollup_state ADD COLUMN rebuilt_to BIGINT;
