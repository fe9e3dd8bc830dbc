//! `GET /audit` (the trail, filtered and paged, newest first), `GET /audit/verify` (the chain
//! checked end to end) and the OpenAPI document. The gateway lets only ADMIN through.
use http::{Method, Request, Response, StatusCode};
use kit::openapi::BearerAuth;
use kit::{response, Problem};
use serde::Serialize;
use utoipa::OpenApi;

use crate::filter::Filter;

/// One record as an admin reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Position in the chain (the paging cursor).
    pub seq: i64,
    /// The gateway's id for the request.
    pub id: String,
    /// RFC 3339 in UTC, to the microsecond.
    pub at: String,
    /// The token's subject; absent for an anonymous caller. (Absent fields are left out, not
    /// null: a client following `patientId` to the patient must find one or nothing.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_role: Option<String>,
    /// `<resource type>.<verb>`, e.g. `patient.read`, `session.login`.
    pub action: String,
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// The HTTP status the caller got.
    pub outcome: u16,
    pub request_id: String,
    /// The client's address as the gateway saw it.
    pub client_address: String,
    /// This record's hash in the chain, hex.
    pub hash: String,
}

#[derive(Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub records: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invalid {
    pub seq: i64,
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

/// The chain checked end to end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether every record matches its hash and follows the one before it.
    pub valid: bool,
    /// Records checked.
    pub checked: i64,
    /// The first record that is not what was written, when one is not.
    pub first_invalid: Option<Invalid>,
    /// The newest record. Removing the newest records leaves a shorter chain that is still
    /// whole: keep the head somewhere else and compare.
    pub head: Option<Head>,
}

/// The trail in the database; `Err` means it could not be reached (503).
pub trait Trail {
    /// At most `limit` records matching `filter`, newest first.
    fn records(&self, filter: &Filter, limit: u32) -> Result<Vec<Record>, String>;
    fn verify(&self) -> Result<Verification, String>;
}

pub fn handle(trail: &dyn Trail, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = request.uri().path().trim_end_matches('/');
    let result = match (request.method(), path) {
        (&Method::GET, "/openapi.json") => Ok(response::json(StatusCode::OK, &Api::openapi())),
        (&Method::GET, "/audit") => list(trail, request.uri().query()),
        (&Method::GET, "/audit/verify") => verify(trail),
        (method, "/audit" | "/audit/verify") => Err(Problem::method_not_allowed(
            method.as_str(),
            &format!("/api{path}"),
            "GET",
        )),
        (method, _) => Err(Problem::not_found(format!(
            "no route for {method} /api{path}"
        ))),
    };
    result.unwrap_or_else(|p| response::problem(&p))
}

fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("audit trail unavailable, retry later: {e}"),
    )
}

#[utoipa::path(
    get,
    path = "/api/audit",
    operation_id = "listAuditRecords",
    security(("bearer" = [])),
    params(
        ("patient" = Option<String>, Query, description = "Only records about this patient (UUID)", format = Uuid),
        ("actor" = Option<String>, Query, description = "Only records of this user (the token's subject, as the records spell it; surrounding spaces are ignored)", min_length = 1, max_length = 320, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. `patient.read`", max_length = 64, pattern = "^[a-z-]+\\.[a-z-]+$"),
        ("from" = Option<String>, Query, description = "Records at or after this instant (RFC 3339)", format = DateTime),
        ("to" = Option<String>, Query, description = "Records before this instant (RFC 3339)", format = DateTime),
        ("size" = Option<u32>, Query, description = "Records per page", minimum = 1, maximum = 200),
        ("before" = Option<i64>, Query, description = "The `next` of the previous page: only older records", minimum = 1),
    ),
    responses(
        (status = 200, description = "One page of records, newest first", body = Page),
        (status = 400, description = "A parameter is not valid (each is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an ADMIN's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The trail cannot be read now", body = Problem, content_type = "application/problem+json")
    )
)]
fn list(trail: &dyn Trail, query: Option<&str>) -> Result<Response<Vec<u8>>, Problem> {
    let filter = Filter::parse(query).map_err(Problem::validation)?;
    // One more than the page shows whether an older page exists.
    let mut records = trail
        .records(&filter, filter.size + 1)
        .map_err(unavailable)?;
    let next = if records.len() > filter.size as usize {
        records.truncate(filter.size as usize);
        records.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(response::json(StatusCode::OK, &Page { records, next }))
}

#[utoipa::path(
    get,
    path = "/api/audit/verify",
    operation_id = "verifyAuditTrail",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chain checked; `valid` says whether it is whole", body = Verification),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not an ADMIN's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The trail cannot be read now", body = Problem, content_type = "application/problem+json")
    )
)]
fn verify(trail: &dyn Trail) -> Result<Response<Vec<u8>>, Problem> {
    let verification = trail.verify().map_err(unavailable)?;
    Ok(response::json(StatusCode::OK, &verification))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "audit", description = "The audit trail of access to patient data", version = env!("CARGO_PKG_VERSION")),
    paths(list, verify),
    components(schemas(Page, Record, Verification, Invalid, Head, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        stored: Vec<Record>,
        down: bool,
        asked: RefCell<Vec<(Filter, u32)>>,
    }

    impl Trail for Fake {
        fn records(&self, filter: &Filter, limit: u32) -> Result<Vec<Record>, String> {
            if self.down {
                return Err("connection refused".into());
            }
            self.asked.borrow_mut().push((filter.clone(), limit));
            Ok(self
                .stored
                .iter()
                .rev()
                .filter(|r| filter.before.is_none_or(|b| r.seq < b))
                .take(limit as usize)
                .cloned()
                .collect())
        }
        fn verify(&self) -> Result<Verification, String> {
            Ok(Verification {
                valid: true,
                checked: self.stored.len() as i64,
                first_invalid: None,
                head: None,
            })
        }
    }

    fn record(seq: i64) -> Record {
        Record {
            seq,
            id: format!("id-{seq}"),
            at: "2026-12-01T00:00:00.000000Z".into(),
            actor: None,
            actor_role: None,
            action: "patient.read".into(),
            resource_type: "patient".into(),
            resource_id: None,
            patient_id: None,
            outcome: 200,
            request_id: "r".into(),
            client_address: "::1".into(),
            hash: "00".into(),
        }
    }

    fn get(trail: &Fake, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::get(uri).body(Vec::new()).unwrap();
        let answer = handle(trail, &request);
        (
            answer.status(),
            serde_json::from_slice(answer.body()).unwrap(),
        )
    }

    #[test]
    fn pages_go_back_in_time_until_the_oldest() {
        let trail = Fake {
            stored: (1..=5).map(record).collect(),
            ..Fake::default()
        };
        let (status, page) = get(&trail, "/audit?size=2");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["records"][0]["seq"], 5);
        assert_eq!(page["next"], "4");
        let (_, page) = get(&trail, "/audit?size=2&before=4");
        assert_eq!(page["records"][0]["seq"], 3);
        let (_, page) = get(&trail, "/audit?size=2&before=2");
        assert_eq!(page["records"].as_array().unwrap().len(), 1);
        assert_eq!(page["next"], serde_json::Value::Null);
        assert_eq!(trail.asked.borrow()[0].1, 3, "one more than the page");
    }

    #[test]
    fn bad_filters_are_400_and_a_down_store_503() {
        let trail = Fake::default();
        let (status, problem) = get(&trail, "/audit?patient=nope");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(problem["errors"]["patient"].is_string());
        assert!(trail.asked.borrow().is_empty(), "nothing was read");
        let down = Fake {
            down: true,
            ..Fake::default()
        };
        assert_eq!(get(&down, "/audit").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&trail, "/audit/verify").0, StatusCode::OK);
        assert_eq!(get(&trail, "/audit/nope").0, StatusCode::NOT_FOUND);
        let post = Request::post("/audit").body(Vec::new()).unwrap();
        assert_eq!(
            handle(&trail, &post).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
