//! WIT glue: `pm:platform/service` and `ticker` in; Postgres, the Redis cache, Kafka and billing
//! out. The SQL lives here; what answer a request gets is decided in `routes`.
use wasmcloud_component::wasi::keyvalue::{atomics, batch, store};
use wasmcloud_component::wasmcloud::messaging::{consumer, types::BrokerMessage};

use crate::events::{Delivery, OutboxEntry, TOPIC};
use crate::listing::ListQuery;
use crate::patient::{Patient, PatientInput};
use crate::routes::{self, Cache, Generation, Platform, Removal, Store, WriteError};
use kit::audit::Entry;

mod bindings {
    wit_bindgen::generate!({
        world: "patients",
        path: "../../wit",
        with: {
            "wasi:keyvalue/store@0.2.0-draft": wasmcloud_component::wasi::keyvalue::store,
            "wasi:keyvalue/atomics@0.2.0-draft": wasmcloud_component::wasi::keyvalue::atomics,
            "wasmcloud:messaging/consumer@0.2.0": wasmcloud_component::wasmcloud::messaging::consumer,
            "wasmcloud:messaging/types@0.2.0": wasmcloud_component::wasmcloud::messaging::types,
            "pm:platform/types@0.1.0": platform_wit::types,
            "wasmcloud:postgres/types@0.1.1-draft": platform_wit::postgres_types,
        },
        generate_all,
    });
}

use crate::outbox::CLAIM_SQL;
use bindings::pm::platform::billing;
use bindings::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::{PgValue, QueryError, ResultRow};
use platform_wit::sql::{self, and_audit, describe, null_or_text, param, text};

/// Key-value bucket of the cache (keys get the link's prefix; values its TTL).
const CACHE_BUCKET: &str = "patients";
/// The counters of `routes::Generation`.
const GENERATION_KEY: &str = "generation";
const LISTS_GENERATION_KEY: &str = "lists-generation";

fn generation_key(generation: Generation) -> &'static str {
    match generation {
        Generation::Patients => GENERATION_KEY,
        Generation::Lists => LISTS_GENERATION_KEY,
    }
}

/// Outbox rows one relay claims and delivers at once. A batch's billing opens go to billing in
/// one call; events are published one by one.
const RELAY_BATCH: u32 = 200;
/// Batches of one channel a tick relays at most (5,000 rows), so one tick stays well inside the
/// ticker's 30 s timeout; what is left waits for the next tick.
const RELAY_BATCHES_PER_TICK: u32 = 25;

struct Patients;

bindings::export!(Patients with_types_in bindings);

impl bindings::exports::pm::platform::service::Guest for Patients {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        let cache = || Redis.lookup(&[], GENERATION_KEY).map(|_| ());
        platform_wit::serve(
            request,
            &[("postgres", &|| sql::answers(query)), ("cache", &cache)],
            |request| routes::handle(&Wasm, request),
        )
    }
}

impl bindings::exports::pm::platform::ticker::Guest for Patients {
    /// Relays what earlier writes could not deliver (Kafka or billing was down), and every
    /// billing call. Events go first and are settled before billing is called: a call to a
    /// billing that is down fails the whole invocation, which must not undo settled events.
    fn tick() -> Result<(), String> {
        relay_backlog("event")?;
        relay_backlog("billing")
    }
}

/// Relays full batches of `channel` until one comes back short: nothing is left, or its target
/// is down. One batch a tick drained at most 50 rows a second, fewer than a busy minute of
/// creates queues, so a backlog only grew.
fn relay_backlog(channel: &str) -> Result<(), String> {
    for _ in 0..RELAY_BATCHES_PER_TICK {
        if relay(channel, RELAY_BATCH)? < RELAY_BATCH {
            break;
        }
    }
    Ok(())
}

struct Wasm;

impl Platform for Wasm {
    fn store(&self) -> &dyn Store {
        &Postgres
    }
    fn cache(&self) -> &dyn Cache {
        &Redis
    }
    fn new_id(&self) -> String {
        platform_wit::new_id()
    }
    fn now_secs(&self) -> u64 {
        kit::time::now_secs()
    }
}

struct Postgres;

const COLUMNS: &str =
    "id::text AS id, name, email, address, date_of_birth::text AS date_of_birth, \
                       registered_date::text AS registered_date";

fn patient(row: &ResultRow) -> Option<Patient> {
    Some(Patient {
        id: text(row, "id")?,
        name: text(row, "name")?,
        email: text(row, "email")?,
        address: text(row, "address")?,
        date_of_birth: text(row, "date_of_birth")?,
        registered_date: text(row, "registered_date")?,
    })
}

fn write_error(e: QueryError) -> WriteError {
    if sql::is_unique_violation(&e) {
        WriteError::EmailTaken
    } else {
        WriteError::Unavailable(describe(e))
    }
}

/// The CTE that stores a write's outbox rows, only when the write changed a patient (`p`), free
/// for the relay; params are appended to `params` from `$first` on.
fn outbox_insert(rows: &[OutboxEntry], first: usize, params: &mut Vec<PgValue>) -> String {
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let n = first + i * 5;
            params.extend([
                param(&entry.id),
                param(&entry.patient_id),
                param(entry.delivery.channel()),
                param(entry.delivery.kind()),
                param(&entry.delivery.payload_json()),
            ]);
            format!(
                "(${n}::uuid, ${}::uuid, ${}, ${}, ${}::jsonb)",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            )
        })
        .collect();
    format!(
        "o AS (INSERT INTO outbox (id, patient_id, channel, kind, payload) \
               SELECT id, patient_id, channel, kind, payload \
               FROM (VALUES {}) AS v (id, patient_id, channel, kind, payload) \
               WHERE EXISTS (SELECT 1 FROM p))",
        values.join(", ")
    )
}

impl Store for Postgres {
    fn list(&self, q: &ListQuery) -> Result<(Vec<Patient>, u64), String> {
        // One statement: the count and the page (the LEFT JOIN keeps the count on an empty page).
        let order = format!(
            "{} {}, id",
            q.sort_field.column(),
            if q.ascending { "ASC" } else { "DESC" }
        );
        let statement = format!(
            "WITH matching AS (SELECT * FROM patients WHERE $1::text IS NULL OR name ILIKE $1), \
                  total AS (SELECT count(*) AS n FROM matching), \
                  page AS (SELECT {COLUMNS}, row_number() OVER (ORDER BY {order}) AS position \
                           FROM matching ORDER BY {order} LIMIT $2::int8 OFFSET $3::int8) \
             SELECT total.n::text AS total, page.* FROM total LEFT JOIN page ON true \
             ORDER BY page.position"
        );
        let rows = query(
            &statement,
            &[
                null_or_text(q.like_pattern().as_deref()),
                param(&q.size.to_string()),
                param(&q.offset().to_string()),
            ],
        )
        .map_err(describe)?;
        let total = rows
            .first()
            .and_then(|r| text(r, "total"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok((rows.iter().filter_map(patient).collect(), total))
    }

    fn find(&self, id: &str) -> Result<Option<Patient>, String> {
        let rows = query(
            &format!("SELECT {COLUMNS} FROM patients WHERE id = $1::uuid"),
            &[param(id)],
        )
        .map_err(describe)?;
        Ok(rows.first().and_then(patient))
    }

    fn insert(
        &self,
        p: &Patient,
        outbox: &[OutboxEntry],
        audit: Option<&Entry>,
    ) -> Result<(), WriteError> {
        let mut params = vec![
            param(&p.id),
            param(&p.name),
            param(&p.email),
            param(&p.address),
            param(&p.date_of_birth),
            param(&p.registered_date),
        ];
        let outbox = outbox_insert(outbox, 7, &mut params);
        let audit = and_audit(audit, "p", "id", &mut params);
        let statement = format!(
            "WITH p AS (INSERT INTO patients (id, name, email, address, date_of_birth, registered_date) \
                        VALUES ($1::uuid, $2, $3, $4, $5::date, $6::date) RETURNING id), \
                  {outbox}{audit} \
             SELECT id::text AS id FROM p"
        );
        query(&statement, &params).map_err(write_error)?;
        Ok(())
    }

    fn update(
        &self,
        id: &str,
        input: &PatientInput,
        outbox: &[OutboxEntry],
        audit: Option<&Entry>,
    ) -> Result<Option<Patient>, WriteError> {
        let registered = input.registered_date.map(|d| d.to_string());
        let mut params = vec![
            param(id),
            param(&input.name),
            param(input.email.as_str()),
            param(&input.address),
            param(&input.date_of_birth.to_string()),
            null_or_text(registered.as_deref()),
        ];
        let outbox = outbox_insert(outbox, 7, &mut params);
        let audit = and_audit(audit, "p", "id", &mut params);
        let statement = format!(
            "WITH p AS (UPDATE patients SET name = $2, email = $3, address = $4, date_of_birth = $5::date, \
                        registered_date = COALESCE($6::date, registered_date), updated_at = now() \
                        WHERE id = $1::uuid RETURNING {COLUMNS}), \
                  {outbox}{audit} \
             SELECT * FROM p"
        );
        let rows = query(&statement, &params).map_err(write_error)?;
        Ok(rows.first().and_then(patient))
    }

    fn delete(&self, removal: &Removal, audit: Option<&Entry>) -> Result<bool, String> {
        let event_row = platform_wit::new_id();
        let mut params = vec![
            param(&removal.id),
            param(&event_row),
            param(&removal.event_id),
            param(&removal.at),
            param(&removal.close_id),
        ];
        let audit = and_audit(audit, "p", "id", &mut params);
        // The event carries the deleted row's name and email, so it is built from that row.
        let statement = format!(
            "WITH p AS (DELETE FROM patients WHERE id = $1::uuid RETURNING id, name, email), \
                 o AS (INSERT INTO outbox (id, patient_id, channel, kind, payload) \
                       SELECT $2::uuid, p.id, 'event', 'event', jsonb_build_object( \
                           'eventId', $3::text, 'eventType', 'PATIENT_DELETED', 'patientId', p.id::text, \
                           'name', p.name, 'email', p.email, 'occurredAt', $4::text) FROM p \
                       UNION ALL \
                       SELECT $5::uuid, p.id, 'billing', 'billing-close', \
                           jsonb_build_object('patientId', p.id::text) FROM p){audit} \
             SELECT id::text AS id FROM p"
        );
        let rows = query(&statement, &params).map_err(describe)?;
        Ok(!rows.is_empty())
    }
}

struct Redis;

fn cache_error(e: store::Error) -> String {
    format!("{e:?}")
}

impl Cache for Redis {
    fn lookup(
        &self,
        generations: &[Generation],
        key: &str,
    ) -> Result<(Vec<u64>, Option<Vec<u8>>), String> {
        let bucket = store::open(CACHE_BUCKET).map_err(cache_error)?;
        let keys: Vec<String> = generations
            .iter()
            .map(|g| generation_key(*g).to_string())
            .chain(std::iter::once(key.to_string()))
            .collect();
        let mut found = batch::get_many(&bucket, &keys)
            .map_err(cache_error)?
            .into_iter()
            .map(|pair| pair.map(|(_, value)| value));
        // A counter is Redis's decimal text; absent means no write has bumped it yet.
        let counters = generations
            .iter()
            .map(|_| match found.next().flatten() {
                Some(text) => std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| format!("a cache generation is not a number: {text:?}")),
                None => Ok(0),
            })
            .collect::<Result<Vec<u64>, String>>()?;
        Ok((counters, found.next().flatten()))
    }
    fn put(&self, key: &str, value: &[u8]) {
        if let Err(e) = store::open(CACHE_BUCKET).and_then(|b| b.set(key, value)) {
            eprintln!("patients cache: not stored: {e:?}");
        }
    }
    fn bump(&self, generation: Generation) -> Result<(), String> {
        let bucket = store::open(CACHE_BUCKET).map_err(cache_error)?;
        atomics::increment(&bucket, generation_key(generation), 1)
            .map(|_| ())
            .map_err(cache_error)
    }
}

/// Claims up to `limit` undelivered outbox rows of `channel`, delivers them and deletes the
/// delivered ones. A claim is a 30 s lease, so a relay that dies mid-way leaves rows for the
/// next one (`crate::outbox`).
fn relay(channel: &str, limit: u32) -> Result<u32, String> {
    let claimed =
        query(CLAIM_SQL, &[param(channel), param(&limit.to_string())]).map_err(describe)?;
    let mut rows: Vec<(u64, OutboxEntry)> = claimed
        .iter()
        .filter_map(|row| {
            let delivery = Delivery::from_row(&text(row, "kind")?, &text(row, "payload")?)
                .map_err(|e| eprintln!("outbox row unreadable: {e}"))
                .ok()?;
            Some((
                text(row, "seq")?.parse().ok()?,
                OutboxEntry {
                    id: text(row, "id")?,
                    patient_id: text(row, "patient_id")?,
                    delivery,
                },
            ))
        })
        .collect();
    rows.sort_by_key(|(seq, _)| *seq);
    let entries: Vec<OutboxEntry> = rows.into_iter().map(|(_, entry)| entry).collect();
    settle(&entries)
}

/// Delivers claimed outbox rows and deletes the delivered ones. The billing opens go first, in
/// one call (a claimed batch holds at most one row per patient, so their order among themselves
/// does not matter); the rest go one by one in order. At the first failure what is left is freed
/// for the next tick (the target is down: the others would each wait out a timeout).
fn settle(entries: &[OutboxEntry]) -> Result<u32, String> {
    let (mut opens, mut accounts, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        match new_account(&entry.delivery) {
            Some(account) => {
                opens.push(entry.id.clone());
                accounts.push(account);
            }
            None => others.push(entry),
        }
    }
    let mut delivered = Vec::new();
    let mut failure = None;
    if !accounts.is_empty() {
        match open_accounts(&accounts) {
            Ok(()) => delivered.extend(opens),
            Err(e) => failure = Some((e, opens)),
        }
    }
    let mut others = others.into_iter();
    if failure.is_none() {
        for entry in others.by_ref() {
            match deliver(&entry.delivery) {
                Ok(()) => delivered.push(entry.id.clone()),
                Err(e) => {
                    failure = Some((e, vec![entry.id.clone()]));
                    break;
                }
            }
        }
    }
    if !delivered.is_empty() {
        query(
            "DELETE FROM outbox WHERE id = ANY($1::uuid[])",
            &[uuid_array(&delivered)],
        )
        .map_err(describe)?;
    }
    if let Some((error, failed)) = failure {
        eprintln!(
            "outbox: {} row(s) not delivered yet (first {}): {error}",
            failed.len(),
            failed[0]
        );
        // Free the failed rows and those after them for the next tick now, not when the lease ends.
        let undelivered: Vec<String> = failed
            .into_iter()
            .chain(others.map(|e| e.id.clone()))
            .collect();
        let _ = query(
            "UPDATE outbox SET lease_until = NULL, last_error = $2 WHERE id = ANY($1::uuid[])",
            &[uuid_array(&undelivered), param(&error)],
        );
    }
    Ok(delivered.len() as u32)
}

/// The account a `BillingOpen` row asks billing to open; `None` for any other row.
fn new_account(delivery: &Delivery) -> Option<billing::NewAccount> {
    match delivery {
        Delivery::BillingOpen {
            patient_id,
            name,
            email,
        } => Some(billing::NewAccount {
            patient_id: patient_id.clone(),
            name: name.clone(),
            email: email.clone(),
        }),
        _ => None,
    }
}

/// Opens `accounts` in one call to billing (the only way the relay opens accounts).
fn open_accounts(accounts: &[billing::NewAccount]) -> Result<(), String> {
    billing::open_accounts(accounts)
        .map(|_| ())
        .map_err(billing_error)
}

/// A `uuid[]` parameter (Postgres array literal) of `ids`.
fn uuid_array(ids: &[String]) -> PgValue {
    param(&format!("{{{}}}", ids.join(",")))
}

fn deliver(delivery: &Delivery) -> Result<(), String> {
    match delivery {
        Delivery::Event(event) => consumer::publish(&BrokerMessage {
            subject: format!("{TOPIC}/{}", event.patient_id),
            body: event.to_protobuf(),
            reply_to: None,
        }),
        // `settle` opens a batch's accounts together; one alone goes the same way.
        Delivery::BillingOpen { .. } => {
            open_accounts(&new_account(delivery).into_iter().collect::<Vec<_>>())
        }
        Delivery::BillingClose { patient_id } => match billing::close_account(patient_id) {
            Ok(_) => Ok(()),
            // Nothing to close (never opened): there is nothing left to do either.
            Err(billing::BillingError::NotFound) => Ok(()),
            Err(e) => Err(billing_error(e)),
        },
    }
}

fn billing_error(e: billing::BillingError) -> String {
    match e {
        billing::BillingError::Invalid(m) => format!("billing refused: {m}"),
        billing::BillingError::NotFound => "billing: no such account".into(),
        billing::BillingError::Unavailable(m) => format!("billing unavailable: {m}"),
    }
}
