-- One row per enrolled lead. `record` (JSON) is the enrolment as the domain keeps it: cadence,
-- steps done and upcoming, engagement, momentum. The columns are what lookups need. `context`
-- is the encoded context packet (protobuf) from activation, handed to the owner with each task.
CREATE TABLE enrollments (
    lead_id     TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL,
    -- The person behind the lead, across all of their leads: `email:<normalised address>`, or
    -- `phone:<E.164>` without one. Frequency caps count touches per contact key.
    contact_key TEXT NOT NULL,
    -- `phone:<E.164>` when the lead has a phone (also with an email), so an opt-out by phone
    -- reaches it; empty otherwise.
    phone_key   TEXT NOT NULL,
    status      TEXT NOT NULL,
    record      TEXT NOT NULL,
    context     BLOB NOT NULL
);
CREATE INDEX enrollments_contact ON enrollments (contact_key);
CREATE INDEX enrollments_phone ON enrollments (phone_key);

-- Steps that fired and are not completed: an owner's to-do list, oldest due first.
CREATE TABLE open_tasks (
    lead_id    TEXT NOT NULL,
    step_index BIGINT NOT NULL,
    owner_id   TEXT NOT NULL,
    due_at     BIGINT NOT NULL,
    PRIMARY KEY (lead_id, step_index)
);
CREATE INDEX open_tasks_owner ON open_tasks (owner_id, due_at, lead_id, step_index);

-- Every touch that fired, per contact: the frequency cap counts them across enrolments and
-- channels.
CREATE TABLE touches (
    contact_key TEXT NOT NULL,
    fired_at    BIGINT NOT NULL,
    lead_id     TEXT NOT NULL
);
CREATE INDEX touches_contact ON touches (contact_key, fired_at);

-- Contact keys (email and phone alike) that opted out, by any route: no step fires for them
-- again, including on a lead enrolled after the opt-out.
CREATE TABLE opted_out (
    contact_key TEXT PRIMARY KEY,
    opted_at    BIGINT NOT NULL,
    reason      TEXT NOT NULL
);
