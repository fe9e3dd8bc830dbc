//! WIT glue and SQL: `pm:platform/audit` for the gateway's records, `pm:platform/service` for
//! reading and verifying the trail, `pm:platform/ticker` for linking new records into the chain.
use crate::filter::Filter;
use crate::routes::{self, Head, Invalid, Record, Trail, Verification};

mod bindings {
    wit_bindgen::generate!({
        world: "audit-service",
        path: "../../wit",
        with: {
            "pm:platform/types@0.1.0": platform_wit::types,
            "wasmcloud:postgres/types@0.1.1-draft": platform_wit::postgres_types,
        },
        generate_all,
    });
}

use bindings::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::{PgValue, ResultRow};
use platform_wit::sql::{answers, audit_append, describe, null_or_text, param, text};
use platform_wit::types::AuditEntry;

struct Audit;

bindings::export!(Audit with_types_in bindings);

impl bindings::exports::pm::platform::audit::Guest for Audit {
    fn append(entry: AuditEntry) -> Result<(), String> {
        let (statement, params) = audit_append(&kit::audit::Entry::from(entry));
        query(&statement, &params).map(|_| ()).map_err(describe)
    }
}

impl bindings::exports::pm::platform::service::Guest for Audit {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        platform_wit::serve(request, &[("postgres", &|| answers(query))], |request| {
            routes::handle(&Postgres, request)
        })
    }
}

impl bindings::exports::pm::platform::ticker::Guest for Audit {
    /// Links what was appended since the last tick (trail.sql, `chain_pending`), so a record is
    /// covered by the chain within a tick even when no one reads the trail.
    fn tick() -> Result<(), String> {
        link_pending()
    }
}

/// Links every committed record not linked yet into the chain; readers call it first, so what
/// they see has its hash.
fn link_pending() -> Result<(), String> {
    query("SELECT audit_trail.chain_pending(NULL)", &[])
        .map(|_| ())
        .map_err(describe)
}

struct Postgres;

fn number(row: &ResultRow, column: &str) -> Option<i64> {
    text(row, column)?.parse().ok()
}

fn record(row: &ResultRow) -> Option<Record> {
    Some(Record {
        seq: number(row, "seq")?,
        id: text(row, "id")?,
        at: text(row, "at")?,
        actor: text(row, "actor"),
        actor_role: text(row, "actor_role"),
        action: text(row, "action")?,
        resource_type: text(row, "resource_type")?,
        resource_id: text(row, "resource_id"),
        patient_id: text(row, "patient_id"),
        outcome: number(row, "outcome")?.try_into().ok()?,
        request_id: text(row, "request_id")?,
        client_address: text(row, "client_address")?,
        hash: text(row, "hash")?,
    })
}

impl Trail for Postgres {
    fn records(&self, filter: &Filter, limit: u32) -> Result<Vec<Record>, String> {
        link_pending()?;
        // Each filter is off when its parameter is null; the newest first, by chain position.
        let statement = "SELECT seq::text AS seq, id::text AS id, \
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at, \
                actor, actor_role, action, resource_type, resource_id, patient_id::text AS patient_id, \
                outcome::text AS outcome, request_id, client_address, encode(hash, 'hex') AS hash \
             FROM audit_trail.records \
             WHERE ($1::uuid IS NULL OR patient_id = $1::uuid) \
               AND ($2::text IS NULL OR actor = $2) \
               AND ($3::text IS NULL OR action = $3) \
               AND ($4::timestamptz IS NULL OR at >= $4::timestamptz) \
               AND ($5::timestamptz IS NULL OR at < $5::timestamptz) \
               AND ($6::int8 IS NULL OR seq < $6::int8) \
             ORDER BY seq DESC LIMIT $7::int8";
        let from = filter.from.map(|at| at.to_rfc3339());
        let to = filter.to.map(|at| at.to_rfc3339());
        let before = filter.before.map(|seq| seq.to_string());
        let params: Vec<PgValue> = vec![
            null_or_text(filter.patient.as_deref()),
            null_or_text(filter.actor.as_deref()),
            null_or_text(filter.action.as_deref()),
            null_or_text(from.as_deref()),
            null_or_text(to.as_deref()),
            null_or_text(before.as_deref()),
            param(&limit.to_string()),
        ];
        let rows = query(statement, &params).map_err(describe)?;
        Ok(rows.iter().filter_map(record).collect())
    }

    fn verify(&self) -> Result<Verification, String> {
        let rows = query(
            "SELECT valid::text AS valid, checked::text AS checked, bad_seq::text AS bad_seq, \
                    problem, head_seq::text AS head_seq, head_hash \
             FROM audit_trail.verify()",
            &[],
        )
        .map_err(describe)?;
        let row = rows.first().ok_or("the verification returned nothing")?;
        Ok(Verification {
            valid: text(row, "valid").as_deref() == Some("true"),
            checked: number(row, "checked").unwrap_or(0),
            first_invalid: number(row, "bad_seq").map(|seq| Invalid {
                seq,
                problem: text(row, "problem").unwrap_or_default(),
            }),
            head: number(row, "head_seq").map(|seq| Head {
                seq,
                hash: text(row, "head_hash").unwrap_or_default(),
            }),
        })
    }
}
