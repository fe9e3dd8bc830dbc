//! A patient write never waits on, or fails because of, Kafka: with the broker stopped, creates
//! succeed, and once it is back every event arrives exactly once. Takes the broker away, so it
//! lives in its own test binary (binaries run one after another).
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::events::patient_events;
use common::{unique, xtask, Client};
use serde_json::json;

#[test]
fn events_written_while_kafka_is_down_arrive_once_after_it_returns() {
    let client = Client::new_user("CLINICIAN");
    xtask(&["broker", "stop"]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let patient = json!({
            "name": format!("Outage Patient {i}"),
            "email": format!("{}@example.test", unique("outage")),
            "address": "1 Broker Down Road",
            "dateOfBirth": "1980-01-01",
            "registeredDate": "2026-11-25"
        });
        let (status, _, created) = client.patiently("POST", "/api/patients", Some(&patient));
        assert_eq!(status, 201, "create {i} with Kafka down: {created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    xtask(&["broker", "start"]);

    let complete = |seen: &std::collections::HashMap<String, Vec<_>>| ids.iter().all(|id| seen.contains_key(id));
    let seen = patient_events(&ids, Duration::from_secs(120), complete);
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of 20 events never arrived: {missing:?}", missing.len());
    // Read the topic again from the start, a little after the last arrival, to catch repeats.
    let again = patient_events(&ids, Duration::from_secs(5), |_| false);
    for id in &ids {
        let events = &again[id];
        let distinct: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(events.len(), 1, "patient {id}: {} events, {} distinct ids", events.len(), distinct.len());
        assert_eq!(events[0].event_type, "PATIENT_CREATED");
    }
}
