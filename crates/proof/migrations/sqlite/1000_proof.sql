-- One row per lead: its belief state (JSON) as the domain keeps it: profile, installed
-- stages, objections, deliveries and their outcomes, hand-off and debt.
CREATE TABLE belief_states (
    lead_id TEXT PRIMARY KEY,
    state   TEXT NOT NULL
);

-- Assets added or changed at run time (UpsertAsset); they win over the playbook's catalog
-- entry with the same id.
CREATE TABLE assets (
    asset_id TEXT PRIMARY KEY,
    asset    TEXT NOT NULL
);

-- What each asset's deliveries led to, per belief stage and checkpoint ('' for deliveries
-- made without an open objection): the counts Thompson sampling ranks by. Incremented in
-- place, so concurrent settlements add up.
CREATE TABLE effectiveness (
    asset_id   TEXT NOT NULL,
    stage      TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    successes  BIGINT NOT NULL,
    failures   BIGINT NOT NULL,
    PRIMARY KEY (asset_id, stage, checkpoint)
);
