-- One row per lead that reached activation. The indexed columns are what queues and capacity
-- are read by; `record` (JSON) holds the rest: facts, plan, history. `context` is the
-- encoded context packet (protobuf) the owner works from.
CREATE TABLE activations (
    lead_id     TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    team_id     TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    deadline    BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    record      TEXT NOT NULL,
    context     BYTEA NOT NULL
);
-- An owner's queue by deadline, and open-lead counts for capacity.
CREATE INDEX activations_owner_queue ON activations (owner_id, state, deadline);

-- Run-time facts about owners (the playbook holds the rest).
CREATE TABLE owner_availability (
    owner_id          TEXT PRIMARY KEY,
    unavailable_until BIGINT NOT NULL,
    reason            TEXT NOT NULL
);

-- Smooth weighted round-robin state per team (JSON: owner id -> current value). Locked while
-- a lead of the team is assigned, so concurrent assignments take turns.
CREATE TABLE round_robin (
    team_id TEXT PRIMARY KEY,
    weights TEXT NOT NULL
);

-- Account domains added at run time; they win over the playbook's for the same domain.
CREATE TABLE account_domains (
    domain     TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    owner_id   TEXT NOT NULL
);

-- Open (assigned, not activated) leads per owner, for capacity checks without counting rows.
-- Kept by a trigger on every change of an activation's owner or state.
CREATE TABLE owner_load (
    owner_id TEXT PRIMARY KEY,
    open     BIGINT NOT NULL
);

CREATE FUNCTION activations_owner_load() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = 'assigned' AND OLD.owner_id <> '' THEN
        UPDATE owner_load SET open = open - 1 WHERE owner_id = OLD.owner_id;
    END IF;
    IF NEW.state = 'assigned' AND NEW.owner_id <> '' THEN
        INSERT INTO owner_load (owner_id, open) VALUES (NEW.owner_id, 1)
            ON CONFLICT (owner_id) DO UPDATE SET open = owner_load.open + 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER activations_owner_load AFTER INSERT OR UPDATE ON activations
    FOR EACH ROW EXECUTE FUNCTION activations_owner_load();
