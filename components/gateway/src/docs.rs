//! OpenAPI documents. Each service generates its own from its handlers' types and serves it as
//! `GET /openapi.json`; the gateway serves one per service at `/api-docs/{service}` and all of
//! them merged with its own at `/api-docs`, so the documents cannot drift from the code.
use http::{Method, Request, Response, StatusCode};
use kit::openapi::BearerAuth;
use kit::{response, Problem};
use serde::Serialize;
use utoipa::OpenApi;

use crate::routes::ROUTES;

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

/// The services that have documents: every distinct link of the route table.
pub fn services() -> Vec<&'static str> {
    let mut links: Vec<&'static str> = ROUTES.iter().map(|r| r.link).collect();
    links.dedup();
    links
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
/// are left out rather than failing the whole document).
pub fn merged(service_documents: &[Vec<u8>]) -> Response<Vec<u8>> {
    let mut document = GatewayApi::openapi();
    for bytes in service_documents {
        match serde_json::from_slice::<utoipa::openapi::OpenApi>(bytes) {
            Ok(service) => document.merge(service),
            Err(e) => eprintln!("a service's OpenAPI document is invalid and was skipped: {e}"),
        }
    }
    response::json(StatusCode::OK, &document)
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
    fn services_are_the_route_links() {
        assert_eq!(
            services(),
            ["auth", "patients", "appointments", "billing", "analytics"]
        );
    }
}
