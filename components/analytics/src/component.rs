//! WIT glue and SQL: patient events in (`wasmcloud:messaging/handler`), the summary out
//! (`pm:platform/service`), Postgres underneath.
use patient_events::Received;
use wasmcloud_component::wasmcloud::messaging::types::BrokerMessage;

use crate::counting::Increment;
use crate::routes::{self, Counts, DayCount, Summary};

use platform_wit::event_fed::exports::pm::platform::service;
use platform_wit::event_fed::exports::wasmcloud::messaging::handler;
use platform_wit::event_fed::wasmcloud::postgres::query::query;
use platform_wit::sql::{answers, describe, null_or_text, param, text};
use platform_wit::Principal;

struct Analytics;

platform_wit::event_fed::export_event_fed_service!(Analytics);

impl service::Guest for Analytics {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        platform_wit::serve(request, &[("postgres", &|| answers(query))], |request| {
            let role = request
                .extensions()
                .get::<Principal>()
                .map(|p| p.role.as_str());
            routes::handle(&Postgres, request, role)
        })
    }
}

impl handler::Guest for Analytics {
    /// Counts the event unless its id was counted before; `Err` (the database is away) makes
    /// the Kafka provider deliver it again. A record that can never count is logged and skipped.
    fn handle_message(message: BrokerMessage) -> Result<(), String> {
        match Received::decode(&message.body).and_then(|r| Increment::of(&r)) {
            Ok(increment) => count(&increment),
            Err(e) => {
                eprintln!("analytics: skipping a record on {}: {e}", message.subject);
                Ok(())
            }
        }
    }
}

/// One statement: the event id goes into `counted_events` and, only if it was not there, the
/// counters move. A redelivered event finds its id and changes nothing.
fn count(i: &Increment) -> Result<(), String> {
    let statement = "WITH fresh AS (INSERT INTO counted_events (event_id, event_type, patient_id) \
                                    VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING RETURNING event_id), \
              totals_moved AS (UPDATE totals SET patients_created = patients_created + $4::int8, \
                                   patients_updated = patients_updated + $5::int8, \
                                   patients_deleted = patients_deleted + $6::int8 \
                               WHERE EXISTS (SELECT 1 FROM fresh) RETURNING 1), \
              day_moved AS (INSERT INTO registrations_by_day (day, count) \
                            SELECT $7::date, 1 FROM fresh WHERE $7::date IS NOT NULL \
                            ON CONFLICT (day) DO UPDATE SET count = registrations_by_day.count + 1 \
                            RETURNING 1) \
         SELECT (SELECT count(*) FROM fresh)::text AS counted";
    query(
        statement,
        &[
            param(&i.event_id),
            param(i.event_type),
            param(&i.patient_id),
            param(&i.created.to_string()),
            param(&i.updated.to_string()),
            param(&i.deleted.to_string()),
            null_or_text(i.registered_on.as_deref()),
        ],
    )
    .map(|_| ())
    .map_err(describe)
}

struct Postgres;

impl Counts for Postgres {
    fn summary(&self) -> Result<Summary, String> {
        let statement = "SELECT patients_created::text AS created, patients_updated::text AS updated, \
                    patients_deleted::text AS deleted, \
                    (SELECT coalesce(json_agg(json_build_object('date', day::text, 'count', count) ORDER BY day), '[]') \
                     FROM registrations_by_day)::text AS by_day \
             FROM totals";
        let rows = query(statement, &[]).map_err(describe)?;
        let row = rows.first().ok_or("the totals row is missing")?;
        let number = |column: &str| -> Result<i64, String> {
            text(row, column)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unreadable {column} total"))
        };
        let by_day: Vec<DayCount> = serde_json::from_str(&text(row, "by_day").unwrap_or_default())
            .map_err(|e| format!("unreadable registrations by day: {e}"))?;
        let (created, deleted) = (number("created")?, number("deleted")?);
        Ok(Summary {
            patients_created: created,
            patients_updated: number("updated")?,
            patients_deleted: deleted,
            active_patients: created - deleted,
            registrations_by_day: by_day,
        })
    }
}
