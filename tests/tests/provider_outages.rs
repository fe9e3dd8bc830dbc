//! A provider whose server is down answers with an error the component maps to 503, promptly,
//! and recovers by itself when the server returns. These tests take servers away, so they run
//! one at a time in their own test binary.
mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{eventually, probe, send, unique, xtask};
use serde_json::json;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn publish(key: &str, id: &str) -> u16 {
    let body = json!({ "subject": format!("probe-events/{key}"), "body": { "id": id } });
    send("POST", &format!("{}/publish", probe()), Some(&body)).0
}

#[test]
fn kafka_down_is_503_and_publishing_recovers_when_it_returns() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique("outage");
    xtask(&["broker", "stop"]);
    // The request itself is bounded (30 s client timeout); the provider must answer well before.
    let (status, _, body) = send(
        "POST",
        &format!("{}/publish", probe()),
        Some(
            &json!({ "subject": format!("probe-events/{key}"), "body": { "id": unique("lost") } }),
        ),
    );
    assert_eq!(status, 503, "publishing with the broker down: {body}");
    assert_eq!(body["status"], 503);
    xtask(&["broker", "start"]);
    let id = unique("after-restart");
    eventually("publishing to work again", Duration::from_secs(60), || {
        (publish(&key, &id) == 202).then_some(())
    });
    eventually(
        "the message to be delivered after the restart",
        Duration::from_secs(120),
        || {
            let (_, _, body) = send("GET", &format!("{}/delivered/{id}", probe()), None);
            (body["delivered"].as_u64() >= Some(1)).then_some(())
        },
    );
}

#[test]
fn a_silent_redis_is_503_within_the_timeout_then_recovers() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique("pause");
    let url = format!("{}/kv/{key}/incr", probe());
    // An earlier test may have cut the provider's connection (the fault proxy refusing): the
    // first call on it finds it dropped, and the next one reconnects.
    eventually("Redis calls to succeed", Duration::from_secs(30), || {
        (send("POST", &url, None).0 == 200).then_some(())
    });
    // Redis stops answering every client for 4 s (the provider's timeout is 1 s).
    let pause = std::thread::spawn(|| {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "CLIENT", "PAUSE", "4000", "ALL"])
            .status()
    });
    pause.join().unwrap().expect("redis-cli runs");
    let (status, _, body) = send("POST", &url, None);
    assert_eq!(status, 503, "increment while Redis is paused: {body}");
    eventually(
        "Redis calls to succeed again",
        Duration::from_secs(30),
        || (send("POST", &url, None).0 == 200).then_some(()),
    );
}

#[test]
fn cut_database_connections_are_replaced_transparently() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let query = |sql: &str| {
        send(
            "POST",
            &format!("{}/sql/query", probe()),
            Some(&json!({ "sql": sql, "params": [] })),
        )
    };
    assert_eq!(query("SELECT 1::int8 AS one").0, 200);
    let database = std::env::var("PM_DATABASE").expect("PM_DATABASE is not set");
    let terminated = common::psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'pm-postgres-provider'"
        ),
    );
    let count: u32 = terminated.parse().unwrap_or(0);
    assert!(count >= 1, "no provider connection was cut: {terminated:?}");
    let (status, _, body) = query("SELECT 1::int8 AS one");
    assert_eq!(
        status, 200,
        "first query after the connections were cut: {body}"
    );
}
