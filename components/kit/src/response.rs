//! Building JSON and problem+json responses, so no handler writes headers by hand.
use http::{header, Response, StatusCode};
use serde::Serialize;

use crate::problem::{self, Problem};

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Vec<u8>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_body(status, "application/json", bytes),
        Err(e) => problem(&Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("response could not be serialized: {e}"),
        )),
    }
}

/// 204: no body at all (a body on 204 corrupts the next response on a kept-alive connection).
pub fn no_content() -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A problem+json answer. A 503 says when to try again (`Retry-After`, in seconds): the
/// dependency that is down is usually back, or its breaker retried, within a second or two.
pub fn problem(problem: &Problem) -> Response<Vec<u8>> {
    let mut response = with_body(
        problem.status_code(),
        problem::CONTENT_TYPE,
        problem.to_json(),
    );
    if let Some(allow) = problem.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

/// What every 503 of the platform tells a client to wait, in seconds.
pub const RETRY_AFTER_SECS: &str = "1";

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_content_has_no_body() {
        let response = no_content();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.body().is_empty());
        assert!(response.headers().get(header::CONTENT_TYPE).is_none());
    }

    #[test]
    fn problem_response_carries_status_and_media_type() {
        let response = problem(&Problem::not_found("gone"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            problem::CONTENT_TYPE
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_503_says_when_to_retry() {
        let response = problem(&Problem::new(StatusCode::SERVICE_UNAVAILABLE, "down"));
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
    }
}
