//! Staff accounts that resist attack (issue 20), end to end through the gateway: a signed-out
//! token and a disabled user's tokens are refused on every protected route; a new password ends
//! the user's other sessions; failed sign-ins lock an email, known or not, and the lock runs
//! out; an unknown email and a known one get the same answer in the same time.
mod common;

use std::time::{Duration, Instant};

use common::{psql, unique, Client};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const SEED_PATIENT: &str = "123e4567-e89b-12d3-a456-426614174000";
const NO_PATIENT: &str = "00000000-0000-4000-8000-0000000000aa";

/// Every route a token opens, with the status a live CLINICIAN session gets (the caller's own
/// account routes last: they are what a user would try once refused elsewhere).
fn protected() -> Vec<(&'static str, String, u16)> {
    vec![
        ("GET", "/api/patients?size=1".into(), 200),
        ("GET", format!("/api/patients/{SEED_PATIENT}"), 200),
        // No account has this id: served means "not found".
        ("GET", format!("/api/billing/accounts/{NO_PATIENT}"), 404),
        (
            "GET",
            "/api/appointments?from=2031-01-01T00:00:00Z&to=2031-01-02T00:00:00Z".into(),
            200,
        ),
        ("GET", "/api/analytics/summary".into(), 403),
        ("GET", "/api/audit".into(), 403),
        ("GET", "/auth/validate".into(), 200),
    ]
}

/// A fresh CLINICIAN with `sessions` signed-in clients, and the user's id and email.
fn clinician(sessions: usize) -> (String, String, Vec<Client>) {
    let email = format!("{}@clinic.test", unique("staff"));
    let (status, _, user) = Client::seed_admin().patiently(
        "POST",
        "/auth/users",
        Some(&json!({ "email": email, "password": PASSWORD, "role": "CLINICIAN" })),
    );
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_string();
    let clients = (0..sessions)
        .map(|_| Client::login(&email, PASSWORD))
        .collect();
    (id, email, clients)
}

/// What each protected route answers `client`.
fn answers(client: &Client) -> Vec<(String, u16)> {
    protected()
        .into_iter()
        .map(|(method, path, _)| {
            let (status, _, _) = client.patiently(method, &path, None);
            (format!("{method} {path}"), status)
        })
        .collect()
}

#[track_caller]
fn all_served(client: &Client) {
    let expected: Vec<(String, u16)> = protected()
        .into_iter()
        .map(|(m, p, s)| (format!("{m} {p}"), s))
        .collect();
    assert_eq!(answers(client), expected);
}

#[track_caller]
fn all_refused(client: &Client, why: &str) {
    for (route, status) in answers(client) {
        assert_eq!(status, 401, "{route} still served a token whose {why}");
    }
    let (_, _, problem) = client.patiently("GET", "/api/patients?size=1", None);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("session was ended")),
        "{problem}"
    );
}

fn sign_out(client: &Client) -> u16 {
    client.patiently("POST", "/auth/logout", None).0
}

#[test]
fn a_signed_out_token_is_refused_on_every_route_and_the_users_other_sessions_live_on() {
    let (_, _, sessions) = clinician(2);
    all_served(&sessions[0]);
    assert_eq!(sign_out(&sessions[0]), 204);
    all_refused(&sessions[0], "user signed out");
    assert_eq!(
        sign_out(&sessions[0]),
        401,
        "an ended session cannot sign out again"
    );
    all_served(&sessions[1]);
    common::report(&format!(
        "accounts: a signed-out token was refused on {} routes; the user's other session was served",
        protected().len()
    ));
}

#[test]
fn a_disabled_users_tokens_are_refused_and_enabling_lets_them_sign_in_again() {
    let admin = Client::seed_admin();
    let (id, email, sessions) = clinician(2);
    all_served(&sessions[0]);
    let (status, _, user) = admin.patiently("POST", &format!("/auth/users/{id}/disable"), None);
    assert_eq!(
        (status, user["enabled"].as_bool()),
        (200, Some(false)),
        "{user}"
    );
    for session in &sessions {
        all_refused(session, "user was disabled");
    }
    let sign_in = json!({ "email": email, "password": PASSWORD });
    let (status, _, _) = Client::anonymous().patiently("POST", "/auth/login", Some(&sign_in));
    assert_eq!(status, 401, "a disabled user cannot sign in");
    let (_, _, listed) = admin.patiently("GET", "/auth/users", None);
    let listed = listed["users"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|u| u["id"] == id.as_str() && u["enabled"] == false));
    assert!(listed.iter().all(|u| u.get("passwordHash").is_none()));

    let (status, _, _) = admin.patiently("POST", &format!("/auth/users/{id}/enable"), None);
    assert_eq!(status, 200);
    all_refused(&sessions[1], "user was disabled, even once enabled again");
    all_served(&Client::login(&email, PASSWORD));

    let actions = psql(
        &std::env::var("PM_DATABASE").unwrap(),
        &format!(
            "SELECT string_agg(action || ' ' || outcome, ', ' ORDER BY seq) FROM audit_trail.records \
             WHERE resource_id = '{id}' AND action LIKE 'user.%able'"
        ),
    );
    assert_eq!(actions, "user.disable 200, user.enable 200");
}

#[test]
fn a_new_password_ends_every_other_session_and_the_old_password() {
    let (_, email, sessions) = clinician(2);
    let change = |current: &str, new: &str| {
        sessions[0].patiently(
            "PUT",
            "/auth/password",
            Some(&json!({ "currentPassword": current, "newPassword": new })),
        )
    };
    let (status, _, problem) = change("not my password", "clinic-rota-7-tulips");
    assert_eq!(status, 400);
    assert!(
        problem["errors"]["currentPassword"].is_string(),
        "{problem}"
    );
    let (status, _, problem) = change(PASSWORD, "password123456");
    assert_eq!(status, 400);
    assert!(
        problem["errors"]["newPassword"]
            .as_str()
            .is_some_and(|w| w.contains("too easy to guess")),
        "{problem}"
    );
    all_served(&sessions[1]);

    let (status, _, fresh) = change(PASSWORD, "clinic-rota-7-tulips");
    assert_eq!(status, 200, "{fresh}");
    all_refused(&sessions[1], "user changed their password");
    all_refused(
        &sessions[0],
        "user changed their password (the new token replaces it)",
    );
    let renewed = Client {
        forwarded_for: sessions[0].forwarded_for.clone(),
        token: fresh["token"].as_str().map(str::to_string),
    };
    all_served(&renewed);
    let old = json!({ "email": email, "password": PASSWORD });
    let (status, _, _) = Client::anonymous().patiently("POST", "/auth/login", Some(&old));
    assert_eq!(status, 401, "the old password no longer signs in");
    Client::login(&email, "clinic-rota-7-tulips");
}

/// A sign-in attempt from a fresh address (so the rate limit plays no part): its status, its
/// `Retry-After`, and how long it took.
fn attempt(email: &str, password: &str) -> (u16, Option<u64>, Duration) {
    let started = Instant::now();
    let (status, headers, _) = Client::anonymous().request(
        "POST",
        "/auth/login",
        Some(&json!({ "email": email, "password": password })),
    );
    let retry = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .and_then(|(_, v)| v.parse().ok());
    (status, retry, started.elapsed())
}

#[test]
fn failed_sign_ins_lock_an_email_known_or_not_and_the_lock_runs_out() {
    let (_, known, _) = clinician(0);
    let unknown = format!("{}@nowhere.test", unique("ghost"));
    for email in [&known, &unknown] {
        let statuses: Vec<u16> = (0..3)
            .map(|_| attempt(email, "wrong wrong wrong").0)
            .collect();
        assert_eq!(statuses, [401, 401, 401], "{email}");
        // Locked: even the right password waits, and an unknown email is told the same.
        let (status, retry, _) = attempt(email, PASSWORD);
        assert_eq!((status, retry), (429, Some(1)), "{email}");
    }
    let locked_at = Instant::now();
    common::eventually("the lock to run out", Duration::from_secs(10), || {
        let (status, _, _) = attempt(&known, PASSWORD);
        (status == 200).then_some(())
    });
    common::report(&format!(
        "accounts: 3 failed sign-ins locked a known and an unknown email alike (429, Retry-After 1); \
         the known one signed in again {:.1} s later",
        locked_at.elapsed().as_secs_f64()
    ));
    let events = psql(
        &std::env::var("PM_DATABASE").unwrap(),
        &format!(
            "SELECT string_agg(action, ', ' ORDER BY seq) FROM audit_trail.records \
             WHERE resource_id = '{known}' AND action IN ('user.lock', 'user.unlock')"
        ),
    );
    assert_eq!(
        events, "user.lock, user.unlock",
        "the lock and its end are audited"
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn an_unknown_email_gets_the_same_answer_in_the_same_time_as_a_known_one() {
    // Two tries per email stay under the lock; several emails give a median of each kind.
    let known: Vec<String> = (0..5).map(|_| clinician(0).1).collect();
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut answers = Vec::new();
    for round in 0..2 {
        for email in &known {
            let (status, _, took) = attempt(email, "wrong wrong wrong");
            answers.push(("known", status));
            known_times.push(took);
            let ghost = format!("{}@nowhere.test", unique(&format!("ghost{round}")));
            let (status, _, took) = attempt(&ghost, "wrong wrong wrong");
            answers.push(("unknown", status));
            unknown_times.push(took);
        }
    }
    assert!(answers.iter().all(|(_, s)| *s == 401), "{answers:?}");
    let (known, unknown) = (median(known_times), median(unknown_times));
    common::report(&format!(
        "accounts: a wrong password for a known email took {:.1} ms (median of 10), an unknown email {:.1} ms",
        known.as_secs_f64() * 1e3,
        unknown.as_secs_f64() * 1e3
    ));
    // Both pay for one bcrypt check, which dominates: an answer that skipped it for an unknown
    // email would take a small fraction of the time, far outside this margin.
    let (slower, faster) = (known.max(unknown), known.min(unknown));
    assert!(
        faster.as_secs_f64() > slower.as_secs_f64() * 0.6,
        "known {known:?} vs unknown {unknown:?}: the time tells them apart"
    );
}

#[test]
fn only_admins_manage_accounts_and_weak_passwords_are_refused_with_the_reason() {
    let (id, _, sessions) = clinician(1);
    let (status, _, _) = sessions[0].patiently("GET", "/auth/users", None);
    assert_eq!(status, 403);
    let (status, _, _) = sessions[0].patiently("POST", &format!("/auth/users/{id}/disable"), None);
    assert_eq!(status, 403);
    let admin = Client::seed_admin();
    let weak = |password: &str| -> Value {
        let (status, _, problem) = admin.patiently(
            "POST",
            &format!("/auth/users/{id}/password"),
            Some(&json!({ "password": password })),
        );
        assert_eq!(status, 400, "{password}: {problem}");
        problem["errors"]["password"].clone()
    };
    assert!(weak("short").as_str().unwrap().contains("at least 12"));
    assert!(weak("qwertyuiop123")
        .as_str()
        .unwrap()
        .contains("too easy to guess"));
    let (status, _, _) = admin.patiently(
        "POST",
        &format!("/auth/users/{id}/password"),
        Some(&json!({ "password": "clinic-rota-7-tulips" })),
    );
    assert_eq!(status, 204);
    all_refused(&sessions[0], "user was given a new password");
    let (status, _, _) = admin.patiently("POST", "/auth/users/not-a-uuid/disable", None);
    assert_eq!(status, 404);
}
