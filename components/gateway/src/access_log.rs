//! One structured record per request, written through wasi:logging with context `request`.
//! The host logs it as a JSON line (with the request id, for following a request through the
//! logs), and the host launcher turns the same records into Prometheus metrics per route
//! (`local/launchers/host/src/metrics.rs`), so logs and metrics cannot disagree.
use serde::Serialize;

use crate::routes;

/// wasi:logging context that marks these records; the launcher's metrics select on it.
pub const CONTEXT: &str = "request";

#[derive(Serialize, Debug, PartialEq)]
pub struct Record<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The route, not the path: bounded, so it can label a metric (see `route_of`).
    pub route: String,
    pub status: u16,
    pub duration_ms: f64,
}

impl Record<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The gateway's own paths as they are; a service path as its route prefix, with `/*` when
/// there is more after it (`/api/patients/…` is `/api/patients/*`); anything else `unmatched`.
/// Ids and unknown paths never become labels, so the number of routes stays that of the table.
pub fn route_of(path: &str) -> String {
    if matches!(path, "/health" | "/ready") {
        return path.to_string();
    }
    if path == "/api-docs" || path.starts_with("/api-docs/") {
        return "/api-docs".to_string();
    }
    match routes::resolve(path).map(|(route, _)| route) {
        Some(route) if path.len() > route.prefix.len() + 1 => format!("{}/*", route.prefix),
        Some(route) => route.prefix.to_string(),
        None => "unmatched".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_labels() {
        assert_eq!(route_of("/health"), "/health");
        assert_eq!(route_of("/api-docs/patients"), "/api-docs");
        assert_eq!(route_of("/api/patients"), "/api/patients");
        assert_eq!(route_of("/api/patients/"), "/api/patients");
        assert_eq!(
            route_of("/api/patients/1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            "/api/patients/*"
        );
        assert_eq!(route_of("/auth/login"), "/auth/*");
        assert_eq!(route_of("/api/patientsx"), "unmatched");
        assert_eq!(route_of("/etc/passwd"), "unmatched");
    }

    #[test]
    fn record_is_one_json_object() {
        let record = Record {
            request_id: "r-1",
            method: "GET",
            route: route_of("/api/patients/x"),
            status: 404,
            duration_ms: 1.5,
        };
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(json["request_id"], "r-1");
        assert_eq!(json["route"], "/api/patients/*");
        assert_eq!(json["status"], 404);
        assert_eq!(json["duration_ms"], 1.5);
    }
}
