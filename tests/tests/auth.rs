//! Login, token validation and per-route protection through the gateway (SPEC: Gateway, Auth).
mod common;

use common::{unique, unique_address, Client};
use serde_json::json;

fn login_attempt(email: &str, password: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = Client::anonymous().patiently(
        "POST",
        "/auth/login",
        Some(&json!({ "email": email, "password": password })),
    );
    (status, body)
}

#[test]
fn seed_admin_logs_in_and_the_token_validates() {
    let admin = Client::seed_admin();
    // The seed admin's bucket is shared with every test that creates users, so wait out a 429:
    // what this test checks is the token, not the limit.
    let (status, _, body) = admin.patiently("GET", "/auth/validate", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], "testuser@test.com");
    assert_eq!(body["role"], "ADMIN");
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_401() {
    let (wrong_status, wrong) = login_attempt("testuser@test.com", "not-the-password");
    let (unknown_status, unknown) =
        login_attempt(&format!("{}@nowhere.test", unique("ghost")), "password123");
    assert_eq!((wrong_status, unknown_status), (401, 401));
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["title"], unknown["title"]);
}

#[test]
fn bad_login_bodies_are_4xx_problems() {
    let client = Client::anonymous();
    let (status, _, body) = client.patiently(
        "POST",
        "/auth/login",
        Some(&json!({ "email": "not-an-email" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"]["email"].is_string() && body["errors"]["password"].is_string(),
        "{body}"
    );
}

#[test]
fn validate_without_a_token_is_401() {
    let (status, _, body) = Client::anonymous().patiently("GET", "/auth/validate", None);
    assert_eq!(status, 401, "{body}");
}

/// One path under each protected prefix of SPEC.md's gateway table.
const PROTECTED: [&str; 5] = [
    "/api/patients",
    "/api/patients/123e4567-e89b-12d3-a456-426614174000",
    "/api/billing/accounts/123e4567-e89b-12d3-a456-426614174000",
    "/api/appointments",
    "/api/analytics/summary",
];

/// The status of every protected route with `token`, all of them the same or the test fails.
fn protected_route_answer(token: &str) -> u16 {
    let client = Client {
        forwarded_for: unique_address(),
        token: Some(token.to_string()),
    };
    let statuses: Vec<u16> = PROTECTED
        .iter()
        .map(|path| client.patiently("GET", path, None).0)
        .collect();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        unauthorized == 0 || unauthorized == PROTECTED.len(),
        "routes disagree about one token: {:?}",
        PROTECTED.iter().zip(&statuses).collect::<Vec<_>>()
    );
    statuses[0]
}

#[test]
fn protected_routes_refuse_missing_tampered_none_and_expired_tokens() {
    let anonymous = Client::anonymous();
    for path in PROTECTED {
        let (status, headers, body) = anonymous.patiently("GET", path, None);
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert_eq!(
            headers.iter().find(|(k, _)| k == "content-type").unwrap().1,
            "application/problem+json"
        );
    }

    let token = Client::new_user("CLINICIAN").token.unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    // Tampered: the signature no longer matches (flip its first character).
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2] = format!("{flipped}{}", &parts[2][1..]);
    assert_eq!(
        protected_route_answer(&parts.join(".")),
        401,
        "tampered signature"
    );
    // alg: none with the same claims and no signature.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    assert_eq!(
        protected_route_answer(&format!("{none_header}.{}.", parts[1])),
        401,
        "alg none"
    );
    // Expired, but otherwise perfectly signed with the lattice's own key.
    let tokens = common::lattice_tokens();
    let (expired, _) = tokens
        .issue(
            "testuser@test.com",
            "ADMIN",
            kit::tokens::now() - 7200,
            3600,
        )
        .unwrap();
    assert_eq!(protected_route_answer(&expired), 401, "expired");
    // And the same key with a live expiry is accepted: the 401s above are about the token.
    let fresh = common::token("testuser@test.com", "ADMIN");
    assert_ne!(protected_route_answer(&fresh), 401);
}

#[test]
fn a_clinician_is_forbidden_admin_routes_and_user_creation() {
    let clinician = Client::new_user("CLINICIAN");
    let (status, _, body) = clinician.patiently("GET", "/api/analytics/summary", None);
    assert_eq!(status, 403, "{body}");
    let new = json!({ "email": format!("{}@clinic.test", unique("x")), "password": "long enough pw", "role": "ADMIN" });
    let (status, _, body) = clinician.patiently("POST", "/auth/users", Some(&new));
    assert_eq!(status, 403, "{body}");
}

#[test]
fn duplicate_users_are_409_and_passwords_never_come_back() {
    let admin = Client::seed_admin();
    let new = json!({ "email": format!("{}@clinic.test", unique("dup")), "password": "long enough pw", "role": "CLINICIAN" });
    let (status, _, body) = admin.patiently("POST", "/auth/users", Some(&new));
    assert_eq!(status, 201, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("long enough pw") && !text.contains("$2"),
        "{text}"
    );
    let (status, _, _) = admin.patiently("POST", "/auth/users", Some(&new));
    assert_eq!(status, 409);
}

#[test]
fn the_seeds_rate_limit_test_ten_requests_100ms_apart_sees_a_429() {
    let client = Client::new_user("CLINICIAN");
    let mut limited = None;
    let start = std::time::Instant::now();
    for i in 0..10u32 {
        // Requests start exactly 100 ms apart, as in the seed's test (pacing, not a wait).
        let due = start + std::time::Duration::from_millis(100) * i;
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        let (status, headers, _) = client.request("GET", "/auth/validate", None);
        if status == 429 {
            limited = headers
                .iter()
                .find(|(k, _)| k == "retry-after")
                .map(|(_, v)| v.clone());
        }
    }
    let retry_after = limited.expect("no 429 among 10 requests 100 ms apart");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
}

#[test]
fn gateway_instances_share_one_bucket() {
    // The gateway runs many instances; 12 simultaneous requests of one client land on different
    // ones, and still only the burst (5) gets through, because the bucket lives in Redis.
    // A fresh user's bucket is full (logging in spent the anonymous client's bucket, not this).
    let client = std::sync::Arc::new(Client::new_user("CLINICIAN"));
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || client.request("GET", "/auth/validate", None).0)
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // One token returns every 200 ms, so a burst that took longer may see that many more.
    let refilled = (started.elapsed().as_millis() / 200) as usize;
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (5..=5 + refilled).contains(&allowed),
        "{allowed} allowed of {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        12 - allowed,
        "{statuses:?}"
    );
}

#[test]
fn an_anonymous_client_is_limited_by_its_address_and_cannot_forge_its_peer() {
    // The host sets `x-pm-peer-addr` to the connection's peer (here loopback, which the gateway
    // trusts as a proxy, so this caller's `X-Forwarded-For` names it). A client sending its own
    // `x-pm-peer-addr` (a new, untrusted address each time) would get a fresh bucket per request
    // if the gateway believed it; the host overwrites it, so the burst (5) still runs out.
    let address = unique_address();
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            let request = ureq::get(&format!("{}/auth/validate", common::gateway()))
                .timeout(std::time::Duration::from_secs(30))
                .set("x-forwarded-for", &address)
                .set("x-pm-peer-addr", &format!("203.0.113.{}", i + 1));
            match request.call() {
                Ok(r) => r.status(),
                Err(ureq::Error::Status(status, _)) => status,
                Err(e) => panic!("no answer: {e}"),
            }
        })
        .collect();
    assert!(
        statuses.contains(&429),
        "eight anonymous requests in a row from one address were never limited: {statuses:?}"
    );
    // Another address has a bucket of its own.
    let (status, _, body) = Client::anonymous().request("GET", "/auth/validate", None);
    assert_eq!(status, 401, "a fresh address is not limited: {body}");
}
