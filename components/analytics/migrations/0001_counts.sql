-- Analytics (SPEC.md "Analytics"): aggregates of the patient events consumed, each event
-- counted once. `counted_events` is the dedupe record: an event id already in it adds nothing,
-- however often Kafka delivers it. Its insert and the counters' update are one statement.
CREATE TABLE counted_events (
    event_id   text PRIMARY KEY,
    event_type text NOT NULL,
    patient_id text NOT NULL,
    counted_at timestamptz NOT NULL DEFAULT now()
);

-- One row of running totals.
CREATE TABLE totals (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    patients_created bigint NOT NULL DEFAULT 0,
    patients_updated bigint NOT NULL DEFAULT 0,
    patients_deleted bigint NOT NULL DEFAULT 0
);
INSERT INTO totals DEFAULT VALUES;

-- Registrations per day: a created patient counts on its registered date.
CREATE TABLE registrations_by_day (
    day   date PRIMARY KEY,
    count bigint NOT NULL
);
