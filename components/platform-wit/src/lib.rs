//! `pm:platform/types` generated once for every component (each component's own bindings map
//! the package's types here with `with:`), plus the conversions between those records and the
//! `http` crate's types that the components' plain-Rust handlers use.
#[cfg(target_arch = "wasm32")]
mod generated {
    wit_bindgen::generate!({ world: "platform-types", path: "../../wit", generate_all });
}

#[cfg(target_arch = "wasm32")]
pub use generated::pm::platform::types;
/// `wasmcloud:postgres/types`, shared the same way, so row helpers are written once.
#[cfg(target_arch = "wasm32")]
pub use generated::wasmcloud::postgres::types as postgres_types;

/// `wasmcloud:secrets`: what the host fetched from the lattice's secrets backend for this
/// component, by the names the manifest gives them.
#[cfg(target_arch = "wasm32")]
pub mod secrets {
    mod generated {
        wit_bindgen::generate!({ world: "platform-secrets", path: "../../wit", generate_all });
    }
    use generated::wasmcloud::secrets::{reveal, store};

    /// The secret `name` as text; None when this component was given no such secret (or its
    /// bytes are not text).
    pub fn text(name: &str) -> Option<String> {
        let secret = store::get(name).ok()?;
        match reveal::reveal(&secret) {
            store::SecretValue::String(value) => Some(value),
            store::SecretValue::Bytes(bytes) => String::from_utf8(bytes).ok(),
        }
    }
}

/// The `event-fed-service` world (appointments and analytics share it), generated once: each
/// component implements its `Guest` traits and exports itself with
/// `platform_wit::event_fed::export_event_fed_service!(Component);`.
#[cfg(target_arch = "wasm32")]
pub mod event_fed {
    wit_bindgen::generate!({
        world: "event-fed-service",
        path: "../../wit",
        with: {
            "wasmcloud:messaging/types@0.2.0": wasmcloud_component::wasmcloud::messaging::types,
            "pm:platform/types@0.1.0": crate::types,
            "wasmcloud:postgres/types@0.1.1-draft": crate::postgres_types,
        },
        pub_export_macro: true,
        export_macro_name: "export_event_fed_service",
        default_bindings_module: "platform_wit::event_fed",
        generate_all,
    });
}

/// Reading rows and errors of `wasmcloud:postgres` the same way in every component.
#[cfg(target_arch = "wasm32")]
pub mod sql {
    use super::postgres_types::{PgValue, QueryError, ResultRow};

    /// A text column (components cast what they read to `::text` in SQL, so one reader does).
    pub fn text(row: &ResultRow, column: &str) -> Option<String> {
        row.iter()
            .find(|e| e.column_name == column)
            .and_then(|e| match &e.value {
                PgValue::Text(t) => Some(t.clone()),
                _ => None,
            })
    }

    /// A text parameter (components cast it in SQL: `$1::uuid`, `$2::date`).
    pub fn param(value: &str) -> PgValue {
        PgValue::Text(value.to_string())
    }

    /// An error as the text a component passes on (`map_err(describe)`).
    pub fn describe(e: QueryError) -> String {
        message(&e).to_string()
    }

    pub fn message(e: &QueryError) -> &str {
        match e {
            QueryError::InvalidParams(m)
            | QueryError::InvalidQuery(m)
            | QueryError::Unexpected(m) => m,
        }
    }

    /// The SQLSTATE the Postgres provider puts first in its messages (`23505: ...`).
    pub fn sqlstate(e: &QueryError) -> Option<&str> {
        message(e).split(':').next().filter(|c| c.len() == 5)
    }

    pub fn is_unique_violation(e: &QueryError) -> bool {
        sqlstate(e) == Some("23505")
    }

    /// Whether the database answers a trivial statement through `query` (a component's
    /// `wasmcloud:postgres/query` import), for `GET /ready`.
    pub fn answers(
        query: impl Fn(&str, &[PgValue]) -> Result<Vec<ResultRow>, QueryError>,
    ) -> Result<(), String> {
        query("SELECT 1", &[]).map(|_| ()).map_err(describe)
    }

    pub fn null_or_text(value: Option<&str>) -> PgValue {
        value.map_or(PgValue::Null, |v| PgValue::Text(v.to_string()))
    }

    /// `, audited_<changed> AS (...)`: a CTE to follow a statement's other CTEs, writing the request's
    /// audit record in the statement (so in the transaction) of the change it records, only
    /// when the CTE `changed` has rows (the change happened). The record's patient, when the
    /// entry names none, is `patient_column` of `changed`'s row. Nothing when the request is not
    /// audited (`entry` is `None`). Params are appended to `params`, numbered on from theirs.
    pub fn and_audit(
        entry: Option<&kit::audit::Entry>,
        changed: &str,
        patient_column: &str,
        params: &mut Vec<PgValue>,
    ) -> String {
        let Some(entry) = entry else {
            return String::new();
        };
        let [id, actor, role, action, kind, resource, patient, outcome, request, client] =
            audit_values(entry, params);
        format!(
            ", audited_{changed} AS (INSERT INTO audit_trail.records ({AUDIT_COLUMNS}) \
             SELECT {id}, {actor}, {role}, {action}, {kind}, {resource}, \
                    COALESCE({patient}, (SELECT {patient_column}::uuid FROM {changed} LIMIT 1)), \
                    {outcome}, {request}, {client} \
             WHERE EXISTS (SELECT 1 FROM {changed}) ON CONFLICT DO NOTHING)"
        )
    }

    /// The statement that appends `entry` on its own (the audit service, for the gateway).
    /// A record the request already has is kept: the id is unique, and `ON CONFLICT` without a
    /// target needs no SELECT, which writers do not have.
    pub fn audit_append(entry: &kit::audit::Entry) -> (String, Vec<PgValue>) {
        let mut params = Vec::new();
        let values = audit_values(entry, &mut params).join(", ");
        (
            format!(
                "INSERT INTO audit_trail.records ({AUDIT_COLUMNS}) VALUES ({values}) \
                 ON CONFLICT DO NOTHING"
            ),
            params,
        )
    }

    /// The columns a writer gives (the trail's trigger sets the sequence, time and hashes:
    /// components/audit/trail.sql).
    const AUDIT_COLUMNS: &str = "id, actor, actor_role, action, resource_type, resource_id, \
         patient_id, outcome, request_id, client_address";

    /// `entry`'s values appended to `params`, as typed placeholders in `AUDIT_COLUMNS` order.
    fn audit_values(entry: &kit::audit::Entry, params: &mut Vec<PgValue>) -> [String; 10] {
        let first = params.len() + 1;
        params.extend([
            param(&entry.id),
            null_or_text(entry.actor.as_deref()),
            null_or_text(entry.actor_role.as_deref()),
            param(&entry.action),
            param(&entry.resource_type),
            null_or_text(entry.resource_id.as_deref()),
            null_or_text(entry.patient_id.as_deref()),
            param(&entry.outcome.to_string()),
            param(&entry.request_id),
            param(&entry.client_address),
        ]);
        let casts = [
            "uuid", "text", "text", "text", "text", "text", "uuid", "int2", "text", "text",
        ];
        std::array::from_fn(|i| format!("${}::{}", first + i, casts[i]))
    }
}

/// A fresh random UUID (v4) from the host's random source, as row and event ids.
#[cfg(target_arch = "wasm32")]
pub fn new_id() -> String {
    wasmcloud_component::HostRng::generate_guid().to_string()
}

/// A second build of a domain component, told apart by the `x-pm-build` header on its every
/// answer (`cargo xtask test` swaps it in while the platform serves and watches the answers
/// change); absent from a plain build.
pub const BUILD: Option<&str> = if cfg!(feature = "hot-swap-check") {
    Some("hot-swap-check")
} else {
    None
};
pub const BUILD_HEADER: &str = "x-pm-build";

/// Who made a request and its id, carried in the request extensions of converted requests.
pub use kit::audit::{Principal, RequestId};

#[cfg(target_arch = "wasm32")]
mod convert {
    use super::{types, Principal, RequestId};

    /// A forwarded request as an `http::Request`; principal and request id ride in extensions.
    pub fn into_http(request: types::Request) -> Result<http::Request<Vec<u8>>, String> {
        let uri = match &request.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", request.path),
            _ => request.path.clone(),
        };
        let mut builder = http::Request::builder()
            .method(request.method.as_str())
            .uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let mut converted = builder.body(request.body).map_err(|e| e.to_string())?;
        if let Some(p) = request.principal {
            converted.extensions_mut().insert(Principal {
                subject: p.subject,
                role: p.role,
            });
        }
        converted
            .extensions_mut()
            .insert(RequestId(request.request_id));
        Ok(converted)
    }

    /// Headers as the records carry them; values that are not text are dropped.
    fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect()
    }

    /// A dependency of a component and how to check that it answers, for `GET /ready`.
    pub type Dependency<'a> = (&'a str, &'a dyn Fn() -> Result<(), String>);

    /// A domain component's whole `service.handle`: `GET /ready` is answered here from
    /// `dependencies`; any other request becomes an `http::Request` for `handler`, and its answer
    /// goes back as a record. A request that is not valid HTTP gets a 400 problem without
    /// reaching `handler`.
    pub fn serve(
        request: types::Request,
        dependencies: &[Dependency<'_>],
        handler: impl FnOnce(&http::Request<Vec<u8>>) -> http::Response<Vec<u8>>,
    ) -> types::Response {
        let mut response = match into_http(request) {
            Ok(request)
                if request.method() == http::Method::GET && request.uri().path() == "/ready" =>
            {
                kit::readiness::report(
                    dependencies
                        .iter()
                        .map(|(name, check)| (name.to_string(), kit::readiness::check(check())))
                        .collect(),
                )
            }
            Ok(request) => handler(&request),
            Err(e) => kit::response::problem(&kit::Problem::new(http::StatusCode::BAD_REQUEST, e)),
        };
        if let Some(build) = crate::BUILD {
            response
                .headers_mut()
                .insert(crate::BUILD_HEADER, http::HeaderValue::from_static(build));
        }
        from_http(response)
    }

    pub fn from_http(response: http::Response<Vec<u8>>) -> types::Response {
        let (parts, body) = response.into_parts();
        types::Response {
            status: parts.status.as_u16(),
            headers: header_pairs(&parts.headers),
            body,
        }
    }

    /// The gateway's side: an `http::Request` (already checked) into the record it forwards.
    pub fn to_record(
        request: &http::Request<Vec<u8>>,
        path: &str,
        principal: Option<&Principal>,
        request_id: &str,
    ) -> types::Request {
        types::Request {
            method: request.method().as_str().to_string(),
            path: path.to_string(),
            query: request.uri().query().map(str::to_string),
            headers: header_pairs(request.headers()),
            body: request.body().clone(),
            principal: principal.map(|p| types::Principal {
                subject: p.subject.clone(),
                role: p.role.clone(),
            }),
            request_id: request_id.to_string(),
        }
    }

    /// A `GET path` to another service on behalf of the client of `on_behalf_of`: its principal
    /// and request id travel with it, so the callee sees who asked and logs the same id.
    pub fn get_record(path: &str, on_behalf_of: &http::Request<Vec<u8>>) -> types::Request {
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a GET of a path the component wrote");
        let request_id = on_behalf_of
            .extensions()
            .get::<RequestId>()
            .map_or("", |id| id.0.as_str());
        to_record(
            &request,
            path,
            on_behalf_of.extensions().get::<Principal>(),
            request_id,
        )
    }

    /// An audit record as `pm:platform/audit` carries it.
    pub fn audit_entry(entry: &kit::audit::Entry) -> types::AuditEntry {
        types::AuditEntry {
            id: entry.id.clone(),
            actor: entry.actor.clone(),
            actor_role: entry.actor_role.clone(),
            action: entry.action.clone(),
            resource_type: entry.resource_type.clone(),
            resource_id: entry.resource_id.clone(),
            patient_id: entry.patient_id.clone(),
            outcome: entry.outcome,
            request_id: entry.request_id.clone(),
            client_address: entry.client_address.clone(),
        }
    }

    impl From<types::AuditEntry> for kit::audit::Entry {
        fn from(entry: types::AuditEntry) -> Self {
            kit::audit::Entry {
                id: entry.id,
                actor: entry.actor,
                actor_role: entry.actor_role,
                action: entry.action,
                resource_type: entry.resource_type,
                resource_id: entry.resource_id,
                patient_id: entry.patient_id,
                outcome: entry.outcome,
                request_id: entry.request_id,
                client_address: entry.client_address,
            }
        }
    }

    pub fn response_from_record(response: types::Response) -> http::Response<Vec<u8>> {
        let mut converted = http::Response::new(response.body);
        *converted.status_mut() =
            http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        for (name, value) in response.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name),
                http::HeaderValue::try_from(value),
            ) {
                converted.headers_mut().append(name, value);
            }
        }
        converted
    }
}

#[cfg(target_arch = "wasm32")]
pub use convert::*;
