//! One REST collection, routed the same way in every component that has one (patients,
//! appointments): `/{plural}` takes GET (list) and POST (create), `/{plural}/{uuid}` takes GET,
//! PUT and DELETE, and `/openapi.json` the component's own document. Anything else is a precise
//! 400 (an id that is not a UUID), 404 or 405 problem, so no component writes that match again.
//! Paths are as the component sees them: the gateway has already taken `/api` off.
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;

use crate::fields::parse_uuid;
use crate::{response, Problem};

pub struct Collection {
    /// The path segment: `patients`.
    pub plural: &'static str,
    /// One item with its article, for error messages: `a patient`, `an appointment`.
    pub one: &'static str,
}

/// What a request asks of the collection. Ids are lower-case UUIDs.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    OpenApi,
    List,
    Create,
    Get(String),
    Update(String),
    Delete(String),
}

impl Collection {
    pub fn route(&self, method: &Method, path: &str) -> Result<Route, Problem> {
        let trimmed = path.trim_end_matches('/');
        if trimmed == "/openapi.json" && method == Method::GET {
            return Ok(Route::OpenApi);
        }
        let plural = self.plural;
        let rest = trimmed
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(plural));
        match rest {
            Some("") => match *method {
                Method::GET => Ok(Route::List),
                Method::POST => Ok(Route::Create),
                _ => Err(Problem::method_not_allowed(
                    method.as_str(),
                    &format!("/api/{plural}"),
                    "GET, POST",
                )),
            },
            Some(item) => match item.strip_prefix('/') {
                Some(raw_id) if !raw_id.contains('/') => {
                    let id = parse_uuid(raw_id).ok_or_else(|| {
                        Problem::new(
                            StatusCode::BAD_REQUEST,
                            format!("`{raw_id}` is not {} id (UUID)", self.one),
                        )
                    })?;
                    match *method {
                        Method::GET => Ok(Route::Get(id)),
                        Method::PUT => Ok(Route::Update(id)),
                        Method::DELETE => Ok(Route::Delete(id)),
                        _ => Err(Problem::method_not_allowed(
                            method.as_str(),
                            &format!("/api/{plural}/{{id}}"),
                            "GET, PUT, DELETE",
                        )),
                    }
                }
                _ => Err(no_route(method, path)),
            },
            None => Err(no_route(method, path)),
        }
    }

    /// 201 with the created item and its `Location`.
    pub fn created<T: Serialize>(&self, id: &str, body: &T) -> Response<Vec<u8>> {
        let mut answer = response::json(StatusCode::CREATED, body);
        // An id is a UUID we made, so the header value is always valid; never fail a create on it.
        if let Ok(location) = HeaderValue::from_str(&format!("/api/{}/{id}", self.plural)) {
            answer.headers_mut().insert(header::LOCATION, location);
        }
        answer
    }
}

fn no_route(method: &Method, path: &str) -> Problem {
    Problem::not_found(format!("no route for {method} /api{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENTS: Collection = Collection {
        plural: "patients",
        one: "a patient",
    };
    const ID: &str = "0b7e6c1e-4a51-4c3e-9a43-6f0e2d1c9b10";

    fn route(method: Method, path: &str) -> Result<Route, Problem> {
        PATIENTS.route(&method, path)
    }

    #[test]
    fn the_collection_lists_and_creates() {
        assert_eq!(route(Method::GET, "/patients"), Ok(Route::List));
        assert_eq!(route(Method::GET, "/patients/"), Ok(Route::List));
        assert_eq!(route(Method::POST, "/patients"), Ok(Route::Create));
        assert_eq!(route(Method::GET, "/openapi.json"), Ok(Route::OpenApi));
        let refused = route(Method::DELETE, "/patients").unwrap_err();
        assert_eq!(refused.status, 405);
        assert_eq!(
            refused.detail,
            "method DELETE is not allowed on /api/patients; it takes GET, POST"
        );
        assert_eq!(refused.allow, Some("GET, POST"));
    }

    #[test]
    fn items_are_addressed_by_uuid_in_any_case() {
        let upper = ID.to_ascii_uppercase();
        assert_eq!(
            route(Method::GET, &format!("/patients/{upper}")),
            Ok(Route::Get(ID.into()))
        );
        assert_eq!(
            route(Method::PUT, &format!("/patients/{ID}")),
            Ok(Route::Update(ID.into()))
        );
        assert_eq!(
            route(Method::DELETE, &format!("/patients/{ID}/")),
            Ok(Route::Delete(ID.into()))
        );
        let refused = route(Method::POST, &format!("/patients/{ID}")).unwrap_err();
        assert_eq!(refused.status, 405);
        assert_eq!(
            refused.detail,
            "method POST is not allowed on /api/patients/{id}; it takes GET, PUT, DELETE"
        );
        assert_eq!(refused.allow, Some("GET, PUT, DELETE"));
    }

    #[test]
    fn anything_else_is_a_precise_problem() {
        let bad_id = route(Method::GET, "/patients/42").unwrap_err();
        assert_eq!(bad_id.status, 400);
        assert_eq!(bad_id.detail, "`42` is not a patient id (UUID)");
        for path in ["/patientsx", "/patients/a/b", "/other", "/"] {
            let missing = route(Method::GET, path).unwrap_err();
            assert_eq!(missing.status, 404, "{path}");
        }
        assert_eq!(
            route(Method::GET, "/other").unwrap_err().detail,
            "no route for GET /api/other"
        );
        // Only GET reads the document.
        assert_eq!(
            route(Method::POST, "/openapi.json").unwrap_err().status,
            404
        );
    }

    #[test]
    fn a_create_answers_201_with_its_location() {
        let answer = PATIENTS.created(ID, &serde_json::json!({ "id": ID }));
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(
            answer.headers()[header::LOCATION],
            format!("/api/patients/{ID}").as_str()
        );
    }
}
