//! RFC 9457 problem details: the one error shape of the whole platform (SPEC.md).
use std::collections::BTreeMap;

use http::StatusCode;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error as the client sees it. `errors` maps each bad field to a message and is present
/// only for validation failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, String>>,
    /// On a 405, the methods the resource takes: sent as the `Allow` header (RFC 9110), not in
    /// the body.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub allow: Option<&'static str>,
}

impl Problem {
    /// A problem whose title is the status code's canonical reason phrase.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            allow: None,
        }
    }

    /// 400 with one message per bad field.
    pub fn validation(errors: BTreeMap<String, String>) -> Self {
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            format!("invalid fields: {}", fields.join(", ")),
        );
        problem.errors = Some(errors);
        problem
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 405; `allow` lists the methods `path` takes (`"GET, POST"`).
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        let mut problem = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on {path}; it takes {allow}"),
        );
        problem.allow = Some(allow);
        problem
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).expect("problem serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_rfc9457_fields() {
        let body: serde_json::Value =
            serde_json::from_slice(&Problem::not_found("no route for GET /x").to_json()).unwrap();
        assert_eq!(body["status"], 404);
        assert_eq!(body["title"], "Not Found");
        assert_eq!(body["detail"], "no route for GET /x");
        assert_eq!(body["type"], "about:blank");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn validation_lists_every_field() {
        let errors = BTreeMap::from([
            (
                "email".to_string(),
                "must be a valid email address".to_string(),
            ),
            ("name".to_string(), "must not be blank".to_string()),
        ]);
        let problem = Problem::validation(errors);
        assert_eq!(problem.status, 400);
        assert_eq!(problem.detail, "invalid fields: email, name");
        let body: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(body["errors"]["name"], "must not be blank");
    }
}
