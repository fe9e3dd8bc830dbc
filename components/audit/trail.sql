-- The audit trail (issue 20): one row per audited request, hash-chained. Services only append.
--
-- Run by `cargo xtask` as the superuser (local/xtask/src/store_roles.rs), never by a service:
-- the schema and everything in it belong to `:owner`, a role no one logs in as, so no role a
-- service uses owns the table (an owner could update, delete or re-grant itself the right to).
-- Services get INSERT only; the audit service SELECT and INSERT, and it runs the chainer.
-- Idempotent: every `up` runs it.
--
-- The chain is made in batches (issue 22). An insert takes no lock: its trigger sets `seq` and
-- `at` and leaves the record unchained (`link` null). `chain_pending()`, run as the owner, takes
-- the chain's one lock, reads the newest chained record and links every committed unchained
-- record after it, oldest `seq` first, giving each its `link` (its place in the chain),
-- `prev_hash` and `hash`. The audit service runs it every tick and before every read of the
-- trail, and `verify()` runs it first, so whatever anyone reads is chained. Before, the trigger
-- chained each insert and held that lock until the insert's transaction committed: audited
-- requests took turns at every commit, about 700/s on the bench machine (bench/README.md).
-- A rolled-back insert leaves no hole: it is never seen, so never linked. `verify()` recomputes
-- every hash in chain order; a changed record fails its own hash, a removed one fails its
-- successor's `prev_hash`. Until it is linked (at most a tick) a record is covered by no hash.
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
-- A record's place in the chain, null until `chain_pending()` links it. Records chained one by
-- one by the earlier trigger were linked in `seq` order, so they take their `seq`; that update
-- finds nothing to do on a trail made since (a record not yet linked still has no hash).
ALTER TABLE audit_trail.records ADD COLUMN IF NOT EXISTS link bigint UNIQUE;
UPDATE audit_trail.records SET link = seq WHERE link IS NULL AND hash <> '\x';
CREATE INDEX IF NOT EXISTS records_unlinked ON audit_trail.records (seq) WHERE link IS NULL;
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

-- What a writer gives for `seq`, `at`, the link and the hashes is replaced: they are the trail's.
CREATE OR REPLACE FUNCTION audit_trail.chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.seq := nextval('audit_trail.record_seq');
    NEW.at := clock_timestamp();
    NEW.link := NULL;
    NEW.prev_hash := '\x';
    NEW.hash := '\x';
    RETURN NEW;
END $$;

-- Links the committed records not linked yet, at most `batch` of them (the oldest), after the
-- newest linked one, and returns how many it linked. One chainer at a time (the lock ends with
-- its transaction; 28348: AUDIT on a phone's keys), so links never fork.
CREATE OR REPLACE FUNCTION audit_trail.chain_pending(batch integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head_link bigint;
    head_hash bytea;
    r audit_trail.records;
    linked bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(28348);
    SELECT link, hash INTO head_link, head_hash
        FROM audit_trail.records WHERE link IS NOT NULL ORDER BY link DESC LIMIT 1;
    head_link := coalesce(head_link, 0);
    head_hash := coalesce(head_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    FOR r IN SELECT * FROM audit_trail.records WHERE link IS NULL ORDER BY seq LIMIT batch LOOP
        head_link := head_link + 1;
        r.link := head_link;
        r.prev_hash := head_hash;
        r.hash := audit_trail.record_hash(r);
        UPDATE audit_trail.records SET link = r.link, prev_hash = r.prev_hash, hash = r.hash
            WHERE seq = r.seq;
        head_hash := r.hash;
        linked := linked + 1;
    END LOOP;
    RETURN linked;
END $$;

DROP TRIGGER IF EXISTS chain ON audit_trail.records;
CREATE TRIGGER chain BEFORE INSERT ON audit_trail.records
    FOR EACH ROW EXECUTE FUNCTION audit_trail.chain();

-- Links what is pending, then checks the whole chain, oldest link first. `valid` is false at
-- the first record whose hash does not match its content (`changed`) or whose `prev_hash` is not
-- the hash of the record linked before it (`a record before it was removed or reordered`);
-- `head_*` name the newest record, which an operator can note elsewhere: removing the newest
-- records leaves a shorter chain that is still whole, so only a head kept outside the database
-- shows that. Records are named by `seq`, as everywhere else.
CREATE OR REPLACE FUNCTION audit_trail.verify()
RETURNS TABLE (valid boolean, checked bigint, bad_seq bigint, problem text, head_seq bigint, head_hash text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Everything, however many are pending: a check that skipped some would pass them unchecked.
    PERFORM audit_trail.chain_pending(NULL);
    RETURN QUERY
    WITH walked AS (
        SELECT r.seq, r.link, r.hash,
               r.hash = audit_trail.record_hash(r) AS hash_ok,
               r.prev_hash = coalesce(lag(r.hash) OVER (ORDER BY r.link),
                   '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS link_ok
        FROM audit_trail.records r
    ), first_bad AS (
        SELECT w.seq, CASE WHEN NOT w.hash_ok THEN 'the record was changed after it was written'
                           ELSE 'the record before it was removed or changed' END AS problem
        FROM walked w WHERE NOT (w.hash_ok AND w.link_ok) ORDER BY w.link LIMIT 1
    ), head AS (
        SELECT w.seq, encode(w.hash, 'hex') AS hash FROM walked w ORDER BY w.link DESC LIMIT 1
    )
    SELECT NOT EXISTS (SELECT 1 FROM first_bad), (SELECT count(*) FROM walked),
           (SELECT f.seq FROM first_bad f), (SELECT f.problem FROM first_bad f),
           (SELECT h.seq FROM head h), (SELECT h.hash FROM head h);
END $$;

ALTER TABLE audit_trail.records OWNER TO :owner;
ALTER SEQUENCE audit_trail.record_seq OWNER TO :owner;
ALTER FUNCTION audit_trail.record_hash(audit_trail.records) OWNER TO :owner;
ALTER FUNCTION audit_trail.chain() OWNER TO :owner;
ALTER FUNCTION audit_trail.chain_pending(integer) OWNER TO :owner;
ALTER FUNCTION audit_trail.verify() OWNER TO :owner;
REVOKE ALL ON ALL TABLES IN SCHEMA audit_trail FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit_trail FROM PUBLIC;
