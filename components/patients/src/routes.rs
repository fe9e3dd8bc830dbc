//! Patients' answers (SPEC.md "Patients"): status codes, bodies and the order of side effects.
//! Everything the component needs from outside is behind `Platform`, so this is tested natively.
//!
//! Caching: every entry is stamped with the cache *generations* read before its value was loaded,
//! counters in Redis that writes bump after their commit, and counts only while the stamp is
//! still current. A read that raced with a write can only store an entry stamped with the old
//! generation, which no later read accepts, so a read after a write never sees old data, on any
//! host. A read fetches the generations and the entry in one round trip. There are two
//! generations (`Generation`): an update or a delete bumps the one every entry is stamped with; a
//! create bumps only the one of list pages, since a new patient is in no answer read before it
//! but a page. So under a mix of reads and creates, a patient's cached answer stays cached.
use http::{Request, Response, StatusCode};
use kit::audit::{self, Context, Entry};
use kit::collection::{Collection, Route};
use kit::fields::Date;
use kit::openapi::BearerAuth;
use kit::request::json_body;
use kit::{response, time, Problem};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::events::{Delivery, EventPayload, EventType, OutboxEntry};
use crate::listing::{total_pages, ListQuery};
use crate::patient::{Patient, PatientBody, PatientInput, PatientUpdateBody, Purpose};

/// Why a write did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Another patient has this email (the unique index said so).
    EmailTaken,
    Unavailable(String),
}

/// Patients' database: each write stores its outbox rows in the same statement.
pub trait Store {
    /// One page and the number of matching patients.
    fn list(&self, query: &ListQuery) -> Result<(Vec<Patient>, u64), String>;
    fn find(&self, id: &str) -> Result<Option<Patient>, String>;
    /// Stores the patient with its `outbox` rows, which the relay delivers. Every write also
    /// stores `audit`, the request's audit record, when it is audited.
    fn insert(
        &self,
        patient: &Patient,
        outbox: &[OutboxEntry],
        audit: Option<&Entry>,
    ) -> Result<(), WriteError>;
    /// `None` when there is no such patient. A `None` registered date keeps the stored one.
    fn update(
        &self,
        id: &str,
        input: &PatientInput,
        outbox: &[OutboxEntry],
        audit: Option<&Entry>,
    ) -> Result<Option<Patient>, WriteError>;
    /// False when there is no such patient. The event and billing rows are built from the
    /// deleted row itself (`event` and `close` give their ids and time).
    fn delete(&self, removal: &Removal, audit: Option<&Entry>) -> Result<bool, String>;
}

/// The ids and time of a deletion's event and billing rows.
pub struct Removal {
    pub id: String,
    pub event_id: String,
    pub close_id: String,
    pub at: String,
}

/// Which cached answers a write makes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// Every answer: updates and deletes change what a cached answer may hold.
    Patients,
    /// List pages only: a create adds a patient to pages, and to no other answer read before it.
    Lists,
}

/// The read cache (Redis). Failures are not errors to the client: the database answers instead.
pub trait Cache {
    /// The current values of `generations` and what is stored under `key`, in one round trip.
    fn lookup(
        &self,
        generations: &[Generation],
        key: &str,
    ) -> Result<(Vec<u64>, Option<Vec<u8>>), String>;
    fn put(&self, key: &str, value: &[u8]);
    /// Moves `generation` on: every entry stamped with it before is stale.
    fn bump(&self, generation: Generation) -> Result<(), String>;
}

pub trait Platform {
    fn store(&self) -> &dyn Store;
    fn cache(&self) -> &dyn Cache;
    fn new_id(&self) -> String;
    fn now_secs(&self) -> u64;
}

const PATIENTS: Collection = Collection {
    plural: "patients",
    one: "a patient",
};

pub fn handle(platform: &dyn Platform, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let result = PATIENTS
        .route(request.method(), request.uri().path())
        .and_then(|route| match route {
            Route::OpenApi => Ok(response::json(StatusCode::OK, &Api::openapi())),
            Route::List => list(platform, request.uri().query()),
            Route::Create => create(platform, request),
            Route::Get(id) => get(platform, &id),
            Route::Update(id) => update(platform, &id, request),
            Route::Delete(id) => delete(platform, &id, request),
        });
    result.unwrap_or_else(|p| response::problem(&p))
}

fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("patient store unavailable, retry later: {e}"),
    )
}

fn write_error(e: WriteError, email: &str) -> Problem {
    match e {
        WriteError::EmailTaken => Problem::new(
            StatusCode::CONFLICT,
            format!("a patient with email {email} already exists"),
        ),
        WriteError::Unavailable(e) => unavailable(e),
    }
}

/// What the cache holds: a value and the generations it was loaded in (an entry in the format
/// of an earlier build does not read as this, and counts as a miss).
#[derive(Serialize, Deserialize)]
struct Stamped<T> {
    generations: Vec<u64>,
    value: T,
}

/// The answer from the cache under `key` (stamped with the current `generations`), else from
/// `load`, which is then cached. `Ok(None)` from `load` (not found) is not cached.
fn cached<T: Serialize + for<'de> Deserialize<'de>>(
    platform: &dyn Platform,
    generations: &[Generation],
    key: Option<String>,
    load: impl FnOnce() -> Result<Option<T>, String>,
) -> Result<Option<T>, Problem> {
    let cache = platform.cache();
    // The generations before loading: an entry stored with them goes stale at the next write
    // that bumps one of them.
    let stamp = match key.as_deref().map(|k| cache.lookup(generations, k)) {
        Some(Ok((current, entry))) => {
            let hit = entry.and_then(|bytes| serde_json::from_slice::<Stamped<T>>(&bytes).ok());
            if let Some(hit) = hit.filter(|hit| hit.generations == current) {
                return Ok(Some(hit.value));
            }
            Some(current)
        }
        Some(Err(e)) => {
            eprintln!("patients cache unavailable, reading the database: {e}");
            None
        }
        None => None,
    };
    let value = load().map_err(unavailable)?;
    if let (Some(key), Some(generations), Some(value)) = (key, stamp, &value) {
        if let Ok(bytes) = serde_json::to_vec(&Stamped { generations, value }) {
            cache.put(&key, &bytes);
        }
    }
    Ok(value)
}

/// After a committed write: make the cached answers it changed stale. What it queued in the
/// outbox (its event, a billing call) is the relay's to deliver, within a tick of the ticker
/// (1 s): a write makes no call for it, two calls fewer than publishing at once (the publish and
/// deleting its row), and appointments no longer needs the event at once (it reads a patient
/// it lacks through from patients).
fn after_write(platform: &dyn Platform, patient_id: &str, stale: Generation) {
    if let Err(e) = platform.cache().bump(stale) {
        // The write is committed; entries cached before it expire with their TTL.
        eprintln!("patients cache generation not bumped after writing {patient_id}: {e}");
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientPage {
    pub patients: Vec<Patient>,
    /// From 1.
    pub page: u32,
    pub size: u32,
    pub total_pages: u64,
    pub total_elements: u64,
}

#[utoipa::path(
    get,
    path = "/api/patients",
    operation_id = "listPatients",
    security(("bearer" = [])),
    params(
        ("page" = Option<u32>, Query, description = "Page number, from 1 (default 1)", minimum = 1, maximum = 42949672),
        ("size" = Option<u32>, Query, description = "Page size, 1-100 (default 10)", minimum = 1, maximum = 100),
        ("sort" = Option<SortDirection>, Query, description = "asc (default) or desc"),
        ("sortField" = Option<SortFieldName>, Query, description = "name (default), email, dateOfBirth or registeredDate"),
        ("searchValue" = Option<String>, Query, description = "Case-insensitive part of the name (trimmed; no NUL)", max_length = 100)
    ),
    responses(
        (status = 200, description = "One page of patients", body = PatientPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn list(platform: &dyn Platform, query: Option<&str>) -> Result<Response<Vec<u8>>, Problem> {
    let query = ListQuery::parse(query).map_err(Problem::validation)?;
    let generations = [Generation::Patients, Generation::Lists];
    let page = cached(platform, &generations, query.cache_key(), || {
        let (patients, total) = platform.store().list(&query)?;
        Ok(Some(PatientPage {
            patients,
            page: query.page,
            size: query.size,
            total_pages: total_pages(total, query.size),
            total_elements: total,
        }))
    })?;
    Ok(response::json(StatusCode::OK, &page))
}

#[utoipa::path(
    get,
    path = "/api/patients/{id}",
    operation_id = "getPatient",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The patient", body = Patient),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient", body = Problem, content_type = "application/problem+json")
    )
)]
fn get(platform: &dyn Platform, id: &str) -> Result<Response<Vec<u8>>, Problem> {
    let patient = cached(
        platform,
        &[Generation::Patients],
        Some(format!("patient:{id}")),
        || platform.store().find(id),
    )?;
    match patient {
        Some(patient) => Ok(response::json(StatusCode::OK, &patient)),
        None => Err(no_patient(id)),
    }
}

fn no_patient(id: &str) -> Problem {
    Problem::not_found(format!("no patient with id {id}"))
}

fn event(
    platform: &dyn Platform,
    kind: EventType,
    patient_id: &str,
    name: &str,
    email: &str,
    registered_date: Option<Date>,
) -> OutboxEntry {
    OutboxEntry {
        id: platform.new_id(),
        patient_id: patient_id.to_string(),
        delivery: Delivery::Event(EventPayload {
            event_id: platform.new_id(),
            event_type: kind.as_str().to_string(),
            patient_id: patient_id.to_string(),
            name: name.to_string(),
            email: email.to_string(),
            occurred_at: time::rfc3339(platform.now_secs()),
            registered_date: registered_date.map(|d| d.to_string()),
        }),
    }
}

fn today(platform: &dyn Platform) -> Date {
    Date::from_unix_secs(platform.now_secs())
}

#[utoipa::path(
    post,
    path = "/api/patients",
    operation_id = "createPatient",
    security(("bearer" = [])),
    request_body = PatientBody,
    responses(
        (status = 201, description = "Created; `Location` names it", body = Patient),
        (status = 400, description = "Invalid fields, each named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another patient has this email", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn create(
    platform: &dyn Platform,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let body: PatientBody = json_body(request)?;
    let input = PatientInput::parse(&body, Purpose::Create, today(platform))
        .map_err(Problem::validation)?;
    let registered = input.registered_date.expect("required on create");
    let patient = Patient {
        id: platform.new_id(),
        name: input.name.clone(),
        email: input.email.as_str().to_string(),
        address: input.address.clone(),
        date_of_birth: input.date_of_birth.to_string(),
        registered_date: registered.to_string(),
    };
    let outbox = [
        event(
            platform,
            EventType::Created,
            &patient.id,
            &patient.name,
            &patient.email,
            Some(registered),
        ),
        OutboxEntry {
            id: platform.new_id(),
            patient_id: patient.id.clone(),
            delivery: Delivery::BillingOpen {
                patient_id: patient.id.clone(),
                name: patient.name.clone(),
                email: patient.email.clone(),
            },
        },
    ];
    let record = Context::of(request).map(|c| c.entry(201, Some(&patient.id), Some(&patient.id)));
    platform
        .store()
        .insert(&patient, &outbox, record.as_ref())
        .map_err(|e| write_error(e, &patient.email))?;
    after_write(platform, &patient.id, Generation::Lists);
    Ok(audit::recorded(
        PATIENTS.created(&patient.id, &patient),
        record.as_ref(),
    ))
}

#[utoipa::path(
    put,
    path = "/api/patients/{id}",
    operation_id = "updatePatient",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id (UUID)", format = Uuid)),
    request_body = PatientUpdateBody,
    responses(
        (status = 200, description = "Updated", body = Patient),
        (status = 400, description = "Invalid fields or id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another patient has this email", body = Problem, content_type = "application/problem+json")
    )
)]
fn update(
    platform: &dyn Platform,
    id: &str,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let body: PatientBody = json_body(request)?;
    let input = PatientInput::parse(&body, Purpose::Update, today(platform))
        .map_err(Problem::validation)?;
    let outbox = [event(
        platform,
        EventType::Updated,
        id,
        &input.name,
        input.email.as_str(),
        input.registered_date,
    )];
    let record = Context::of(request).map(|c| c.entry(200, Some(id), Some(id)));
    let updated = platform
        .store()
        .update(id, &input, &outbox, record.as_ref())
        .map_err(|e| write_error(e, input.email.as_str()))?
        .ok_or_else(|| no_patient(id))?;
    after_write(platform, id, Generation::Patients);
    Ok(audit::recorded(
        response::json(StatusCode::OK, &updated),
        record.as_ref(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/patients/{id}",
    operation_id = "deletePatient",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Patient id (UUID)", format = Uuid)),
    responses(
        (status = 204, description = "Deleted; the billing account is closed"),
        (status = 404, description = "No such patient", body = Problem, content_type = "application/problem+json")
    )
)]
fn delete(
    platform: &dyn Platform,
    id: &str,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let removal = Removal {
        id: id.to_string(),
        event_id: platform.new_id(),
        close_id: platform.new_id(),
        at: time::rfc3339(platform.now_secs()),
    };
    let record = Context::of(request).map(|c| c.entry(204, Some(id), Some(id)));
    let deleted = platform
        .store()
        .delete(&removal, record.as_ref())
        .map_err(unavailable)?;
    if !deleted {
        return Err(no_patient(id));
    }
    after_write(platform, id, Generation::Patients);
    Ok(audit::recorded(response::no_content(), record.as_ref()))
}

/// The values of `sort`, for the document (the handler reads them in `listing`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum SortDirection {
    Asc,
    Desc,
}

/// The values of `sortField`, for the document (`listing::SortField` reads them).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
enum SortFieldName {
    Name,
    Email,
    DateOfBirth,
    RegisteredDate,
}

/// Patients' OpenAPI document, generated from the handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(title = "patients", description = "Patient records", version = env!("CARGO_PKG_VERSION")),
    paths(list, get, create, update, delete),
    components(schemas(Patient, PatientBody, PatientUpdateBody, PatientPage, SortDirection, SortFieldName, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, Method};
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use serde_json::json;

    #[derive(Default)]
    struct Memory {
        patients: RefCell<Vec<Patient>>,
        outbox: RefCell<Vec<OutboxEntry>>,
        audited: RefCell<Vec<Entry>>,
        finds: Cell<u32>,
        down: bool,
    }

    impl Memory {
        fn taken(&self, email: &str, except: &str) -> bool {
            self.patients
                .borrow()
                .iter()
                .any(|p| p.email == email && p.id != except)
        }
    }

    impl Store for Memory {
        fn list(&self, q: &ListQuery) -> Result<(Vec<Patient>, u64), String> {
            let mut all: Vec<Patient> = self.patients.borrow().clone();
            if let Some(s) = &q.search {
                all.retain(|p| p.name.to_lowercase().contains(&s.to_lowercase()));
            }
            all.sort_by_key(|a| a.name.to_lowercase());
            if !q.ascending {
                all.reverse();
            }
            let total = all.len() as u64;
            let page = all
                .into_iter()
                .skip(q.offset() as usize)
                .take(q.size as usize)
                .collect();
            Ok((page, total))
        }
        fn find(&self, id: &str) -> Result<Option<Patient>, String> {
            if self.down {
                return Err("connection refused".into());
            }
            self.finds.set(self.finds.get() + 1);
            Ok(self.patients.borrow().iter().find(|p| p.id == id).cloned())
        }
        fn insert(
            &self,
            patient: &Patient,
            outbox: &[OutboxEntry],
            audit: Option<&Entry>,
        ) -> Result<(), WriteError> {
            if self.down {
                return Err(WriteError::Unavailable("connection refused".into()));
            }
            if self.taken(&patient.email, "") {
                return Err(WriteError::EmailTaken);
            }
            self.patients.borrow_mut().push(patient.clone());
            self.outbox.borrow_mut().extend_from_slice(outbox);
            self.audited.borrow_mut().extend(audit.cloned());
            Ok(())
        }
        fn update(
            &self,
            id: &str,
            input: &PatientInput,
            outbox: &[OutboxEntry],
            audit: Option<&Entry>,
        ) -> Result<Option<Patient>, WriteError> {
            if self.taken(input.email.as_str(), id) {
                return Err(WriteError::EmailTaken);
            }
            let mut patients = self.patients.borrow_mut();
            let Some(p) = patients.iter_mut().find(|p| p.id == id) else {
                return Ok(None);
            };
            p.name = input.name.clone();
            p.email = input.email.as_str().into();
            p.address = input.address.clone();
            p.date_of_birth = input.date_of_birth.to_string();
            if let Some(d) = input.registered_date {
                p.registered_date = d.to_string();
            }
            self.outbox.borrow_mut().extend_from_slice(outbox);
            self.audited.borrow_mut().extend(audit.cloned());
            Ok(Some(p.clone()))
        }
        fn delete(&self, removal: &Removal, audit: Option<&Entry>) -> Result<bool, String> {
            let id = removal.id.as_str();
            let before = self.patients.borrow().len();
            self.patients.borrow_mut().retain(|p| p.id != id);
            let deleted = self.patients.borrow().len() < before;
            if deleted {
                self.outbox.borrow_mut().push(OutboxEntry {
                    id: removal.close_id.clone(),
                    patient_id: id.into(),
                    delivery: Delivery::BillingClose {
                        patient_id: id.into(),
                    },
                });
                self.audited.borrow_mut().extend(audit.cloned());
            }
            Ok(deleted)
        }
    }

    #[derive(Default)]
    struct MemoryCache {
        entries: RefCell<HashMap<String, Vec<u8>>>,
        generation: Cell<u64>,
        lists_generation: Cell<u64>,
        down: bool,
    }

    impl MemoryCache {
        fn counter(&self, generation: Generation) -> &Cell<u64> {
            match generation {
                Generation::Patients => &self.generation,
                Generation::Lists => &self.lists_generation,
            }
        }
    }

    impl Cache for MemoryCache {
        fn lookup(
            &self,
            generations: &[Generation],
            key: &str,
        ) -> Result<(Vec<u64>, Option<Vec<u8>>), String> {
            if self.down {
                return Err("redis unavailable".into());
            }
            Ok((
                generations.iter().map(|g| self.counter(*g).get()).collect(),
                self.entries.borrow().get(key).cloned(),
            ))
        }
        fn put(&self, key: &str, value: &[u8]) {
            self.entries.borrow_mut().insert(key.into(), value.to_vec());
        }
        fn bump(&self, generation: Generation) -> Result<(), String> {
            let counter = self.counter(generation);
            counter.set(counter.get() + 1);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Fake {
        store: Memory,
        cache: MemoryCache,
        ids: Cell<u32>,
    }

    impl Platform for Fake {
        fn store(&self) -> &dyn Store {
            &self.store
        }
        fn cache(&self) -> &dyn Cache {
            &self.cache
        }
        fn new_id(&self) -> String {
            self.ids.set(self.ids.get() + 1);
            format!("00000000-0000-4000-8000-{:012}", self.ids.get())
        }
        fn now_secs(&self) -> u64 {
            1_795_000_000 // 2026-11-18
        }
    }

    fn request(method: Method, path: &str, body: Option<serde_json::Value>) -> Request<Vec<u8>> {
        let builder = Request::builder().method(method).uri(path);
        match body {
            Some(b) => builder
                .header("content-type", "application/json")
                .body(b.to_string().into_bytes()),
            None => builder.body(Vec::new()),
        }
        .unwrap()
    }

    fn call(
        fake: &Fake,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let answer = handle(fake, &request(method, path, body));
        let body = serde_json::from_slice(answer.body()).unwrap_or(serde_json::Value::Null);
        (answer.status(), body)
    }

    fn ada() -> serde_json::Value {
        json!({"name": "Ada Lovelace", "email": "Ada@Example.com", "address": "1 Analytical St",
               "dateOfBirth": "1815-12-10", "registeredDate": "2026-11-01"})
    }

    fn created(fake: &Fake, body: serde_json::Value) -> String {
        let (status, patient) = call(fake, Method::POST, "/patients", Some(body));
        assert_eq!(status, StatusCode::CREATED, "{patient}");
        patient["id"].as_str().unwrap().to_string()
    }

    /// `request` as the gateway forwards an audited request.
    fn audited(mut request: Request<Vec<u8>>, action: &str) -> Request<Vec<u8>> {
        for (name, value) in [
            (audit::ID, "0b9c9d34-4a0f-4b5e-9d8e-2f8f3b1b1a11"),
            (audit::ACTION, action),
            (audit::RESOURCE_TYPE, "patient"),
            (audit::CLIENT_ADDRESS, "203.0.113.9"),
        ] {
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        request
    }

    #[test]
    fn a_write_stores_its_audit_record_with_it_and_says_so() {
        let fake = Fake::default();
        let create = audited(
            request(Method::POST, "/patients", Some(ada())),
            "patient.create",
        );
        let answer = handle(&fake, &create);
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(answer.headers()[audit::AUDITED], "1");
        let id = serde_json::from_slice::<Patient>(answer.body()).unwrap().id;
        let records = fake.store.audited.borrow().clone();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].outcome, records[0].patient_id.as_deref()),
            (201, Some(id.as_str()))
        );
        // A refused write stores nothing and leaves the record to the gateway.
        let again = audited(
            request(Method::POST, "/patients", Some(ada())),
            "patient.create",
        );
        let answer = handle(&fake, &again);
        assert_eq!(answer.status(), StatusCode::CONFLICT);
        assert!(!answer.headers().contains_key(audit::AUDITED));
        let delete = audited(
            request(Method::DELETE, &format!("/patients/{id}"), None),
            "patient.delete",
        );
        assert_eq!(handle(&fake, &delete).status(), StatusCode::NO_CONTENT);
        assert_eq!(fake.store.audited.borrow().len(), 2);
        // Not forwarded as an audited request (another service's call): nothing recorded.
        created(&fake, ada());
        assert_eq!(fake.store.audited.borrow().len(), 2);
    }

    #[test]
    fn create_stores_the_patient_with_its_event_and_billing_row() {
        let fake = Fake::default();
        let answer = handle(&fake, &request(Method::POST, "/patients", Some(ada())));
        assert_eq!(answer.status(), StatusCode::CREATED);
        let patient: Patient = serde_json::from_slice(answer.body()).unwrap();
        assert_eq!(
            answer.headers()[header::LOCATION],
            format!("/api/patients/{}", patient.id)
        );
        assert_eq!(patient.email, "ada@example.com");
        let outbox = fake.store.outbox.borrow();
        let kinds: Vec<&str> = outbox.iter().map(|e| e.delivery.kind()).collect();
        assert_eq!(kinds, ["event", "billing-open"]);
        match &outbox[0].delivery {
            Delivery::Event(e) => {
                assert_eq!(e.event_type, "PATIENT_CREATED");
                assert_eq!(e.patient_id, patient.id);
                assert_ne!(e.event_id, outbox[0].id);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (
                fake.cache.generation.get(),
                fake.cache.lists_generation.get()
            ),
            (0, 1),
            "the create made cached pages stale, and no other answer"
        );
    }

    #[test]
    fn duplicate_emails_are_409_in_any_case_and_change_nothing() {
        let fake = Fake::default();
        created(&fake, ada());
        let mut again = ada();
        again["email"] = json!("ADA@example.COM");
        let (status, body) = call(&fake, Method::POST, "/patients", Some(again));
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(fake.store.patients.borrow().len(), 1);
        assert_eq!(fake.store.outbox.borrow().len(), 2);
    }

    #[test]
    fn invalid_bodies_are_400_with_every_field_and_change_nothing() {
        let fake = Fake::default();
        let (status, body) = call(&fake, Method::POST, "/patients", Some(json!({"name": ""})));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let fields: Vec<&String> = body["errors"].as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            ["address", "dateOfBirth", "email", "name", "registeredDate"]
        );
        let not_json = Request::builder()
            .method(Method::POST)
            .uri("/patients")
            .header("content-type", "text/plain")
            .body(b"name=x".to_vec())
            .unwrap();
        assert_eq!(
            handle(&fake, &not_json).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(fake.store.patients.borrow().is_empty());
        assert!(fake.store.outbox.borrow().is_empty());
    }

    #[test]
    fn get_is_cached_and_a_read_after_a_write_is_fresh() {
        let fake = Fake::default();
        let id = created(&fake, ada());
        let path = format!("/patients/{id}");
        assert_eq!(call(&fake, Method::GET, &path, None).0, StatusCode::OK);
        assert_eq!(call(&fake, Method::GET, &path, None).0, StatusCode::OK);
        assert_eq!(fake.store.finds.get(), 1, "second read came from the cache");

        let mut renamed = ada();
        renamed["name"] = json!("Augusta Ada King");
        renamed.as_object_mut().unwrap().remove("registeredDate");
        let (status, body) = call(&fake, Method::PUT, &path, Some(renamed));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["registeredDate"], "2026-11-01", "kept when left out");
        let (_, read) = call(&fake, Method::GET, &path, None);
        assert_eq!(read["name"], "Augusta Ada King");
        let kinds: Vec<&str> = fake
            .store
            .outbox
            .borrow()
            .iter()
            .map(|e| e.delivery.kind())
            .collect();
        assert_eq!(kinds, ["event", "billing-open", "event"]);
    }

    #[test]
    fn a_create_leaves_a_cached_patient_cached_and_makes_pages_fresh() {
        let fake = Fake::default();
        let id = created(&fake, ada());
        let path = format!("/patients/{id}");
        call(&fake, Method::GET, &path, None);
        let (_, page) = call(&fake, Method::GET, "/patients", None);
        assert_eq!(page["totalElements"], 1);
        let mut grace = ada();
        grace["name"] = json!("Grace Hopper");
        grace["email"] = json!("grace@example.com");
        created(&fake, grace);
        call(&fake, Method::GET, &path, None);
        assert_eq!(
            fake.store.finds.get(),
            1,
            "the create left Ada's entry current"
        );
        let (_, page) = call(&fake, Method::GET, "/patients", None);
        assert_eq!(
            page["totalElements"], 2,
            "the page read after the create has Grace"
        );
    }

    #[test]
    fn an_entry_stamped_with_an_older_generation_is_not_served() {
        let fake = Fake::default();
        let id = created(&fake, ada());
        let path = format!("/patients/{id}");
        call(&fake, Method::GET, &path, None);
        assert_eq!(fake.store.finds.get(), 1);
        // Another host's write moved the generation on: the entry is stale, whatever it holds.
        fake.cache.generation.set(fake.cache.generation.get() + 1);
        call(&fake, Method::GET, &path, None);
        assert_eq!(fake.store.finds.get(), 2, "the stale entry was not served");
        call(&fake, Method::GET, &path, None);
        assert_eq!(fake.store.finds.get(), 2, "the entry stored anew was");
    }

    #[test]
    fn ids_unknown_and_malformed() {
        let fake = Fake::default();
        let (status, _) = call(&fake, Method::GET, "/patients/not-a-uuid", None);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let unknown = "/patients/123e4567-e89b-12d3-a456-426614174999";
        assert_eq!(
            call(&fake, Method::GET, unknown, None).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&fake, Method::PUT, unknown, Some(ada())).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&fake, Method::DELETE, unknown, None).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&fake, Method::PATCH, unknown, None).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&fake, Method::DELETE, "/patients", None).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&fake, Method::GET, "/patients/a/b", None).0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn update_to_another_patients_email_is_409() {
        let fake = Fake::default();
        created(&fake, ada());
        let mut grace = ada();
        grace["email"] = json!("grace@example.com");
        let id = created(&fake, grace.clone());
        grace["email"] = json!("ada@example.com");
        let (status, _) = call(&fake, Method::PUT, &format!("/patients/{id}"), Some(grace));
        assert_eq!(status, StatusCode::CONFLICT);
    }

    #[test]
    fn delete_is_204_then_404_and_closes_the_account() {
        let fake = Fake::default();
        let id = created(&fake, ada());
        let path = format!("/patients/{id}");
        call(&fake, Method::GET, &path, None);
        let answer = handle(&fake, &request(Method::DELETE, &path, None));
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert!(answer.body().is_empty());
        assert_eq!(
            call(&fake, Method::GET, &path, None).0,
            StatusCode::NOT_FOUND,
            "not from cache"
        );
        assert!(fake
            .store
            .outbox
            .borrow()
            .iter()
            .any(|e| e.delivery.kind() == "billing-close"));
    }

    #[test]
    fn lists_page_and_search_and_reject_bad_parameters() {
        let fake = Fake::default();
        for (i, name) in ["Cleo", "abe", "Bea", "Abel"].iter().enumerate() {
            let mut body = ada();
            body["name"] = json!(name);
            body["email"] = json!(format!("p{i}@example.com"));
            created(&fake, body);
        }
        let (status, page) = call(&fake, Method::GET, "/patients?page=2&size=3", None);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["totalElements"], 4);
        assert_eq!(page["totalPages"], 2);
        assert_eq!(page["page"], 2);
        assert_eq!(page["patients"][0]["name"], "Cleo");
        let (_, found) = call(&fake, Method::GET, "/patients?searchValue=AB", None);
        let names: Vec<&str> = found["patients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["abe", "Abel"]);
        let (status, problem) = call(&fake, Method::GET, "/patients?size=500&sortField=x", None);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            problem["errors"]["size"].is_string() && problem["errors"]["sortField"].is_string()
        );
    }

    #[test]
    fn a_down_database_is_503_and_a_down_cache_is_not_an_error() {
        let mut fake = Fake::default();
        let id = created(&fake, ada());
        fake.cache.down = true;
        assert_eq!(
            call(&fake, Method::GET, &format!("/patients/{id}"), None).0,
            StatusCode::OK
        );
        fake.store.down = true;
        assert_eq!(
            call(&fake, Method::GET, &format!("/patients/{id}"), None).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            call(&fake, Method::POST, "/patients", Some(ada())).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn the_openapi_document_names_every_route() {
        let (status, doc) = call(&Fake::default(), Method::GET, "/openapi.json", None);
        assert_eq!(status, StatusCode::OK);
        for (path, method) in [
            ("/api/patients", "get"),
            ("/api/patients", "post"),
            ("/api/patients/{id}", "get"),
            ("/api/patients/{id}", "put"),
            ("/api/patients/{id}", "delete"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
    }

    #[test]
    fn the_request_schemas_state_the_rules_the_handler_applies() {
        let (_, doc) = call(&Fake::default(), Method::GET, "/openapi.json", None);
        for schema in ["PatientBody", "PatientUpdateBody"] {
            let properties = &doc["components"]["schemas"][schema]["properties"];
            for field in ["name", "address"] {
                assert_eq!(
                    properties[field]["pattern"],
                    kit::fields::NOT_BLANK_PATTERN,
                    "{schema}.{field}"
                );
            }
            assert_eq!(properties["email"]["pattern"], kit::fields::EMAIL_PATTERN);
            assert_eq!(
                properties["name"]["maxLength"],
                crate::patient::MAX_NAME_CHARS
            );
            assert_eq!(
                properties["address"]["maxLength"],
                crate::patient::MAX_ADDRESS_CHARS
            );
            assert_eq!(properties["dateOfBirth"]["format"], "date");
        }
        let create = &doc["components"]["schemas"]["PatientBody"]["required"];
        let update = &doc["components"]["schemas"]["PatientUpdateBody"]["required"];
        assert_eq!(create.as_array().unwrap().len(), 5, "{create}");
        assert!(!update
            .as_array()
            .unwrap()
            .contains(&"registeredDate".into()));
        let parameters = doc["paths"]["/api/patients"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let page = parameters.iter().find(|p| p["name"] == "page").unwrap();
        assert_eq!(page["schema"]["maximum"], crate::listing::MAX_PAGE);
    }
}
