//! The gateway answers over real HTTP on a real lattice (issue: foundation).
mod common;

use common::{gateway, get};

#[test]
fn health_is_200_and_names_the_version() {
    let (status, headers, body) = get(&format!("{}/health", gateway()));
    assert_eq!(status, 200);
    assert_eq!(body["status"], "UP");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        headers.iter().any(|(k, _)| k == "x-request-id"),
        "no x-request-id in {headers:?}"
    );
}

#[test]
fn unknown_route_is_problem_json_404() {
    let (status, headers, body) = get(&format!("{}/no/such/route", gateway()));
    assert_eq!(status, 404);
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("application/problem+json"));
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "no route for GET /no/such/route");
}

#[test]
fn client_request_id_is_echoed() {
    let response = ureq::get(&format!("{}/health", gateway()))
        .set("x-request-id", "e2e-echo-42")
        .call()
        .expect("health answers");
    assert_eq!(response.header("x-request-id"), Some("e2e-echo-42"));
}

#[test]
fn a_body_over_1_mib_is_413_problem_json() {
    let body = vec![b'x'; 1024 * 1024 + 1];
    let (status, headers, problem) = common::into_parts(
        ureq::post(&format!("{}/auth/login", gateway()))
            .set("content-type", "application/json")
            .send_bytes(&body),
    );
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["status"], 413);
    assert!(
        headers.iter().any(|(k, _)| k == "x-request-id"),
        "errors carry a request id too"
    );
}

fn validate_openapi(path: &str) -> serde_json::Value {
    let (status, _, document) = get(&format!("{}{path}", gateway()));
    assert_eq!(status, 200, "{path}: {document}");
    let file = std::env::temp_dir().join(format!("{}.json", common::unique("openapi")));
    std::fs::write(&file, document.to_string()).unwrap();
    let validator = std::env::var("PM_OPENAPI_VALIDATOR_PATH")
        .expect("PM_OPENAPI_VALIDATOR_PATH: run with `cargo xtask test`");
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .env("PYTHONPATH", validator)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{path} is not a valid OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    document
}

#[test]
fn openapi_documents_are_served_and_valid() {
    let all = validate_openapi("/api-docs");
    assert!(all["paths"]["/health"].is_object());
    assert!(
        all["paths"]["/auth/login"].is_object(),
        "auth's paths are merged in"
    );
    let auth = validate_openapi("/api-docs/auth");
    for path in ["/auth/login", "/auth/validate", "/auth/users"] {
        assert!(
            auth["paths"][path].is_object(),
            "{path} missing from auth's document"
        );
    }
    for (service, paths) in [
        ("patients", &["/api/patients", "/api/patients/{id}"][..]),
        ("billing", &["/api/billing/accounts/{patientId}"][..]),
        (
            "appointments",
            &["/api/appointments", "/api/appointments/{id}"][..],
        ),
        ("analytics", &["/api/analytics/summary"][..]),
        ("audit", &["/api/audit", "/api/audit/verify"][..]),
    ] {
        let document = validate_openapi(&format!("/api-docs/{service}"));
        for path in paths {
            assert!(
                document["paths"][path].is_object(),
                "{path} missing from {service}'s document"
            );
            assert!(
                all["paths"][path].is_object(),
                "{path} missing from the merged document"
            );
        }
    }
    let (status, _, _) = get(&format!("{}/api-docs/no-such-service", gateway()));
    assert_eq!(status, 404);
}

#[test]
fn ready_reports_each_service_and_its_dependencies() {
    let (status, _, ready) = get(&format!("{}/ready", gateway()));
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "UP");
    assert_eq!(ready["checks"]["rate-limit store"]["status"], "UP");
    for service in [
        "auth",
        "patients",
        "appointments",
        "billing",
        "analytics",
        "audit",
    ] {
        let report = &ready["checks"][service];
        assert_eq!(report["status"], "UP", "{service}: {report}");
        assert_eq!(
            report["checks"]["postgres"]["status"], "UP",
            "{service}: {report}"
        );
    }
    assert_eq!(
        ready["checks"]["patients"]["checks"]["cache"]["status"],
        "UP"
    );
}

/// Every host's Prometheus text (a host that is gone is skipped).
fn scrape_all() -> Vec<String> {
    let dir = std::env::var("PM_STACK_DIR").expect("PM_STACK_DIR is not set");
    std::fs::read_dir(&dir)
        .expect("stack dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".metrics"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|addr| {
            ureq::get(&format!("http://{}/metrics", addr.trim()))
                .call()
                .ok()
        })
        .filter_map(|r| r.into_string().ok())
        .collect()
}

/// The sum over hosts of every sample of `metric` whose labels include all of `labels`.
fn sample_sum(metric: &str, labels: &[&str]) -> f64 {
    scrape_all()
        .iter()
        .flat_map(|text| text.lines())
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_count_each_route_and_logs_carry_the_request_id() {
    let unmatched_404 = ["route=\"unmatched\"", "status=\"404\""];
    let before = sample_sum("pm_http_requests_total", &unmatched_404);
    let id = common::unique("metrics-check");
    for _ in 0..3 {
        let status = ureq::get(&format!("{}/no/such/metrics-check", gateway()))
            .set("x-request-id", &id)
            .call()
            .map_or_else(
                |e| match e {
                    ureq::Error::Status(s, _) => s,
                    e => panic!("{e}"),
                },
                |r| r.status(),
            );
        assert_eq!(status, 404);
    }
    common::eventually(
        "the three 404s in the metrics",
        std::time::Duration::from_secs(10),
        || (sample_sum("pm_http_requests_total", &unmatched_404) >= before + 3.0).then_some(()),
    );
    assert!(
        sample_sum(
            "pm_http_request_duration_seconds_count",
            &["route=\"unmatched\""]
        ) >= 3.0,
        "no latency histogram for the route"
    );
    assert!(
        sample_sum("pm_process_resident_memory_bytes", &[]) > 0.0,
        "no host process metrics"
    );
    // The host logs each request as one JSON line carrying its id.
    let dir = std::env::var("PM_STACK_DIR").unwrap();
    common::eventually(
        "a structured log line with the request id",
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("host-"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .flat_map(|log| log.lines().map(str::to_string).collect::<Vec<_>>())
                .filter(|line| line.contains(&id))
                .find_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
                .filter(|json| json["fields"]["context"] == "request")
        },
    );
}

/// Calls between components on one host go through memory (issue 22): every host of this lattice
/// runs patients, so a read the gateway forwards to patients is a local call on the host that
/// took it (the hosts count their components' calls by target and path). A call goes over NATS
/// only while every local instance is busy, which other tests running beside this one may make
/// happen now and then: so this counts the local calls, not the absence of others.
#[test]
fn a_forward_to_a_component_on_the_same_host_goes_through_memory() {
    let to_patients = |path: &str| {
        sample_sum(
            "pm_link_calls_total",
            &["-patients\"", &format!("path=\"{path}\"")],
        )
    };
    let client = common::Client::new_user("CLINICIAN");
    let (local, nats) = (to_patients("local"), to_patients("nats"));
    for _ in 0..20 {
        let (status, _, body) = client.patiently(
            "GET",
            "/api/patients/123e4567-e89b-12d3-a456-426614174000",
            None,
        );
        assert_eq!(status, 200, "{body}");
    }
    let (local_after, nats_after) = (to_patients("local"), to_patients("nats"));
    assert!(
        local_after >= local + 20.0,
        "20 reads made {} local calls to patients ({} over NATS)",
        local_after - local,
        nats_after - nats
    );
}
