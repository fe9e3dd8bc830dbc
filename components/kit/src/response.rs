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

pub fn problem(problem: &Problem) -> Response<Vec<u8>> {
    with_body(
        problem.status_code(),
        problem::CONTENT_TYPE,
        problem.to_json(),
    )
}

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
    }
}
