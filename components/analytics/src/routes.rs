//! `GET /analytics/summary` (SPEC.md "Analytics"), for ADMIN callers only, and the OpenAPI
//! document. The gateway already refuses other roles; the check here keeps the component safe
//! on any other path to it (least privilege does not rest on one gate).
use http::{Method, Request, Response, StatusCode};
use kit::openapi::BearerAuth;
use kit::{response, Problem};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub patients_created: i64,
    pub patients_updated: i64,
    pub patients_deleted: i64,
    /// Created minus deleted.
    pub active_patients: i64,
    /// Registrations per registered date, oldest first.
    pub registrations_by_day: Vec<DayCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub count: i64,
}

/// Analytics' database; `Err` means it could not be reached (503).
pub trait Counts {
    fn summary(&self) -> Result<Summary, String>;
}

pub fn handle(
    counts: &dyn Counts,
    request: &Request<Vec<u8>>,
    caller_role: Option<&str>,
) -> Response<Vec<u8>> {
    let path = request.uri().path().trim_end_matches('/');
    let method = request.method();
    let result = match (method, path) {
        (&Method::GET, "/openapi.json") => Ok(response::json(StatusCode::OK, &Api::openapi())),
        (&Method::GET, "/analytics/summary") => summary(counts, caller_role),
        (_, "/analytics/summary") => Err(Problem::method_not_allowed(
            method.as_str(),
            "/api/analytics/summary",
            "GET",
        )),
        _ => Err(Problem::not_found(format!(
            "no route for {method} /api{path}"
        ))),
    };
    result.unwrap_or_else(|p| response::problem(&p))
}

#[utoipa::path(
    get,
    path = "/api/analytics/summary",
    operation_id = "getAnalyticsSummary",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Counts of the patient events consumed so far", body = Summary),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn summary(counts: &dyn Counts, caller_role: Option<&str>) -> Result<Response<Vec<u8>>, Problem> {
    match caller_role {
        None => {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ))
        }
        Some("ADMIN") => {}
        Some(_) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "analytics is for ADMIN users only",
            ))
        }
    }
    let summary = counts.summary().map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("analytics store unavailable, retry later: {e}"),
        )
    })?;
    Ok(response::json(StatusCode::OK, &summary))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "analytics", description = "Patient event analytics", version = env!("CARGO_PKG_VERSION")),
    paths(summary),
    components(schemas(Summary, DayCount, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<Summary>);

    impl Counts for Fixed {
        fn summary(&self) -> Result<Summary, String> {
            self.0
                .clone()
                .ok_or_else(|| "connection refused".to_string())
        }
    }

    fn call(
        counts: &Fixed,
        method: Method,
        path: &str,
        role: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Vec::new())
            .unwrap();
        let response = handle(counts, &request, role);
        (
            response.status(),
            serde_json::from_slice(response.body()).unwrap_or_default(),
        )
    }

    #[test]
    fn admins_get_the_summary_in_the_spec_shape() {
        let counts = Fixed(Some(Summary {
            patients_created: 3,
            patients_updated: 1,
            patients_deleted: 1,
            active_patients: 2,
            registrations_by_day: vec![DayCount {
                date: "2024-01-10".into(),
                count: 3,
            }],
        }));
        let (status, body) = call(&counts, Method::GET, "/analytics/summary", Some("ADMIN"));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["activePatients"], 2);
        assert_eq!(body["registrationsByDay"][0]["date"], "2024-01-10");
        assert_eq!(
            call(
                &counts,
                Method::GET,
                "/analytics/summary",
                Some("CLINICIAN")
            )
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&counts, Method::GET, "/analytics/summary", None).0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&counts, Method::POST, "/analytics/summary", Some("ADMIN")).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&counts, Method::GET, "/analytics/other", Some("ADMIN")).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(
                &Fixed(None),
                Method::GET,
                "/analytics/summary",
                Some("ADMIN")
            )
            .0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            call(&counts, Method::GET, "/openapi.json", None).0,
            StatusCode::OK
        );
    }
}
