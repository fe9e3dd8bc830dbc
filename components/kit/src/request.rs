//! Reading requests the same way in every component.
use http::{header, Request, StatusCode};
use serde::Deserialize;

use crate::Problem;

/// JSON body of a request: 415 for another media type, 400 for bad JSON (never a 500).
pub fn json_body<T: for<'de> Deserialize<'de>>(request: &Request<Vec<u8>>) -> Result<T, Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    serde_json::from_slice(request.body()).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The query string's pairs, percent-decoded (`+` is a space, as forms send it).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_decoded() {
        assert_eq!(
            query_pairs(Some("a=1&searchValue=Jo%C3%ABl+D&empty=")),
            vec![
                ("a".to_string(), "1".to_string()),
                ("searchValue".to_string(), "Joël D".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn json_bodies_need_the_media_type_and_valid_json() {
        let request = |content_type: &str, body: &str| {
            Request::builder()
                .header(header::CONTENT_TYPE, content_type)
                .body(body.as_bytes().to_vec())
                .unwrap()
        };
        let parsed: Result<serde_json::Value, _> = json_body(&request("application/json", "{}"));
        assert!(parsed.is_ok());
        let wrong_type: Result<serde_json::Value, _> = json_body(&request("text/plain", "{}"));
        assert_eq!(wrong_type.unwrap_err().status, 415);
        let bad: Result<serde_json::Value, _> = json_body(&request("application/json", "{"));
        assert_eq!(bad.unwrap_err().status, 400);
    }
}
