//! The three capability providers, driven through the provider-probe component on a real host
//! against the real Postgres, Redis and Kafka-compatible broker.
mod common;

use std::time::Duration;

use common::{eventually, probe, send, unique};
use serde_json::{json, Value};

fn sql(sql: &str, params: Value) -> (u16, Value) {
    let (status, _, body) = send(
        "POST",
        &format!("{}/sql/query", probe()),
        Some(&json!({ "sql": sql, "params": params })),
    );
    (status, body)
}

fn transaction(statements: Value) -> (u16, Value) {
    let (status, _, body) = send(
        "POST",
        &format!("{}/sql/transaction", probe()),
        Some(&json!({ "statements": statements })),
    );
    (status, body)
}

fn create_table(name: &str, columns: &str) {
    let (status, body) = sql(&format!("CREATE TABLE {name} ({columns})"), json!([]));
    assert_eq!(status, 200, "create table: {body}");
}

#[test]
fn typed_values_round_trip_through_postgres() {
    let table = unique("typed").replace('-', "_");
    create_table(
        &table,
        "id int8 PRIMARY KEY, t text, i4 int4, i2 int2, f float8, b bool, u uuid, d date, ts timestamptz, j jsonb, bin bytea, n text",
    );
    let params = json!([
        {"type": "int8", "value": 9007199254740993i64},
        {"type": "text", "value": "Zoë O'Brien"},
        {"type": "int4", "value": -42},
        {"type": "int2", "value": 7},
        {"type": "float8", "value": 1234.5678},
        {"type": "bool", "value": true},
        {"type": "uuid", "value": "123e4567-e89b-12d3-a456-426614174000"},
        {"type": "date", "value": "1990-02-28"},
        {"type": "timestamptz", "value": "2026-12-01T10:00:00.250000Z"},
        {"type": "json", "value": {"a": [1, 2], "b": null}},
        {"type": "bytea", "value": [0, 1, 254, 255]},
        {"type": "null"}
    ]);
    let (status, body) = sql(
        &format!("INSERT INTO {table} VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING *"),
        params.clone(),
    );
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    let columns = [
        "id", "t", "i4", "i2", "f", "b", "u", "d", "ts", "j", "bin", "n",
    ];
    for (column, sent) in columns.iter().zip(params.as_array().unwrap()) {
        assert_eq!(row[column]["type"], sent["type"], "type of {column}: {row}");
        assert_eq!(
            row[column]["value"], sent["value"],
            "value of {column}: {row}"
        );
    }
}

#[test]
fn a_failed_transaction_leaves_nothing_behind() {
    let table = unique("tx").replace('-', "_");
    create_table(&table, "id int8 PRIMARY KEY");
    let insert = |id: i64| json!({ "sql": format!("INSERT INTO {table} VALUES ($1)"), "params": [{"type": "int8", "value": id}] });
    // The third statement violates the primary key: the first two must be rolled back too.
    let (status, body) = transaction(json!([insert(1), insert(2), insert(1)]));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("23505"),
        "{body}"
    );
    let (_, rows) = sql(
        &format!("SELECT count(*)::int8 AS n FROM {table}"),
        json!([]),
    );
    assert_eq!(
        rows["rows"][0]["n"]["value"], 0,
        "rolled back rows are visible: {rows}"
    );

    let (status, body) = transaction(json!([insert(1), insert(2)]));
    assert_eq!(status, 200, "{body}");
    let (_, rows) = sql(
        &format!("SELECT count(*)::int8 AS n FROM {table}"),
        json!([]),
    );
    assert_eq!(rows["rows"][0]["n"]["value"], 2);
}

#[test]
fn a_rejected_statement_is_a_400_naming_the_sqlstate() {
    let (status, body) = sql("SELECT * FROM no_such_table_anywhere", json!([]));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("42P01"),
        "{body}"
    );
}

#[test]
fn key_value_set_get_and_missing_key() {
    let key = unique("kv");
    let url = format!("{}/kv/{key}", probe());
    assert_eq!(send("GET", &url, None).0, 404);
    let (status, _, _) = into_status(ureq::put(&url).send_string("hello"));
    assert_eq!(status, 204);
    let (status, _, body) = send("GET", &url, None);
    assert_eq!((status, body["value"].as_str()), (200, Some("hello")));
}

fn into_status(r: Result<ureq::Response, ureq::Error>) -> (u16, common::Headers, Value) {
    common::into_parts(r)
}

#[test]
fn concurrent_increments_give_the_exact_count() {
    let key = unique("counter");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{}/kv/{key}/incr", probe());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let (status, _, body) = send("POST", &url, None);
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let (_, _, body) = send("POST", &format!("{}/kv/{key}/incr?by=0", probe()), None);
    assert_eq!(body["value"], 200);
}

#[test]
fn compare_and_swap_has_exactly_one_winner() {
    let key = unique("cas");
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let url = format!("{}/kv/{key}/cas", probe());
            std::thread::spawn(move || {
                let (status, _, body) = send(
                    "POST",
                    &url,
                    Some(&json!({ "expected": null, "new": format!("v{i}") })),
                );
                assert_eq!(status, 200, "{body}");
                body["swapped"].as_bool().unwrap()
            })
        })
        .collect();
    let winners = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(winners, 1);
    // Swapping from the current value works; from a stale one it does not.
    let (_, _, current) = send("GET", &format!("{}/kv/{key}", probe()), None);
    let current = current["value"].as_str().unwrap().to_string();
    let cas = |expected: &str| {
        send(
            "POST",
            &format!("{}/kv/{key}/cas", probe()),
            Some(&json!({ "expected": expected, "new": "next" })),
        )
        .2["swapped"]
            .as_bool()
    };
    assert_eq!(cas("stale"), Some(false));
    assert_eq!(cas(&current), Some(true));
}

fn deliveries(id: &str) -> (u64, u64) {
    let (_, _, body) = send("GET", &format!("{}/delivered/{id}", probe()), None);
    (
        body["attempts"].as_u64().unwrap_or(0),
        body["delivered"].as_u64().unwrap_or(0),
    )
}

fn publish(key: &str, message: Value) {
    let (status, _, body) = send(
        "POST",
        &format!("{}/publish", probe()),
        Some(&json!({ "subject": format!("probe-events/{key}"), "body": message })),
    );
    assert_eq!(status, 202, "{body}");
}

/// Messages with one key share a partition, so once a final sentinel is delivered every earlier
/// message (and any redelivery of it) has been handled too.
fn publish_then_settle(key: &str, messages: &[Value]) {
    for message in messages {
        publish(key, message.clone());
    }
    let sentinel = unique("sentinel");
    publish(key, json!({ "id": sentinel }));
    eventually(
        "the sentinel message to be delivered",
        Duration::from_secs(90),
        || (deliveries(&sentinel).1 == 1).then_some(()),
    );
}

#[test]
fn each_published_message_reaches_the_component_exactly_once() {
    let key = unique("order");
    let ids: Vec<String> = (0..10).map(|i| unique(&format!("m{i}"))).collect();
    publish_then_settle(
        &key,
        &ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
    );
    for id in &ids {
        assert_eq!(deliveries(id), (1, 1), "message {id}");
    }
}

#[test]
fn a_refused_message_is_delivered_again() {
    let key = unique("retry");
    let id = unique("fail-once");
    publish_then_settle(&key, &[json!({ "id": id, "failOnce": true })]);
    assert_eq!(
        deliveries(&id),
        (2, 1),
        "first attempt refused, second accepted"
    );
}
