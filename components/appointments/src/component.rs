//! WIT glue and SQL: `pm:platform/service` for the gateway, `wasmcloud:messaging/handler` for
//! patient events (the local copy of patients), Postgres underneath.
use kit::audit::Entry;
use kit::fields::parse_uuid;
use patient_events::{EventType, Received};
use wasmcloud_component::wasmcloud::messaging::types::BrokerMessage;

use crate::appointment::{Appointment, AppointmentInput, Instant};
use crate::routes::{self, KnownPatient, Platform, Store, Updated, WriteError};

use platform_wit::event_fed::exports::pm::platform::service;
use platform_wit::event_fed::exports::wasmcloud::messaging::handler;
use platform_wit::event_fed::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::{PgValue, QueryError, ResultRow};
use platform_wit::sql::{and_audit, answers, describe, null_or_text, param, sqlstate, text};

struct Appointments;

platform_wit::event_fed::export_event_fed_service!(Appointments);

impl service::Guest for Appointments {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        platform_wit::serve(request, &[("postgres", &|| answers(query))], |request| {
            routes::handle(&Wasm, request)
        })
    }
}

impl handler::Guest for Appointments {
    /// Applies a patient event to the local copy; `Err` (the database is away) makes the Kafka
    /// provider deliver it again. A record that can never apply is logged and skipped.
    fn handle_message(message: BrokerMessage) -> Result<(), String> {
        match Received::decode(&message.body).and_then(|r| PatientFact::from_event(&r)) {
            Ok(fact) => fact.apply(),
            Err(e) => {
                eprintln!(
                    "appointments: skipping a record on {}: {e}",
                    message.subject
                );
                Ok(())
            }
        }
    }
}

/// A patient event reduced to what the copy needs, with every value checked, so applying it
/// fails only when the database does.
struct PatientFact {
    id: String,
    name: String,
    email: String,
    deleted: bool,
    occurred_at: String,
}

impl PatientFact {
    fn from_event(received: &Received) -> Result<Self, String> {
        let event = &received.event;
        Ok(Self {
            id: parse_uuid(&event.patient_id).ok_or("the patient id is not a UUID")?,
            name: event.name.clone(),
            email: event.email.clone(),
            deleted: received.kind == EventType::Deleted,
            occurred_at: Instant::parse(&event.occurred_at)?.to_rfc3339(),
        })
    }

    fn apply(&self) -> Result<(), String> {
        let params = [
            param(&self.id),
            param(&self.name),
            param(&self.email),
            param(&self.occurred_at),
        ];
        let statement = if self.deleted {
            // The patient is gone: its future appointments are cancelled in the same statement.
            "WITH copy AS (INSERT INTO patient_copies (id, name, email, deleted, occurred_at) \
                           VALUES ($1::uuid, $2, $3, true, $4::timestamptz) \
                           ON CONFLICT (id) DO UPDATE SET deleted = true, \
                               occurred_at = GREATEST(patient_copies.occurred_at, EXCLUDED.occurred_at) \
                           RETURNING id), \
                  cancelled AS (UPDATE appointments SET status = 'CANCELLED', version = version + 1, \
                                    updated_at = now() \
                                WHERE patient_id = $1::uuid AND status = 'SCHEDULED' AND start_time > now() \
                                RETURNING id) \
             SELECT (SELECT count(*) FROM cancelled)::text AS cancelled"
        } else {
            "INSERT INTO patient_copies (id, name, email, occurred_at) VALUES ($1::uuid, $2, $3, $4::timestamptz) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, \
                 occurred_at = EXCLUDED.occurred_at \
             WHERE patient_copies.occurred_at <= EXCLUDED.occurred_at AND NOT patient_copies.deleted"
        };
        query(statement, &params).map(|_| ()).map_err(describe)
    }
}

struct Wasm;

impl Platform for Wasm {
    fn store(&self) -> &dyn Store {
        &Postgres
    }
    fn patient(
        &self,
        id: &str,
        request: &http::Request<Vec<u8>>,
    ) -> Result<Option<KnownPatient>, String> {
        // Over the `service` link to patients (wadm/patient-management.yaml).
        let asked = platform_wit::get_record(&format!("/patients/{id}"), request);
        let answer = platform_wit::event_fed::pm::platform::service::handle(&asked);
        match answer.status {
            200 => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| format!("patients answered a patient this cannot read: {e}")),
            404 => Ok(None),
            status => Err(format!("patients answered {status}")),
        }
    }
    fn new_id(&self) -> String {
        platform_wit::new_id()
    }
    fn now_secs(&self) -> u64 {
        kit::time::now_secs()
    }
}

/// An appointment's columns, from `a` (appointments) joined with `c` (its patient's copy).
const COLUMNS: &str =
    "a.id::text AS id, a.patient_id::text AS patient_id, c.name AS patient_name, \
     to_char(a.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS start_time, \
     to_char(a.end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS end_time, \
     a.reason, a.status, a.version::text AS version";

fn appointment(row: &ResultRow) -> Option<Appointment> {
    Some(Appointment {
        id: text(row, "id")?,
        patient_id: text(row, "patient_id")?,
        patient_name: text(row, "patient_name"),
        start_time: text(row, "start_time")?,
        end_time: text(row, "end_time")?,
        reason: text(row, "reason")?,
        status: text(row, "status")?,
        version: text(row, "version")?.parse().ok()?,
    })
}

/// Runs a write, again when Postgres aborted it to break a deadlock (40P01) or a serialization
/// conflict (40001). Two overlapping bookings that race each wait on the other's entry in the
/// exclusion constraint's index; Postgres aborts one, and run again it finds the other committed
/// and fails as the overlap it is (23P01, a 409), not as an outage.
fn write(statement: &str, params: &[PgValue]) -> Result<Vec<ResultRow>, QueryError> {
    let mut attempt = 1;
    loop {
        match query(statement, params) {
            Err(e) if attempt < 3 && matches!(sqlstate(&e), Some("40P01" | "40001")) => {
                attempt += 1
            }
            other => return other,
        }
    }
}

fn write_error(e: QueryError) -> WriteError {
    // 23P01: exclusion_violation, i.e. `appointments_no_overlap`.
    if sqlstate(&e) == Some("23P01") {
        WriteError::Overlap
    } else {
        WriteError::Unavailable(describe(e))
    }
}

struct Postgres;

impl Store for Postgres {
    fn list(&self, from: Instant, to: Instant) -> Result<Vec<Appointment>, String> {
        let statement = format!(
            "SELECT {COLUMNS} FROM appointments a LEFT JOIN patient_copies c ON c.id = a.patient_id \
             WHERE a.start_time >= $1::timestamptz AND a.start_time < $2::timestamptz \
             ORDER BY a.start_time, a.id"
        );
        let rows = query(
            &statement,
            &[param(&from.to_rfc3339()), param(&to.to_rfc3339())],
        )
        .map_err(describe)?;
        Ok(rows.iter().filter_map(appointment).collect())
    }

    fn find(&self, id: &str) -> Result<Option<Appointment>, String> {
        let statement = format!(
            "SELECT {COLUMNS} FROM appointments a LEFT JOIN patient_copies c ON c.id = a.patient_id \
             WHERE a.id = $1::uuid"
        );
        Ok(query(&statement, &[param(id)])
            .map_err(describe)?
            .first()
            .and_then(appointment))
    }

    fn insert(
        &self,
        id: &str,
        input: &AppointmentInput,
        patient: &KnownPatient,
        audit: Option<&Entry>,
    ) -> Result<Option<Appointment>, WriteError> {
        // The copy takes patients' answer first (a new patient, or a new name), dated before
        // any event so every event still applies after it; a patient the copy has seen deleted
        // stays deleted and gets no appointment.
        let mut params = vec![
            param(id),
            param(&patient.id),
            param(&input.start.to_rfc3339()),
            param(&input.end.to_rfc3339()),
            param(&input.reason),
            param(&patient.name),
            param(&patient.email),
        ];
        let audit = and_audit(audit, "a", "patient_id", &mut params);
        let statement = format!(
            "WITH c AS (INSERT INTO patient_copies (id, name, email, occurred_at) \
                        VALUES ($2::uuid, $6, $7, '-infinity') \
                        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email \
                        WHERE NOT patient_copies.deleted \
                        RETURNING id, name), \
                  a AS (INSERT INTO appointments (id, patient_id, start_time, end_time, reason) \
                        SELECT $1::uuid, c.id, $3::timestamptz, $4::timestamptz, $5 FROM c \
                        RETURNING *){audit} \
             SELECT {COLUMNS} FROM a JOIN c ON c.id = a.patient_id"
        );
        let rows = write(&statement, &params).map_err(write_error)?;
        Ok(rows.first().and_then(appointment))
    }

    fn update(
        &self,
        id: &str,
        input: &AppointmentInput,
        audit: Option<&Entry>,
    ) -> Result<Updated, WriteError> {
        let sent = input.version.unwrap_or_default();
        let mut params = vec![
            param(id),
            param(&input.start.to_rfc3339()),
            param(&input.end.to_rfc3339()),
            param(&input.reason),
            param(&sent.to_string()),
            null_or_text(input.patient_id.as_deref()),
        ];
        let audit = and_audit(audit, "a", "patient_id", &mut params);
        // The version check is on the row being updated, so of two concurrent updates with the
        // same version the second finds the first's version and changes nothing. `target` (the
        // row as this statement found it) says why nothing changed.
        let statement = format!(
            "WITH target AS (SELECT id, patient_id, version, status FROM appointments WHERE id = $1::uuid), \
                  a AS (UPDATE appointments a SET start_time = $2::timestamptz, end_time = $3::timestamptz, \
                            reason = $4, version = a.version + 1, updated_at = now() \
                        WHERE a.id = $1::uuid AND a.version = $5::int8 AND a.status = 'SCHEDULED' \
                          AND ($6::uuid IS NULL OR a.patient_id = $6::uuid) \
                        RETURNING a.*){audit} \
             SELECT target.version::text AS current_version, target.status AS current_status, \
                    target.patient_id::text AS current_patient, changed.* \
             FROM target LEFT JOIN (SELECT {COLUMNS} FROM a LEFT JOIN patient_copies c ON c.id = a.patient_id) \
                  AS changed ON true"
        );
        let rows = write(&statement, &params).map_err(write_error)?;
        let Some(row) = rows.first() else {
            return Ok(Updated::NotFound);
        };
        if let Some(changed) = appointment(row) {
            return Ok(Updated::Done(changed));
        }
        let current: i64 = text(row, "current_version")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        Ok(
            if input
                .patient_id
                .as_ref()
                .is_some_and(|p| text(row, "current_patient").as_ref() != Some(p))
            {
                Updated::OtherPatient
            } else if text(row, "current_status").as_deref() == Some("CANCELLED") {
                Updated::Cancelled
            } else if current != sent {
                Updated::Stale { current }
            } else {
                // A concurrent update moved it on after this statement looked: read where it is now.
                let now = self.find(id).map_err(WriteError::Unavailable)?;
                now.map_or(Updated::NotFound, |a| Updated::Stale { current: a.version })
            },
        )
    }

    fn cancel(&self, id: &str, audit: Option<&Entry>) -> Result<bool, String> {
        // `found` sees the row as it was before the update: it says whether it exists, which
        // is what the answer (204, cancelled again or not) and so the record follow.
        let mut params = vec![param(id)];
        let audit = and_audit(audit, "found", "patient_id", &mut params);
        let statement = format!(
            "WITH found AS (SELECT id, patient_id FROM appointments WHERE id = $1::uuid), \
                  cancelled AS (UPDATE appointments SET status = 'CANCELLED', \
                              version = version + 1, updated_at = now() \
                          WHERE id = $1::uuid AND status = 'SCHEDULED' RETURNING id){audit} \
             SELECT id::text AS id FROM found"
        );
        Ok(!query(&statement, &params).map_err(describe)?.is_empty())
    }
}
