//! Appointments' answers (SPEC.md "Appointments"): status codes, bodies and problem+json errors.
//! The database is behind `Store`, so this is tested natively; overlaps and stale versions are
//! decided by the database itself (an exclusion constraint, a conditional update), so two
//! concurrent writers cannot both win.
use http::{Request, Response, StatusCode};
use kit::audit::{self, Context, Entry};
use kit::collection::{Collection, Route};
use kit::fields::FieldErrors;
use kit::openapi::BearerAuth;
use kit::request::{json_body, query_pairs};
use kit::{response, Problem};
use utoipa::OpenApi;

use crate::appointment::{
    Appointment, AppointmentBody, AppointmentInput, AppointmentUpdateBody, Instant, Purpose,
};

/// The longest `from`–`to` window one list request may ask for.
pub const MAX_WINDOW_DAYS: i64 = 366;

/// Why a write was refused by the database.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Another scheduled appointment of the same patient overlaps (the exclusion constraint).
    Overlap,
    Unavailable(String),
}

/// What became of an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Updated {
    Done(Appointment),
    NotFound,
    /// The stored version is not the one sent.
    Stale {
        current: i64,
    },
    Cancelled,
    /// The body names another patient than the stored one.
    OtherPatient,
}

/// A patient as patients itself answered for them just now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct KnownPatient {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// Appointments' database, with its local copy of patients.
pub trait Store {
    /// Appointments starting in `[from, to)`, ordered by start.
    fn list(&self, from: Instant, to: Instant) -> Result<Vec<Appointment>, String>;
    fn find(&self, id: &str) -> Result<Option<Appointment>, String>;
    /// Books `input` for `patient` (patients' own answer), bringing the local copy up to date
    /// with it in the same statement. `None` when the copy has seen the patient deleted
    /// (deletion is final).
    /// Each write also stores `audit`, the request's audit record, when it is audited and the
    /// write happened (the answer is a success).
    fn insert(
        &self,
        id: &str,
        input: &AppointmentInput,
        patient: &KnownPatient,
        audit: Option<&Entry>,
    ) -> Result<Option<Appointment>, WriteError>;
    /// Applies `input` when `input.version` is the stored version.
    fn update(
        &self,
        id: &str,
        input: &AppointmentInput,
        audit: Option<&Entry>,
    ) -> Result<Updated, WriteError>;
    /// Marks it `CANCELLED` (again: harmless). False when there is no such appointment.
    fn cancel(&self, id: &str, audit: Option<&Entry>) -> Result<bool, String>;
}

pub trait Platform {
    fn store(&self) -> &dyn Store;
    /// Asks patients for patient `id`, as the client of `request` (read-through: what patients
    /// answers now, not what its events have told the copy so far). `None`: no such patient.
    fn patient(&self, id: &str, request: &Request<Vec<u8>>)
        -> Result<Option<KnownPatient>, String>;
    fn new_id(&self) -> String;
    fn now_secs(&self) -> u64;
}

const APPOINTMENTS: Collection = Collection {
    plural: "appointments",
    one: "an appointment",
};

pub fn handle(platform: &dyn Platform, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let result = APPOINTMENTS
        .route(request.method(), request.uri().path())
        .and_then(|route| match route {
            Route::OpenApi => Ok(response::json(StatusCode::OK, &Api::openapi())),
            Route::List => list(platform, request.uri().query()),
            Route::Create => create(platform, request),
            Route::Get(id) => get(platform, &id),
            Route::Update(id) => update(platform, &id, request),
            Route::Delete(id) => cancel(platform, &id, request),
        });
    result.unwrap_or_else(|p| response::problem(&p))
}

fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("appointment store unavailable, retry later: {e}"),
    )
}

fn write_error(e: WriteError) -> Problem {
    match e {
        WriteError::Overlap => Problem::new(
            StatusCode::CONFLICT,
            "the patient has another scheduled appointment at that time",
        ),
        WriteError::Unavailable(e) => unavailable(e),
    }
}

fn no_appointment(id: &str) -> Problem {
    Problem::not_found(format!("no appointment with id {id}"))
}

fn now(platform: &dyn Platform) -> Instant {
    Instant::from_unix_secs(platform.now_secs())
}

/// `from` and `to`: both required, `to` after `from`, at most `MAX_WINDOW_DAYS` apart.
fn window(query: Option<&str>) -> Result<(Instant, Instant), FieldErrors> {
    let pairs = query_pairs(query);
    let mut errors = FieldErrors::new();
    let mut read = |name: &str| -> Option<Instant> {
        let values: Vec<&String> = pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        let parsed = match values.as_slice() {
            [] => Err("is required (RFC 3339)".to_string()),
            [one] => Instant::parse(one),
            _ => Err("must be given once".to_string()),
        };
        parsed.map_err(|m| errors.insert(name.into(), m)).ok()
    };
    let (from, to) = (read("from"), read("to"));
    for (key, _) in &pairs {
        if key != "from" && key != "to" {
            errors.insert(
                key.clone(),
                "is not a parameter of this route (from, to)".into(),
            );
        }
    }
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            errors.insert("to".into(), "must be after from".into());
        } else if to.since(from) > time::Duration::days(MAX_WINDOW_DAYS) {
            errors.insert(
                "to".into(),
                format!("must be at most {MAX_WINDOW_DAYS} days after from"),
            );
        }
    }
    match (from, to) {
        (Some(from), Some(to)) if errors.is_empty() => Ok((from, to)),
        _ => Err(errors),
    }
}

#[utoipa::path(
    get,
    path = "/api/appointments",
    operation_id = "listAppointments",
    security(("bearer" = [])),
    params(
        ("from" = String, Query, description = "Start of the window (RFC 3339), inclusive", format = DateTime),
        ("to" = String, Query, description = "End of the window (RFC 3339), exclusive; after from, at most 366 days after it", format = DateTime)
    ),
    responses(
        (status = 200, description = "Appointments starting in the window, ordered by start", body = [Appointment]),
        (status = 400, description = "A parameter is missing or invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn list(platform: &dyn Platform, query: Option<&str>) -> Result<Response<Vec<u8>>, Problem> {
    let (from, to) = window(query).map_err(Problem::validation)?;
    let appointments = platform.store().list(from, to).map_err(unavailable)?;
    Ok(response::json(StatusCode::OK, &appointments))
}

#[utoipa::path(
    get,
    path = "/api/appointments/{id}",
    operation_id = "getAppointment",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Appointment id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The appointment", body = Appointment),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such appointment", body = Problem, content_type = "application/problem+json")
    )
)]
fn get(platform: &dyn Platform, id: &str) -> Result<Response<Vec<u8>>, Problem> {
    match platform.store().find(id).map_err(unavailable)? {
        Some(appointment) => {
            let mut answer = response::json(StatusCode::OK, &appointment);
            audit::name_patient(&mut answer, &appointment.patient_id);
            Ok(answer)
        }
        None => Err(no_appointment(id)),
    }
}

#[utoipa::path(
    post,
    path = "/api/appointments",
    operation_id = "createAppointment",
    security(("bearer" = [])),
    request_body = AppointmentBody,
    responses(
        (status = 201, description = "Scheduled; `Location` names it", body = Appointment),
        (status = 400, description = "Invalid fields, each named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient (patients is asked at booking, so a patient just registered is known and one just deleted is not)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Overlaps another scheduled appointment of the patient", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or patients unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn create(
    platform: &dyn Platform,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let body: AppointmentBody = json_body(request)?;
    let input = AppointmentInput::parse(&body, Purpose::Create, now(platform))
        .map_err(Problem::validation)?;
    let patient_id = input.patient_id.clone().unwrap_or_default();
    let no_patient = || Problem::not_found(format!("no patient with id {patient_id}"));
    // Patients is asked, not the local copy alone: the copy learns from events, which arrive
    // some hundreds of milliseconds after a write, so a patient registered (or deleted) just
    // before would be refused (or booked).
    let patient = platform
        .patient(&patient_id, request)
        .map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("patients could not confirm the patient, retry later: {e}"),
            )
        })?
        .ok_or_else(no_patient)?;
    let id = platform.new_id();
    let record = Context::of(request).map(|c| c.entry(201, Some(&id), Some(&patient.id)));
    let created = platform
        .store()
        .insert(&id, &input, &patient, record.as_ref())
        .map_err(write_error)?
        .ok_or_else(no_patient)?;
    Ok(audit::recorded(
        APPOINTMENTS.created(&created.id, &created),
        record.as_ref(),
    ))
}

#[utoipa::path(
    put,
    path = "/api/appointments/{id}",
    operation_id = "updateAppointment",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Appointment id (UUID)", format = Uuid)),
    request_body = AppointmentUpdateBody,
    responses(
        (status = 200, description = "Changed; `version` is one more", body = Appointment),
        (status = 400, description = "Invalid fields or id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such appointment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version, cancelled, or overlapping", body = Problem, content_type = "application/problem+json")
    )
)]
fn update(
    platform: &dyn Platform,
    id: &str,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let body: AppointmentBody = json_body(request)?;
    let input = AppointmentInput::parse(&body, Purpose::Update, now(platform))
        .map_err(Problem::validation)?;
    let sent = input.version.unwrap_or_default();
    let record = Context::of(request).map(|c| c.entry(200, Some(id), None));
    match platform
        .store()
        .update(id, &input, record.as_ref())
        .map_err(write_error)?
    {
        Updated::Done(appointment) => Ok(audit::recorded(
            response::json(StatusCode::OK, &appointment),
            record.as_ref(),
        )),
        Updated::NotFound => Err(no_appointment(id)),
        Updated::Stale { current } => Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "version {sent} is stale: the appointment is at version {current}; read it again"
            ),
        )),
        Updated::Cancelled => Err(Problem::new(
            StatusCode::CONFLICT,
            "the appointment is cancelled",
        )),
        Updated::OtherPatient => {
            let errors = FieldErrors::from([(
                "patientId".to_string(),
                "cannot change; book a new appointment".to_string(),
            )]);
            Err(Problem::validation(errors))
        }
    }
}

#[utoipa::path(
    delete,
    path = "/api/appointments/{id}",
    operation_id = "cancelAppointment",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Appointment id (UUID)", format = Uuid)),
    responses(
        (status = 204, description = "Cancelled (appointments are kept, marked CANCELLED)"),
        (status = 404, description = "No such appointment", body = Problem, content_type = "application/problem+json")
    )
)]
fn cancel(
    platform: &dyn Platform,
    id: &str,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let record = Context::of(request).map(|c| c.entry(204, Some(id), None));
    if platform
        .store()
        .cancel(id, record.as_ref())
        .map_err(unavailable)?
    {
        Ok(audit::recorded(response::no_content(), record.as_ref()))
    } else {
        Err(no_appointment(id))
    }
}

/// Appointments' OpenAPI document, generated from the handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(title = "appointments", description = "Appointment scheduling", version = env!("CARGO_PKG_VERSION")),
    paths(list, get, create, update, cancel),
    components(schemas(Appointment, AppointmentBody, AppointmentUpdateBody, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, Method};
    use std::cell::RefCell;

    use serde_json::{json, Value};

    const PATIENT: &str = "123e4567-e89b-12d3-a456-426614174000";
    const NOW: u64 = 1_893_456_000; // 2030-01-01T00:00:00Z

    /// Appointments in memory, with the same rules the database enforces.
    #[derive(Default)]
    struct Memory {
        rows: RefCell<Vec<Appointment>>,
        down: bool,
        /// The local copy has seen the patient's deletion.
        deleted_copy: bool,
    }

    impl Memory {
        fn overlaps(&self, input: &AppointmentInput, patient: &str, except: &str) -> bool {
            let (start, end) = (input.start.to_rfc3339(), input.end.to_rfc3339());
            self.rows.borrow().iter().any(|a| {
                a.id != except
                    && a.patient_id == patient
                    && a.status == "SCHEDULED"
                    && a.start_time < end
                    && start < a.end_time
            })
        }
    }

    impl Store for Memory {
        fn list(&self, from: Instant, to: Instant) -> Result<Vec<Appointment>, String> {
            let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
            let mut rows: Vec<Appointment> = self
                .rows
                .borrow()
                .iter()
                .filter(|a| a.start_time >= from && a.start_time < to)
                .cloned()
                .collect();
            rows.sort_by(|a, b| a.start_time.cmp(&b.start_time));
            Ok(rows)
        }
        fn find(&self, id: &str) -> Result<Option<Appointment>, String> {
            if self.down {
                return Err("connection refused".into());
            }
            Ok(self.rows.borrow().iter().find(|a| a.id == id).cloned())
        }
        fn insert(
            &self,
            id: &str,
            input: &AppointmentInput,
            known: &KnownPatient,
            _: Option<&Entry>,
        ) -> Result<Option<Appointment>, WriteError> {
            let patient = input.patient_id.clone().unwrap();
            assert_eq!(
                known.id, patient,
                "booked for the patient patients confirmed"
            );
            if self.deleted_copy {
                return Ok(None);
            }
            if self.overlaps(input, &patient, id) {
                return Err(WriteError::Overlap);
            }
            let a = Appointment {
                id: id.into(),
                patient_id: patient,
                patient_name: Some(known.name.clone()),
                start_time: input.start.to_rfc3339(),
                end_time: input.end.to_rfc3339(),
                reason: input.reason.clone(),
                status: "SCHEDULED".into(),
                version: 1,
            };
            self.rows.borrow_mut().push(a.clone());
            Ok(Some(a))
        }
        fn update(
            &self,
            id: &str,
            input: &AppointmentInput,
            _: Option<&Entry>,
        ) -> Result<Updated, WriteError> {
            let Some(stored) = self.find(id).unwrap() else {
                return Ok(Updated::NotFound);
            };
            if input
                .patient_id
                .as_ref()
                .is_some_and(|p| *p != stored.patient_id)
            {
                return Ok(Updated::OtherPatient);
            }
            if stored.status == "CANCELLED" {
                return Ok(Updated::Cancelled);
            }
            if Some(stored.version) != input.version {
                return Ok(Updated::Stale {
                    current: stored.version,
                });
            }
            if self.overlaps(input, &stored.patient_id, id) {
                return Err(WriteError::Overlap);
            }
            let mut rows = self.rows.borrow_mut();
            let a = rows.iter_mut().find(|a| a.id == id).unwrap();
            a.start_time = input.start.to_rfc3339();
            a.end_time = input.end.to_rfc3339();
            a.reason = input.reason.clone();
            a.version += 1;
            Ok(Updated::Done(a.clone()))
        }
        fn cancel(&self, id: &str, _: Option<&Entry>) -> Result<bool, String> {
            let mut rows = self.rows.borrow_mut();
            let Some(a) = rows.iter_mut().find(|a| a.id == id) else {
                return Ok(false);
            };
            if a.status == "SCHEDULED" {
                a.status = "CANCELLED".into();
                a.version += 1;
            }
            Ok(true)
        }
    }

    struct Fixed {
        store: Memory,
        ids: RefCell<u32>,
        /// What patients answers: `Err` while it is unreachable.
        patients: Result<Vec<KnownPatient>, String>,
    }

    impl Platform for Fixed {
        fn store(&self) -> &dyn Store {
            &self.store
        }
        fn patient(
            &self,
            id: &str,
            _request: &Request<Vec<u8>>,
        ) -> Result<Option<KnownPatient>, String> {
            let known = self.patients.as_ref().map_err(Clone::clone)?;
            Ok(known.iter().find(|p| p.id == id).cloned())
        }
        fn new_id(&self) -> String {
            *self.ids.borrow_mut() += 1;
            format!("00000000-0000-4000-8000-{:012}", self.ids.borrow())
        }
        fn now_secs(&self) -> u64 {
            NOW
        }
    }

    fn platform() -> Fixed {
        Fixed {
            store: Memory::default(),
            ids: RefCell::new(0),
            patients: Ok(vec![KnownPatient {
                id: PATIENT.into(),
                name: "John Doe".into(),
                email: "john.doe@example.com".into(),
            }]),
        }
    }

    fn call(p: &Fixed, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .unwrap();
        let response = handle(p, &request);
        let value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response.status(), value)
    }

    fn booking(start: &str, end: &str) -> Value {
        json!({ "patientId": PATIENT, "startTime": start, "endTime": end, "reason": "Check-up" })
    }

    #[test]
    fn create_get_list_in_order_and_cancel() {
        let p = platform();
        let (status, later) = call(
            &p,
            Method::POST,
            "/appointments",
            Some(booking("2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z")),
        );
        assert_eq!(status, StatusCode::CREATED, "{later}");
        assert_eq!(later["version"], 1);
        // Back to back is not an overlap.
        let (status, earlier) = call(
            &p,
            Method::POST,
            "/appointments",
            Some(booking("2030-01-02T09:00:00Z", "2030-01-02T10:00:00Z")),
        );
        assert_eq!(status, StatusCode::CREATED, "{earlier}");
        let (status, list) = call(
            &p,
            Method::GET,
            "/appointments?from=2030-01-02T00:00:00Z&to=2030-01-03T00:00:00Z",
            None,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list[0]["id"], earlier["id"]);
        assert_eq!(list[1]["id"], later["id"]);
        let id = later["id"].as_str().unwrap();
        assert_eq!(
            call(&p, Method::GET, &format!("/appointments/{id}"), None).0,
            StatusCode::OK
        );
        assert_eq!(
            call(&p, Method::DELETE, &format!("/appointments/{id}"), None).0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&p, Method::GET, &format!("/appointments/{id}"), None).1["status"],
            "CANCELLED"
        );
        // Cancelled, its slot is free again.
        assert_eq!(
            call(
                &p,
                Method::POST,
                "/appointments",
                Some(booking("2030-01-02T10:30:00Z", "2030-01-02T11:00:00Z"))
            )
            .0,
            StatusCode::CREATED
        );
    }

    #[test]
    fn bookings_ask_patients_and_a_deleted_copy_stays_deleted() {
        let slot = || booking("2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z");
        // Patients unreachable: 503, and nothing booked.
        let mut p = platform();
        p.patients = Err("no responders".into());
        let (status, problem) = call(&p, Method::POST, "/appointments", Some(slot()));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert!(p.store.rows.borrow().is_empty());
        // Patients no longer knows them (deleted a moment ago), though the copy may: 404.
        p.patients = Ok(Vec::new());
        assert_eq!(
            call(&p, Method::POST, "/appointments", Some(slot())).0,
            StatusCode::NOT_FOUND
        );
        // The copy saw the deletion; a stale "exists" from patients cannot revive them.
        let mut p = platform();
        p.store.deleted_copy = true;
        assert_eq!(
            call(&p, Method::POST, "/appointments", Some(slot())).0,
            StatusCode::NOT_FOUND
        );
        // Known to patients: booked, under the name patients gave.
        let p = platform();
        let (status, booked) = call(&p, Method::POST, "/appointments", Some(slot()));
        assert_eq!(
            (status, booked["patientName"].as_str()),
            (StatusCode::CREATED, Some("John Doe"))
        );
    }

    #[test]
    fn refusals_have_their_status() {
        let p = platform();
        let (_, first) = call(
            &p,
            Method::POST,
            "/appointments",
            Some(booking("2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z")),
        );
        let overlap = call(
            &p,
            Method::POST,
            "/appointments",
            Some(booking("2030-01-02T10:59:59Z", "2030-01-02T12:00:00Z")),
        );
        assert_eq!(overlap.0, StatusCode::CONFLICT);
        let mut stranger = booking("2030-01-03T10:00:00Z", "2030-01-03T11:00:00Z");
        stranger["patientId"] = json!("123e4567-e89b-12d3-a456-426614174999");
        assert_eq!(
            call(&p, Method::POST, "/appointments", Some(stranger)).0,
            StatusCode::NOT_FOUND
        );
        let (status, problem) = call(
            &p,
            Method::POST,
            "/appointments",
            Some(booking("2029-01-02T10:00:00Z", "2029-01-02T11:00:00Z")),
        );
        assert_eq!(
            (status, problem["errors"]["startTime"].as_str()),
            (StatusCode::BAD_REQUEST, Some("must be in the future"))
        );

        let id = first["id"].as_str().unwrap();
        let mut change = booking("2030-01-02T13:00:00Z", "2030-01-02T14:00:00Z");
        change["version"] = json!(1);
        let (status, changed) = call(
            &p,
            Method::PUT,
            &format!("/appointments/{id}"),
            Some(change.clone()),
        );
        assert_eq!(
            (status, changed["version"].as_i64()),
            (StatusCode::OK, Some(2))
        );
        assert_eq!(
            call(
                &p,
                Method::PUT,
                &format!("/appointments/{id}"),
                Some(change.clone())
            )
            .0,
            StatusCode::CONFLICT
        );
        change["version"] = json!(2);
        change["patientId"] = json!("123e4567-e89b-12d3-a456-426614174999");
        assert_eq!(
            call(
                &p,
                Method::PUT,
                &format!("/appointments/{id}"),
                Some(change)
            )
            .0,
            StatusCode::BAD_REQUEST
        );
        let missing = "/appointments/123e4567-e89b-12d3-a456-426614174999";
        assert_eq!(
            call(&p, Method::GET, missing, None).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&p, Method::DELETE, missing, None).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&p, Method::GET, "/appointments/7", None).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(&p, Method::PATCH, "/appointments", None).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let down = Fixed {
            store: Memory {
                down: true,
                ..Memory::default()
            },
            ..platform()
        };
        assert_eq!(
            call(&down, Method::GET, &format!("/appointments/{id}"), None).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn list_windows_are_checked() {
        let p = platform();
        for (query, field) in [
            ("", "from"),
            ("from=2030-01-01T00:00:00Z", "to"),
            ("from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "to"),
            ("from=2030-01-01T00:00:00Z&to=2031-01-03T00:00:00Z", "to"),
            ("from=yesterday&to=2030-01-01T00:00:00Z", "from"),
            (
                "from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z&page=2",
                "page",
            ),
        ] {
            let (status, problem) = call(&p, Method::GET, &format!("/appointments?{query}"), None);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(problem["errors"][field].is_string(), "{query}: {problem}");
        }
    }
}
