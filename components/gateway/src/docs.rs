//! OpenAPI documents. Each service generates its own from its handlers' types and serves it as
//! `GET /openapi.json`; the gateway serves one per service at `/api-docs/{service}` and all of
//! them merged with its own at `/api-docs`, so the documents cannot drift from the code.
use http::{Method, Request, Response, StatusCode};
use kit::openapi::BearerAuth;
use kit::{response, Problem};
use serde::Serialize;
use utoipa::OpenApi;

use crate::routes::{Access, Route};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    /// Which build answers when several of one version exist (the hot-swap check's second
    /// build says `hot-swap-check`); absent for a plain build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<&'static str>,
}

/// Liveness of the gateway itself.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "The gateway runs", body = Health)))]
#[allow(dead_code)]
fn health() {}

/// What `GET /ready` answers (built by `kit::readiness`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `UP` when every check is, else `DOWN`.
    pub status: String,
    /// The gateway's rate-limit store and each service's own report
    /// (`{"status", "detail"?, "checks"?}`: a service's checks are its dependencies).
    #[schema(value_type = Object)]
    pub checks: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Readiness: the gateway's rate-limit store and each service's dependencies.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "getReadiness",
    responses(
        (status = 200, description = "Every dependency answers", body = Readiness),
        (status = 503, description = "At least one dependency does not; `checks` says which", body = Readiness)
    )
)]
#[allow(dead_code)]
fn ready() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "patient-management", description = "Patient management platform, through its gateway", version = env!("CARGO_PKG_VERSION")),
    paths(health, ready),
    components(schemas(Health, Readiness, Problem)),
    modifiers(&BearerAuth)
)]
struct GatewayApi;

/// The services that have documents: every distinct link of the API's routes.
pub fn services() -> Vec<&'static str> {
    crate::routes::api_links()
}

/// A bodiless `GET path` the gateway makes of a service itself (its document, its readiness).
pub fn internal_get(path: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(Vec::new())
        .expect("a path the gateway wrote")
}

/// The gateway's document merged with the documents services returned (unreachable services
/// are left out rather than failing the whole document), with the answers the gateway and the
/// host give on every route added to each operation (`with_gateway_answers`).
pub fn merged(service_documents: &[Vec<u8>]) -> Response<Vec<u8>> {
    let mut document = GatewayApi::openapi();
    for bytes in service_documents {
        match serde_json::from_slice::<utoipa::openapi::OpenApi>(bytes) {
            Ok(service) => document.merge(service),
            Err(e) => eprintln!("a service's OpenAPI document is invalid and was skipped: {e}"),
        }
    }
    let mut document = serde_json::to_value(&document).expect("a document serializes");
    with_gateway_answers(&mut document);
    response::json(StatusCode::OK, &document)
}

/// Answers that any operation behind the gateway can give besides its service's own, and when.
struct GatewayAnswer {
    status: &'static str,
    description: &'static str,
    retry_after: bool,
    applies: fn(&Route, &Operation) -> bool,
}

/// What the answer rules look at in one operation.
struct Operation {
    has_body: bool,
    has_path_id: bool,
}

const GATEWAY_ANSWERS: [GatewayAnswer; 8] = [
    GatewayAnswer {
        status: "400",
        description: "A path id that is not a UUID, or invalid fields (named in `errors`)",
        retry_after: false,
        applies: |_, op| op.has_path_id || op.has_body,
    },
    GatewayAnswer {
        status: "401",
        description: "No token, or one that is expired, not signed with the platform's key, or not HS256",
        retry_after: false,
        applies: |route, _| route.access != Access::Public,
    },
    GatewayAnswer {
        status: "403",
        description: "The token's role may not use this route",
        retry_after: false,
        applies: |route, _| matches!(route.access, Access::Role(_)),
    },
    GatewayAnswer {
        status: "413",
        description: "The request body is over 1 MiB",
        retry_after: false,
        applies: |_, _| true,
    },
    GatewayAnswer {
        status: "415",
        description: "The body is not application/json",
        retry_after: false,
        applies: |_, op| op.has_body,
    },
    GatewayAnswer {
        status: "429",
        description: "Rate limit exceeded (per user, else per client address); retry after `Retry-After` seconds",
        retry_after: true,
        applies: |_, _| true,
    },
    GatewayAnswer {
        status: "503",
        description: "A dependency or the service is unavailable now; retry later",
        retry_after: true,
        applies: |_, _| true,
    },
    GatewayAnswer {
        status: "404",
        description: "Nothing at this path",
        retry_after: false,
        applies: |_, op| op.has_path_id,
    },
];

/// Adds, to every operation of a gateway route, each gateway answer that applies and that the
/// service's own document does not list already (the service's own wording wins).
fn with_gateway_answers(document: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some((route, _)) = crate::routes::resolve(path) else {
            continue;
        };
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let op = Operation {
                has_body: operation.get("requestBody").is_some(),
                has_path_id: path.contains('{'),
            };
            let Some(responses) = operation
                .as_object_mut()
                .map(|o| o.entry("responses").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for answer in GATEWAY_ANSWERS.iter().filter(|a| (a.applies)(route, &op)) {
                let response = responses.entry(answer.status).or_insert_with(|| {
                    json!({
                        "description": answer.description,
                        "content": { "application/problem+json": {
                            "schema": { "$ref": "#/components/schemas/Problem" }
                        } }
                    })
                });
                // Every 429 and 503 says when to retry, the service's own included
                // (`kit::response::problem`).
                if answer.retry_after {
                    response["headers"]["Retry-After"] = json!({
                        "description": "Seconds to wait before retrying",
                        "required": true,
                        "schema": { "type": "integer", "minimum": 0 }
                    });
                }
            }
        }
    }
}

pub fn unknown_service(name: &str) -> Response<Vec<u8>> {
    response::problem(&Problem::not_found(format!(
        "no service `{name}`; known: {}",
        services().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_document_keeps_every_service_path() {
        let service = serde_json::json!({
            "openapi": "3.1.0",
            "info": { "title": "auth", "version": "1" },
            "paths": { "/auth/login": { "post": { "responses": { "200": { "description": "ok" } } } } }
        });
        let response = merged(&[service.to_string().into_bytes(), b"not json".to_vec()]);
        let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert!(doc["paths"]["/health"].is_object());
        assert!(doc["paths"]["/auth/login"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn every_operation_lists_the_gateways_answers() {
        let service = serde_json::json!({
            "openapi": "3.1.0",
            "info": { "title": "s", "version": "1" },
            "paths": {
                "/api/patients/{id}": {
                    "get": { "responses": { "200": { "description": "ok" },
                                            "404": { "description": "no such patient" } } }
                },
                "/api/analytics/summary": { "get": { "responses": {} } },
                "/auth/login": { "post": {
                    "requestBody": { "content": { "application/json": { "schema": { "type": "object" } } } },
                    "responses": {}
                } }
            }
        });
        let response = merged(&[service.to_string().into_bytes()]);
        let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        let codes = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            codes("/api/patients/{id}", "get"),
            ["200", "400", "401", "404", "413", "429", "503"]
        );
        // The service's own wording is kept.
        assert_eq!(
            doc["paths"]["/api/patients/{id}"]["get"]["responses"]["404"]["description"],
            "no such patient"
        );
        assert_eq!(
            codes("/api/analytics/summary", "get"),
            ["401", "403", "413", "429", "503"]
        );
        assert_eq!(
            codes("/auth/login", "post"),
            ["400", "413", "415", "429", "503"]
        );
        let too_many = &doc["paths"]["/auth/login"]["post"]["responses"]["429"];
        assert!(too_many["headers"]["Retry-After"].is_object());
        assert_eq!(
            too_many["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        // The gateway's own paths are its own.
        assert!(doc["paths"]["/health"]["get"]["responses"]["429"].is_null());
    }

    #[test]
    fn services_are_the_route_links() {
        assert_eq!(
            services(),
            [
                "auth",
                "patients",
                "appointments",
                "billing",
                "analytics",
                "audit"
            ]
        );
    }
}
