//! Rotating the lattice's keys and passwords while it serves (issue 18, item 5): `cargo xtask
//! rotate all` under a load of requests carrying tokens from before the rotation and tokens auth
//! issues during it. Its own test binary: it changes what the other tests of a binary would read
//! (the key, the login roles) while they run.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::load::{as_fresh_admin, Load, Outcome, Request};
use common::stores;
use common::Client;

const SERVICES: [&str; 6] = [
    "auth",
    "patients",
    "billing",
    "appointments",
    "analytics",
    "audit",
];

/// A token from auth for the seed admin (a fresh client address each time: the login limit is
/// per client).
fn login() -> Result<String, String> {
    let password = std::env::var("PM_SEED_ADMIN_PASSWORD").expect("PM_SEED_ADMIN_PASSWORD");
    let client = Client::anonymous();
    let (status, _, body) = client.request(
        "POST",
        "/auth/login",
        Some(&serde_json::json!({ "email": "testuser@test.com", "password": password })),
    );
    match (status, body["token"].as_str()) {
        (200, Some(token)) => Ok(token.to_string()),
        _ => Err(format!("login answered {status}: {body}")),
    }
}

/// Not one request fails while the JWT key and every data store password are replaced:
/// reads with tokens signed before (by the old key) and reads with tokens auth issues
/// throughout (first with the old key, then the new). Afterwards auth signs with the new key
/// only, a token signed with the old one is still accepted, the old Postgres login roles may no
/// longer log in and Redis refuses the old password.
#[test]
fn rotating_the_key_and_passwords_loses_no_request() {
    common::eventually("the platform to be ready", Duration::from_secs(60), || {
        (common::get(&format!("{}/ready", common::gateway())).0 == 200).then_some(())
    });
    let admin = Client::seed_admin();
    let (status, _, created) = admin.patiently(
        "POST",
        "/api/patients",
        Some(&common::new_patient(&common::summary::unused_day(5))),
    );
    assert_eq!(status, 201, "{created}");
    let patient = format!("/api/patients/{}", created["id"].as_str().unwrap());

    let old_key = common::current_tokens();
    let from_before = common::token(&common::unique("before-rotation"), "ADMIN");
    let old_logins: Vec<String> = SERVICES.iter().map(|s| stores::login_role(s)).collect();
    let (redis_user, old_redis_password) = stores::redis_user();

    // Tokens signed with the old key (a fresh subject each: the limit is per subject).
    let path = patient.clone();
    let reads = Load::start_with(6, 10, move |client, n| {
        as_fresh_admin(Request::get(&path), client, n)
    });
    // Tokens auth issues as the rotation goes: each client logs in, then reads with the token.
    let failed_logins = Arc::new(Mutex::new(Vec::new()));
    let (path, failed) = (patient.clone(), failed_logins.clone());
    let issued = Load::start_with(2, 2, move |_, _| match login() {
        Ok(token) => Request::get(&path).with_token(token),
        Err(e) => {
            failed.lock().unwrap().push(e);
            // Counted as a failure below, and not answered 200 either.
            Request::get(&path)
        }
    });
    reads.wait_for_answer("reads to be answered", Duration::ZERO, Outcome::ok);
    issued.wait_for_answer("issued tokens to be accepted", Duration::ZERO, Outcome::ok);

    let started = reads.now();
    common::xtask(&["rotate", "all"]);
    let took = reads.now() - started;
    let after = reads.now() + Duration::from_secs(1);
    reads.wait_for_answer("reads after the rotation", after, Outcome::ok);
    issued.wait_for_answer("issued tokens after the rotation", after, Outcome::ok);
    let (read_outcomes, _) = reads.finish();
    let (issued_outcomes, _) = issued.finish();

    let failed: Vec<&Outcome> = read_outcomes
        .iter()
        .chain(&issued_outcomes)
        .filter(|o| !o.ok())
        .collect();
    let failed_logins = failed_logins.lock().unwrap().clone();
    common::report(&format!(
        "rotation of the JWT key and the store passwords: {:.1} s; {} reads with old-key tokens, {} with tokens issued meanwhile, {} failed, {} logins failed",
        took.as_secs_f64(),
        read_outcomes.len(),
        issued_outcomes.len(),
        failed.len(),
        failed_logins.len()
    ));
    assert!(
        failed.is_empty() && failed_logins.is_empty(),
        "failed: {:?}; logins: {:?}",
        &failed[..failed.len().min(5)],
        &failed_logins[..failed_logins.len().min(5)]
    );

    // The key: auth signs with the new one only; tokens signed with the old one still work.
    let new_key = common::current_tokens();
    let token = login().expect("a login after the rotation");
    assert!(
        new_key.verify(&token).is_ok(),
        "auth signs with the new key"
    );
    assert!(
        old_key.verify(&token).is_err(),
        "auth still signs with the old key"
    );
    let (status, _, body) = Client {
        forwarded_for: common::unique_address(),
        token: Some(from_before),
    }
    .request("GET", &patient, None);
    assert_eq!(status, 200, "a token from before the rotation: {body}");

    // Postgres: every service uses its other login role now; the old ones may not log in.
    let mut refused = Vec::new();
    for (service, old) in SERVICES.iter().zip(&old_logins) {
        let new = stores::login_role(service);
        assert_ne!(&new, old, "{service} still logs in as {old}");
        let (ok, answer) = stores::psql_as(old, "SELECT 1");
        assert!(
            !ok && answer.contains("not permitted to log in"),
            "{service}'s old login role {old} still logs in: {answer}"
        );
        let (ok, answer) = stores::psql_as(&new, "SELECT 1");
        assert!(ok, "{service}'s new login role {new}: {answer}");
        refused.push(old.clone());
    }
    let database = std::env::var("PM_DATABASE").expect("PM_DATABASE");
    let sessions = common::psql(
        "postgres",
        &format!(
            "SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity WHERE datname = '{database}' AND usename <> 'postgres'"
        ),
    );
    for old in &old_logins {
        assert!(
            !sessions.split(',').any(|user| user == old),
            "{old} still has sessions: {sessions}"
        );
    }

    // Redis: the old password is refused, the new one works.
    let (user, new_password) = stores::redis_user();
    assert_eq!(user, redis_user);
    assert_ne!(new_password, old_redis_password);
    let (_, old_answer) = stores::redis_as(&user, &old_redis_password, &["PING"]);
    assert!(
        old_answer.contains("WRONGPASS"),
        "the old Redis password: {old_answer}"
    );
    let (_, new_answer) = stores::redis_as(&user, &new_password, &["PING"]);
    assert_eq!(new_answer, "PONG", "the new Redis password");
    common::report(&format!(
        "rotation: logins now signed with the new key only, a token from before still accepted; old login roles refused: {}; the old Redis password refused",
        refused.join(", ")
    ));
}
