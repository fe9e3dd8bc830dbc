//! The outbox relay's claim, plain text so that the end-to-end tests can check its plan with
//! EXPLAIN on a large backlog (tests/tests/outbox_relay.rs) against the same statement the
//! component runs.

/// Claims up to `$2` waiting rows of channel `$1` in `seq` order, each only when no earlier row
/// of its patient and channel is still waiting: one patient's rows go out in order, and a claimed
/// batch holds at most one row per patient and channel. A claim is a 30 s lease, not a lock, so
/// the rows of a relay that died mid-way are taken again after it; `SKIP LOCKED` only keeps two
/// relays from taking a row at the same instant.
///
/// The claimed rows are matched back by `seq = ANY(ARRAY(...))`, an index lookup: written as
/// `id IN (SELECT ...)`, Postgres hashed the subquery and read the whole table to update a batch,
/// on every claim, which kept a core of Postgres busy while a backlog drained.
pub const CLAIM_SQL: &str = "UPDATE outbox SET lease_until = now() + interval '30 seconds', \
         attempts = attempts + 1 \
     WHERE seq = ANY(ARRAY( \
         SELECT o.seq FROM outbox o \
         WHERE o.channel = $1 \
           AND (o.lease_until IS NULL OR o.lease_until < now()) \
           AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.patient_id = o.patient_id \
                           AND e.channel = o.channel AND e.seq < o.seq) \
         ORDER BY o.seq LIMIT $2::int8 FOR UPDATE SKIP LOCKED)) \
     RETURNING id::text AS id, patient_id::text AS patient_id, kind, payload::text AS payload, \
               seq::text AS seq";
