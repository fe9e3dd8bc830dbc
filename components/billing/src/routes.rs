//! `GET /billing/accounts/{patientId}` (SPEC.md "Billing") and the OpenAPI document.
use http::{Method, Request, Response, StatusCode};
use kit::fields::parse_uuid;
use kit::openapi::BearerAuth;
use kit::{response, Problem};
use serde::Serialize;
use utoipa::OpenApi;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub account_id: String,
    pub patient_id: String,
    /// `ACTIVE` or `CLOSED`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Billing's database; `Err` means it could not be reached (503).
pub trait Accounts {
    fn get(&self, patient_id: &str) -> Result<Option<Account>, String>;
}

pub fn handle(accounts: &dyn Accounts, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = request.uri().path().trim_end_matches('/');
    let method = request.method();
    let result = match (method, path) {
        (&Method::GET, "/openapi.json") => Ok(response::json(StatusCode::OK, &Api::openapi())),
        (_, path) => match path.strip_prefix("/billing/accounts/") {
            Some(raw) if !raw.contains('/') && method == Method::GET => get(accounts, raw),
            Some(raw) if !raw.contains('/') => Err(Problem::method_not_allowed(
                method.as_str(),
                "/api/billing/accounts/{patientId}",
                "GET",
            )),
            _ => Err(Problem::not_found(format!(
                "no route for {method} /api{path}"
            ))),
        },
    };
    result.unwrap_or_else(|p| response::problem(&p))
}

#[utoipa::path(
    get,
    path = "/api/billing/accounts/{patientId}",
    operation_id = "getBillingAccount",
    security(("bearer" = [])),
    params(("patientId" = String, Path, description = "Patient id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The patient's account", body = Account),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No account for this patient", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn get(accounts: &dyn Accounts, raw: &str) -> Result<Response<Vec<u8>>, Problem> {
    let id = parse_uuid(raw).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("`{raw}` is not a patient id (UUID)"),
        )
    })?;
    match accounts.get(&id) {
        Ok(Some(account)) => Ok(response::json(StatusCode::OK, &account)),
        Ok(None) => Err(Problem::not_found(format!(
            "no billing account for patient {id}"
        ))),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("billing store unavailable, retry later: {e}"),
        )),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "billing", description = "Billing accounts", version = env!("CARGO_PKG_VERSION")),
    paths(get),
    components(schemas(Account, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[cfg(test)]
mod tests {
    use super::*;

    struct One(Option<Account>, bool);

    impl Accounts for One {
        fn get(&self, patient_id: &str) -> Result<Option<Account>, String> {
            if self.1 {
                return Err("connection refused".into());
            }
            Ok(self.0.clone().filter(|a| a.patient_id == patient_id))
        }
    }

    const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

    fn status(accounts: &One, method: Method, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Vec::new())
            .unwrap();
        handle(accounts, &request).status()
    }

    #[test]
    fn accounts_by_patient() {
        let account = Account {
            account_id: "a".into(),
            patient_id: ID.into(),
            status: "ACTIVE".into(),
            created_at: "2026-11-25T10:00:00Z".into(),
        };
        let found = One(Some(account), false);
        assert_eq!(
            status(&found, Method::GET, &format!("/billing/accounts/{ID}")),
            StatusCode::OK
        );
        assert_eq!(
            status(
                &found,
                Method::GET,
                "/billing/accounts/123e4567-e89b-12d3-a456-426614174001"
            ),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&found, Method::GET, "/billing/accounts/42"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&found, Method::DELETE, &format!("/billing/accounts/{ID}")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(&found, Method::GET, "/billing/other"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(
                &One(None, true),
                Method::GET,
                &format!("/billing/accounts/{ID}")
            ),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&found, Method::GET, "/openapi.json"), StatusCode::OK);
    }
}
