//! A patient write never fails because Kafka or billing is down: with either stopped, creates
//! succeed, and once it is back every event arrives exactly once and every patient has its
//! billing account. These take servers away, so they run one at a time in their own binary
//! (binaries run one after another).
mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::events::patient_events;
use common::{eventually, unique, xtask, Client};
use serde_json::{json, Value};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn patient(i: usize, what: &str) -> Value {
    json!({
        "name": format!("{what} Patient {i}"),
        "email": format!("{}@example.test", unique("outage")),
        "address": "1 Outage Road",
        "dateOfBirth": "1980-01-01",
        "registeredDate": "2026-11-25"
    })
}

/// Creates 20 patients (each must succeed) and returns their ids.
fn create_twenty(client: &Client, what: &str) -> Vec<String> {
    (0..20)
        .map(|i| {
            let (status, _, created) =
                client.patiently("POST", "/api/patients", Some(&patient(i, what)));
            assert_eq!(status, 201, "create {i} with {what} down: {created}");
            created["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn billing_status(client: &Client, patient_id: &str) -> (u16, Value) {
    let (status, _, body) =
        client.patiently("GET", &format!("/api/billing/accounts/{patient_id}"), None);
    (status, body)
}

#[test]
fn accounts_of_patients_created_while_billing_is_stopped_open_when_it_returns() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let client = Client::new_user("CLINICIAN");
    let seed = "123e4567-e89b-12d3-a456-426614174000";
    xtask(&["scale", "billing", "0"]);
    // With no billing instance the gateway's call to it fails: the client gets a 503 (the host
    // answers it, see local/xtask/src/patches.rs), never a dropped connection.
    let stopped = |path: &str| client.status_if_answered("GET", path) == Some(503);
    let seed_account = format!("/api/billing/accounts/{seed}");
    eventually("billing to answer 503", Duration::from_secs(60), || {
        stopped(&seed_account).then_some(())
    });
    let ids = create_twenty(&client, "Billing Outage");
    for id in &ids[..3] {
        // `patiently` fails the test on a dropped connection, and waits out a 429.
        let (status, headers, problem) =
            client.patiently("GET", &format!("/api/billing/accounts/{id}"), None);
        assert_eq!(
            (status, &problem["status"]),
            (503, &json!(503)),
            "{problem}"
        );
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/problem+json"));
    }
    xtask(&["scale", "billing", "4"]);
    for id in &ids {
        let account = eventually("the account to be opened", Duration::from_secs(120), || {
            let (status, account) = billing_status(&client, id);
            (status == 200).then_some(account)
        });
        assert_eq!(
            (account["patientId"].as_str(), account["status"].as_str()),
            (Some(id.as_str()), Some("ACTIVE"))
        );
    }
}

#[test]
fn events_written_while_kafka_is_down_arrive_once_after_it_returns() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let client = Client::new_user("CLINICIAN");
    xtask(&["broker", "stop"]);
    let ids = create_twenty(&client, "Kafka Outage");
    // Booking needs no event (appointments asks patients): registered and booked at once, with
    // no broker at all.
    let (pairs, figures) =
        common::register_then_book(50, "2031-03-03T09:00:00Z", "2031-03-03T09:30:00Z");
    xtask(&["broker", "start"]);
    common::report(&format!(
        "create-then-book with the broker stopped: {figures}"
    ));
    let refused: Vec<&(u16, u16, Value)> = pairs
        .iter()
        .filter(|(created, booked, _)| (*created, *booked) != (201, 201))
        .collect();
    assert!(
        refused.is_empty(),
        "pairs not 201/201 with the broker stopped: {refused:?}"
    );

    let complete = |seen: &std::collections::HashMap<String, Vec<_>>| {
        ids.iter().all(|id| seen.contains_key(id))
    };
    let seen = patient_events(&ids, Duration::from_secs(120), complete);
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of 20 events never arrived: {missing:?}",
        missing.len()
    );
    // Read the topic again from the start, a little after the last arrival, to catch repeats.
    let again = patient_events(&ids, Duration::from_secs(5), |_| false);
    for id in &ids {
        let events = &again[id];
        let distinct: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            events.len(),
            1,
            "patient {id}: {} events, {} distinct ids",
            events.len(),
            distinct.len()
        );
        assert_eq!(events[0].event_type, "PATIENT_CREATED");
    }
}
