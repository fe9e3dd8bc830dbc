//! Analytics through the gateway on a real lattice (SPEC.md "Analytics"): every patient event
//! counted exactly once, also when the topic delivers it again.
//!
//! Registrations count on their registered date, so each run uses dates no other test uses and
//! asserts exact counts there, whatever else the suite creates meanwhile.
mod common;

use std::time::Duration;

use common::events::{patient_events, publish};
use common::summary::{registered_on, summary, total, unused_day};
use common::{eventually, unique, Client};
use patient_events::PatientEvent;
use serde_json::json;

const PROPAGATION: Duration = Duration::from_secs(60);

#[test]
fn each_patient_event_counts_once_even_when_delivered_again() {
    let admin = Client::new_user("ADMIN");
    let clinician = Client::new_user("CLINICIAN");
    let (status, _, problem) = clinician.patiently("GET", "/api/analytics/summary", None);
    assert_eq!(status, 403, "{problem}");
    let day = unused_day(0);
    let before = summary(&admin);

    let ids: Vec<String> = (0..3)
        .map(|i| {
            let body = json!({
                "name": format!("Counted {i}"),
                "email": format!("{}@example.test", unique("counted")),
                "address": "1 Test Street",
                "dateOfBirth": "1800-01-01",
                "registeredDate": day,
            });
            let (status, _, created) = admin.patiently("POST", "/api/patients", Some(&body));
            assert_eq!(status, 201, "{created}");
            created["id"].as_str().unwrap().to_string()
        })
        .collect();
    let path = format!("/api/patients/{}", ids[0]);
    let (_, _, mut first) = admin.patiently("GET", &path, None);
    first["name"] = json!("Counted 0, renamed");
    assert_eq!(admin.patiently("PUT", &path, Some(&first)).0, 200);
    assert_eq!(
        admin
            .patiently("DELETE", &format!("/api/patients/{}", ids[2]), None)
            .0,
        204
    );

    let after = eventually("the five events counted", PROPAGATION, || {
        let now = summary(&admin);
        (registered_on(&now, &day) == 3
            && total(&now, "patientsUpdated") > total(&before, "patientsUpdated")
            && total(&now, "patientsDeleted") > total(&before, "patientsDeleted"))
        .then_some(now)
    });
    assert!(total(&after, "patientsCreated") >= total(&before, "patientsCreated") + 3);
    assert_eq!(
        total(&after, "activePatients"),
        total(&after, "patientsCreated") - total(&after, "patientsDeleted")
    );

    // The first patient's events as they are on the topic, delivered again: twice more each,
    // then a marker event (new id, on a day of its own) twice. Same key, same partition, so
    // once the marker is counted every copy before it has been consumed.
    let events = patient_events(&ids[..1], PROPAGATION, |seen| {
        seen.get(&ids[0]).is_some_and(|e| e.len() >= 2)
    });
    let originals = events.get(&ids[0]).cloned().unwrap_or_default();
    assert_eq!(
        originals.len(),
        2,
        "created and updated events of {}",
        ids[0]
    );
    let marker_day = unused_day(1);
    let marker = PatientEvent {
        event_id: unique("marker-event"),
        registered_date: marker_day.clone(),
        ..originals[0].clone()
    };
    let again: Vec<PatientEvent> = originals
        .iter()
        .chain(&originals)
        .cloned()
        .chain([marker.clone(), marker])
        .collect();
    let counted_before = summary(&admin);
    publish(&ids[0], &again);
    let redelivered = eventually("the marker counted", PROPAGATION, || {
        let now = summary(&admin);
        (registered_on(&now, &marker_day) > 0).then_some(now)
    });
    assert_eq!(
        registered_on(&redelivered, &marker_day),
        1,
        "the marker counted twice"
    );
    assert_eq!(
        registered_on(&redelivered, &day),
        3,
        "a redelivered created event counted again"
    );
    assert_eq!(
        total(&redelivered, "patientsUpdated"),
        total(&counted_before, "patientsUpdated"),
        "a redelivered update counted again"
    );
}
