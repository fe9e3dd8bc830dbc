//! Reading requests the same way in every component.
use http::{header, Request, StatusCode};
use serde::{Deserialize, Serialize};

use crate::Problem;

/// JSON body of a request: 415 for another media type, 400 for bad JSON or a value of the wrong
/// type (naming the field), never a 500. Fields the body type does not have are ignored.
pub fn json_body<T: for<'de> Deserialize<'de> + Serialize>(
    request: &Request<Vec<u8>>,
) -> Result<T, Problem> {
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
    // Every body of the API is an object; serde would also read a struct from an array
    // (its fields in order), which no client should rely on.
    let first = request.body().iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(request.body());
    let body: T = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| refused(&e.path().to_string(), e.into_inner()))?;
    json.end().map_err(|e| refused(".", e))?;
    // Postgres text cannot hold NUL (JSON can, but only as the escape `\u0000`): refused here,
    // in every field the route reads, before anything reaches a store (a field it ignores may
    // hold anything). A body without that escape cannot hold NUL, so only such a body is walked.
    if request.body().windows(6).any(|w| w == b"\\u0000") {
        let read = serde_json::to_value(&body).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("the body cannot be read: {e}"),
            )
        })?;
        if let Some(field) = nul_in(&read, "") {
            let mut errors = crate::fields::FieldErrors::new();
            errors.insert(field, crate::fields::NO_NUL.into());
            return Err(Problem::validation(errors));
        }
    }
    Ok(body)
}

/// Why a body was refused: not JSON at all, or a value of the wrong type or out of range, named
/// by its path (`version`, `a.b[2]`; `.` is the whole body) as a field error.
fn refused(path: &str, inner: serde_json::Error) -> Problem {
    if inner.classify() != serde_json::error::Category::Data {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {inner}"),
        );
    }
    if path == "." {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON this route takes: {inner}"),
        );
    }
    // serde's message ends with where in the text it stopped; the field names the place.
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    let mut errors = crate::fields::FieldErrors::new();
    errors.insert(path.to_string(), message.to_string());
    Problem::validation(errors)
}

/// The path (`a.b[2]`; `body` for the whole body) of the first string or key in `value` that
/// holds NUL. A key's own NUL is shown escaped, as `\u0000`.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let here = || if path.is_empty() { "body" } else { path }.to_string();
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{}[{i}]", here()))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(child(&key.replace('\0', "\\u0000")))
            } else {
                nul_in(item, &child(key))
            }
        }),
        _ => None,
    }
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

    /// A request with `json` as its application/json body.
    fn body(json: &str) -> Request<Vec<u8>> {
        Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(json.as_bytes().to_vec())
            .unwrap()
    }

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
        let trailing: Result<serde_json::Value, _> =
            json_body(&request("application/json", "{} x"));
        assert_eq!(trailing.unwrap_err().status, 400);
    }

    #[test]
    fn a_value_of_the_wrong_type_or_range_is_a_400_naming_its_field() {
        #[derive(Debug, Deserialize, Serialize)]
        #[allow(dead_code)]
        struct Body {
            name: Option<String>,
            version: Option<i64>,
            inner: Option<Inner>,
        }
        #[derive(Debug, Deserialize, Serialize)]
        #[allow(dead_code)]
        struct Inner {
            items: Vec<u8>,
        }
        for (json, field) in [
            (r#"{"name":12}"#, "name"),
            (r#"{"version":1e30}"#, "version"),
            (r#"{"version":99999999999999999999}"#, "version"),
            (r#"{"inner":{"items":[1,300]}}"#, "inner.items[1]"),
        ] {
            let problem = json_body::<Body>(&body(json)).unwrap_err();
            assert_eq!(problem.status, 400, "{json}");
            let errors = problem.errors.expect("field errors");
            assert!(errors.contains_key(field), "{json}: {errors:?}");
            assert!(!errors[field].contains("line"), "{errors:?}");
        }
        for not_an_object in ["[1]", " \"text\"", "12", "null"] {
            let problem = json_body::<Body>(&body(not_an_object)).unwrap_err();
            assert_eq!(problem.status, 400, "{not_an_object}");
            assert!(problem.errors.is_none(), "{not_an_object}");
        }
    }

    #[test]
    fn nul_in_a_field_the_route_reads_is_a_400_naming_it() {
        for (json, field) in [
            (r#"{"name":"a\u0000b"}"#, "name"),
            (r#"{"a":{"b":["x","\u0000"]}}"#, "a.b[1]"),
            (r#"{"k\u0000":1}"#, "k\\u0000"),
        ] {
            let refused: Result<serde_json::Value, _> = json_body(&body(json));
            let problem = refused.unwrap_err();
            assert_eq!(problem.status, 400, "{json}");
            assert!(problem.errors.unwrap().contains_key(field), "{json}");
        }
        let fine: Result<serde_json::Value, _> = json_body(&body(r#"{"name":"a\u0001b"}"#));
        assert!(fine.is_ok());
        // The text `\u0000` (an escaped backslash, then `u0000`) is no NUL.
        let text: Result<serde_json::Value, _> = json_body(&body(r#"{"name":"a\\u0000b"}"#));
        assert_eq!(text.unwrap()["name"], "a\\u0000b");
        // A field the route does not read may hold anything: it is dropped, never stored.
        #[derive(Debug, Deserialize, Serialize)]
        struct Named {
            name: Option<String>,
        }
        let ignored = json_body::<Named>(&body(r#"{"name":"a","other":["\u0000"]}"#));
        assert_eq!(ignored.unwrap().name.as_deref(), Some("a"));
        let read = json_body::<Named>(&body(r#"{"name":"a\u0000","other":1}"#)).unwrap_err();
        assert!(read.errors.unwrap().contains_key("name"));
    }
}
