-- The audit trail (issue 20): one row per audited request, append-only and hash-chained.
--
-- Run by `cargo xtask` as the superuser (local/xtask/src/store_roles.rs), never by a service:
-- the schema and everything in it belong to `:owner`, a role no one logs in as, so no role a
-- service uses owns the table (an owner could update, delete or re-grant itself the right to).
-- Services get INSERT only; the audit service SELECT and INSERT. Idempotent: every `up` runs it.
--
-- The chain: a BEFORE INSERT trigger, running as the owner, takes one transaction-level lock,
-- reads the newest record's hash and sets the new record's `seq`, `at`, `prev_hash` and `hash`.
-- The lock is held until the inserting transaction ends, so records are chained in the order
-- they commit and a rolled-back insert leaves no hole (its `seq` is skipped, and nothing points
-- at it). `verify()` recomputes every hash; a changed record fails its own hash, a removed one
-- fails its successor's `prev_hash`.
CREATE SCHEMA IF NOT EXISTS audit_trail;
ALTER SCHEMA audit_trail OWNER TO :owner;
REVOKE ALL ON SCHEMA audit_trail FROM PUBLIC;

CREATE SEQUENCE IF NOT EXISTS audit_trail.record_seq;

CREATE TABLE IF NOT EXISTS audit_trail.records (
    -- `seq`, `at` and the hashes are the trigger's to set: what a writer gives is replaced.
    seq            bigint PRIMARY KEY DEFAULT 0,
    -- The gateway's id for the request: a request gets one record, whoever writes it.
    id             uuid NOT NULL UNIQUE,
    at             timestamptz NOT NULL DEFAULT now(),
    -- The verified token's subject and role; both null for an anonymous caller.
    actor          text,
    actor_role     text,
    action         text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text,
    patient_id     uuid,
    outcome        smallint NOT NULL CHECK (outcome BETWEEN 100 AND 599),
    request_id     text NOT NULL,
    client_address text NOT NULL,
    prev_hash      bytea NOT NULL DEFAULT '\x',
    hash           bytea NOT NULL DEFAULT '\x'
);
CREATE INDEX IF NOT EXISTS records_by_patient ON audit_trail.records (patient_id, seq);
CREATE INDEX IF NOT EXISTS records_by_actor ON audit_trail.records (actor, seq);
CREATE INDEX IF NOT EXISTS records_by_time ON audit_trail.records (at);

-- The canonical form of a record's content, as JSON (unambiguous about nulls and separators;
-- jsonb's text form is fixed), hashed after the previous record's hash. `at` counts in
-- microseconds, which is all a timestamptz holds.
CREATE OR REPLACE FUNCTION audit_trail.record_hash(r audit_trail.records) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT sha256(r.prev_hash || convert_to(jsonb_build_array(
        r.seq, r.id, (extract(epoch FROM r.at) * 1000000)::bigint, r.actor, r.actor_role,
        r.action, r.resource_type, r.resource_id, r.patient_id, r.outcome, r.request_id,
        r.client_address)::text, 'UTF8'))
$$;

CREATE OR REPLACE FUNCTION audit_trail.chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    newest bytea;
BEGIN
    -- One chain: one writer at a time, until its transaction ends (28348: AUDIT on a phone's keys).
    PERFORM pg_advisory_xact_lock(28348);
    SELECT hash INTO newest FROM audit_trail.records ORDER BY seq DESC LIMIT 1;
    NEW.seq := nextval('audit_trail.record_seq');
    NEW.at := clock_timestamp();
    NEW.prev_hash := coalesce(newest, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.hash := audit_trail.record_hash(NEW);
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS chain ON audit_trail.records;
CREATE TRIGGER chain BEFORE INSERT ON audit_trail.records
    FOR EACH ROW EXECUTE FUNCTION audit_trail.chain();

-- Checks the whole chain, oldest first. `valid` is false at the first record whose hash does
-- not match its content (`changed`) or whose `prev_hash` is not the hash of the record before
-- it (`a record before it was removed or reordered`); `head_*` name the newest record, which an
-- operator can note elsewhere: removing the newest records leaves a shorter chain that is still
-- whole, so only a head kept outside the database shows that.
CREATE OR REPLACE FUNCTION audit_trail.verify()
RETURNS TABLE (valid boolean, checked bigint, bad_seq bigint, problem text, head_seq bigint, head_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH walked AS (
        SELECT r.seq, r.hash,
               r.hash = audit_trail.record_hash(r) AS hash_ok,
               r.prev_hash = coalesce(lag(r.hash) OVER (ORDER BY r.seq),
                   '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS link_ok
        FROM audit_trail.records r
    ), first_bad AS (
        SELECT seq, CASE WHEN NOT hash_ok THEN 'the record was changed after it was written'
                         ELSE 'the record before it was removed or changed' END AS problem
        FROM walked WHERE NOT (hash_ok AND link_ok) ORDER BY seq LIMIT 1
    ), head AS (
        SELECT seq, encode(hash, 'hex') AS hash FROM walked ORDER BY seq DESC LIMIT 1
    )
    SELECT NOT EXISTS (SELECT 1 FROM first_bad), (SELECT count(*) FROM walked),
           (SELECT seq FROM first_bad), (SELECT problem FROM first_bad),
           (SELECT seq FROM head), (SELECT hash FROM head)
$$;

ALTER TABLE audit_trail.records OWNER TO :owner;
ALTER SEQUENCE audit_trail.record_seq OWNER TO :owner;
ALTER FUNCTION audit_trail.record_hash(audit_trail.records) OWNER TO :owner;
ALTER FUNCTION audit_trail.chain() OWNER TO :owner;
ALTER FUNCTION audit_trail.verify() OWNER TO :owner;
REVOKE ALL ON ALL TABLES IN SCHEMA audit_trail FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit_trail FROM PUBLIC;
