//! `GET /ready` documents: whether each dependency answers. A component reports its own
//! (`{"status":"UP","checks":{"postgres":{"status":"UP"}}}`); the gateway nests the components'
//! documents under their names. 200 when every check is `UP`, else 503.
use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::response;

/// One check's entry: `{"status":"UP"}` or `{"status":"DOWN","detail":...}`.
pub fn check(result: Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({ "status": "UP" }),
        Err(detail) => json!({ "status": "DOWN", "detail": detail }),
    }
}

/// The document for `checks` (each an object with a `status`), with its overall status.
pub fn report(checks: BTreeMap<String, Value>) -> Response<Vec<u8>> {
    let up = checks.values().all(|c| c["status"] == "UP");
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(
        status,
        &json!({ "status": if up { "UP" } else { "DOWN" }, "checks": checks }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_down_check_makes_the_whole_report_503() {
        let all_up = report(BTreeMap::from([("postgres".to_string(), check(Ok(())))]));
        assert_eq!(all_up.status(), StatusCode::OK);
        let mixed = report(BTreeMap::from([
            ("postgres".to_string(), check(Ok(()))),
            ("cache".to_string(), check(Err("connection refused".into()))),
        ]));
        assert_eq!(mixed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_slice(mixed.body()).unwrap();
        assert_eq!(body["status"], "DOWN");
        assert_eq!(body["checks"]["cache"]["detail"], "connection refused");
    }
}
