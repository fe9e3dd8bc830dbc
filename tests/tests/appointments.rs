//! Appointments through the gateway on a real lattice (SPEC.md "Appointments"): validation,
//! overlaps decided by the database (also for concurrent bookings), optimistic concurrency, and
//! patient names and deletions arriving from topic `patient`.
mod common;

use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, unique, Client};
use serde_json::{json, Value};

/// How long a patient event may take to reach appointments' copy of patients.
const PROPAGATION: Duration = Duration::from_secs(60);

/// `hours` after the start of a day a month from now (UTC), as RFC 3339.
fn at(hours: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = (now / 86_400 + 30) * 86_400;
    kit::time::rfc3339(day + (hours * 3600.0) as u64)
}

/// A new patient (created through patients) named `name`; returns its id.
fn patient(client: &Client, name: &str) -> String {
    let body = json!({
        "name": name,
        "email": format!("{}@example.test", unique("booked")),
        "address": "1 Test Street",
        "dateOfBirth": "1980-01-01",
        "registeredDate": "2026-01-15"
    });
    let (status, _, created) = client.patiently("POST", "/api/patients", Some(&body));
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

fn booking(patient: &str, start: f64, end: f64) -> Value {
    json!({ "patientId": patient, "startTime": at(start), "endTime": at(end), "reason": "Check-up" })
}

/// Books the first appointment of a new patient, right after registering it: appointments asks
/// patients at booking, so it knows the patient at once (SPEC.md; issue 17's read-your-writes).
fn first_booking(client: &Client, body: &Value) -> Value {
    let (status, headers, answer) = client.patiently("POST", "/api/appointments", Some(body));
    assert_eq!(status, 201, "booking right after registering: {answer}");
    let id = answer["id"].as_str().unwrap();
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.as_str());
    assert_eq!(location, Some(format!("/api/appointments/{id}").as_str()));
    answer
}

fn read(client: &Client, id: &str) -> Value {
    let (status, _, answer) = client.patiently("GET", &format!("/api/appointments/{id}"), None);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Appointments of `patient` starting between `from` and `to` hours (of the test day).
fn listed(client: &Client, patient: &str, from: f64, to: f64) -> Vec<Value> {
    let path = format!("/api/appointments?from={}&to={}", at(from), at(to));
    let (status, _, list) = client.patiently("GET", &path, None);
    assert_eq!(status, 200, "{list}");
    let all = list.as_array().expect("a JSON array").clone();
    let starts: Vec<&str> = all
        .iter()
        .map(|a| a["startTime"].as_str().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "not ordered by start: {starts:?}"
    );
    all.into_iter()
        .filter(|a| a["patientId"] == patient)
        .collect()
}

#[test]
fn appointments_are_booked_listed_changed_and_cancelled() {
    let client = Client::new_user("CLINICIAN");
    let name = unique("Grace Hopper");
    let patient = patient(&client, &name);
    let later = first_booking(&client, &booking(&patient, 10.0, 11.0));
    assert_eq!(later["patientName"], name.as_str());
    assert_eq!(
        (later["status"].as_str(), later["version"].as_i64()),
        (Some("SCHEDULED"), Some(1))
    );
    assert_eq!(later["startTime"], at(10.0));
    // Back to back with the first is not an overlap.
    let (status, _, earlier) = client.patiently(
        "POST",
        "/api/appointments",
        Some(&booking(&patient, 9.0, 10.0)),
    );
    assert_eq!(status, 201, "{earlier}");

    let ids: Vec<Value> = listed(&client, &patient, 8.0, 12.0)
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, [earlier["id"].clone(), later["id"].clone()]);
    assert!(
        listed(&client, &patient, 9.5, 12.0).len() == 1,
        "the window bounds the starts"
    );

    let id = later["id"].as_str().unwrap();
    let path = format!("/api/appointments/{id}");
    assert_eq!(read(&client, id), later);
    let mut change = booking(&patient, 13.0, 14.5);
    change["reason"] = json!("Moved to the afternoon");
    change["version"] = json!(1);
    let (status, _, changed) = client.patiently("PUT", &path, Some(&change));
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["version"].as_i64(), changed["endTime"].as_str()),
        (Some(2), Some(at(14.5).as_str()))
    );
    assert_eq!(read(&client, id), changed);
    // The same version again is stale now: refused, and nothing changes.
    change["reason"] = json!("A lost update");
    let (status, _, stale) = client.patiently("PUT", &path, Some(&change));
    assert_eq!(status, 409, "{stale}");
    assert_eq!(read(&client, id), changed);

    let earlier_path = format!("/api/appointments/{}", earlier["id"].as_str().unwrap());
    assert_eq!(client.patiently("DELETE", &earlier_path, None).0, 204);
    let cancelled = read(&client, earlier["id"].as_str().unwrap());
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["version"].as_i64()),
        (Some("CANCELLED"), Some(2))
    );
    assert_eq!(
        client.patiently("DELETE", &earlier_path, None).0,
        204,
        "cancelling twice is harmless"
    );
    let mut revive = booking(&patient, 9.0, 10.0);
    revive["version"] = json!(2);
    assert_eq!(
        client.patiently("PUT", &earlier_path, Some(&revive)).0,
        409,
        "a cancelled one stays cancelled"
    );
    // Its slot is free again.
    assert_eq!(
        client
            .patiently(
                "POST",
                "/api/appointments",
                Some(&booking(&patient, 9.0, 10.0))
            )
            .0,
        201
    );

    let unknown = "/api/appointments/123e4567-e89b-12d3-a456-426614179999";
    assert_eq!(client.patiently("GET", unknown, None).0, 404);
    assert_eq!(client.patiently("DELETE", unknown, None).0, 404);
    assert_eq!(client.patiently("PUT", unknown, Some(&change)).0, 404);
    for method in ["GET", "PUT", "DELETE"] {
        let (status, _, problem) =
            client.patiently(method, "/api/appointments/not-a-uuid", Some(&change));
        assert_eq!(
            (status, problem["status"].as_u64()),
            (400, Some(400)),
            "{method}"
        );
    }
}

#[test]
fn overlapping_bookings_are_refused_also_when_they_race() {
    let client = Client::new_user("CLINICIAN");
    let patient = patient(&client, "Overlap Tester");
    first_booking(&client, &booking(&patient, 10.0, 11.0));
    let (status, _, problem) = client.patiently(
        "POST",
        "/api/appointments",
        Some(&booking(&patient, 10.5, 11.5)),
    );
    assert_eq!(status, 409, "{problem}");
    // Moving another appointment onto it is refused the same way.
    let (_, _, other) = client.patiently(
        "POST",
        "/api/appointments",
        Some(&booking(&patient, 12.0, 13.0)),
    );
    let mut onto = booking(&patient, 10.25, 10.75);
    onto["version"] = other["version"].clone();
    let path = format!("/api/appointments/{}", other["id"].as_str().unwrap());
    assert_eq!(client.patiently("PUT", &path, Some(&onto)).0, 409);

    // Two overlapping bookings sent at once, several times: exactly one wins each time.
    for round in 0..5 {
        let start = 14.0 + 2.0 * round as f64;
        let barrier = Barrier::new(2);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let racers: Vec<_> = [start, start + 0.5]
                .into_iter()
                .map(|begin| {
                    let (client, barrier, body) =
                        (&client, &barrier, booking(&patient, begin, begin + 1.0));
                    s.spawn(move || {
                        barrier.wait();
                        client.patiently("POST", "/api/appointments", Some(&body)).0
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [201, 409], "round {round}: {statuses:?}");
    }
    let scheduled = listed(&client, &patient, 0.0, 24.0)
        .iter()
        .filter(|a| a["status"] == "SCHEDULED")
        .count();
    assert_eq!(scheduled, 2 + 5);
}

#[test]
fn bad_input_is_refused_precisely_and_changes_nothing() {
    let client = Client::new_user("CLINICIAN");
    let patient = patient(&client, "Validation Tester");
    let kept = first_booking(&client, &booking(&patient, 20.0, 21.0));
    let with = |field: &str, value: Value| {
        let mut body = booking(&patient, 8.0, 9.0);
        body[field] = value;
        body
    };
    let past = kit::time::rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 3600,
    );
    let cases = [
        (with("startTime", json!(past)), "startTime"),
        (with("endTime", json!(at(7.0))), "endTime"),
        (with("endTime", json!(at(8.0))), "endTime"),
        (with("endTime", json!(at(16.5))), "endTime"),
        (with("startTime", json!("tomorrow at nine")), "startTime"),
        (with("startTime", json!("2031-01-01T09:00:00")), "startTime"),
        (with("reason", json!("")), "reason"),
        (with("reason", json!("r".repeat(256))), "reason"),
        (with("patientId", json!("patient-7")), "patientId"),
        (with("patientId", Value::Null), "patientId"),
    ];
    for (body, field) in &cases {
        let (status, headers, problem) = client.patiently("POST", "/api/appointments", Some(body));
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(
            problem["errors"][field].is_string(),
            "{field} not named: {problem}"
        );
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("application/problem+json"));
    }
    // 8 hours exactly is allowed; a 255-character reason too (the bounds are inclusive).
    let mut longest = with("endTime", json!(at(16.0)));
    longest["reason"] = json!("r".repeat(255));
    assert_eq!(
        client
            .patiently("POST", "/api/appointments", Some(&longest))
            .0,
        201
    );

    let stranger = with("patientId", json!("123e4567-e89b-12d3-a456-426614179999"));
    assert_eq!(
        client
            .patiently("POST", "/api/appointments", Some(&stranger))
            .0,
        404
    );
    let (status, _, problem) = client.patiently_raw(
        "POST",
        "/api/appointments",
        "text/plain",
        "startTime=tomorrow",
    );
    assert_eq!(status, 415, "{problem}");

    // A bad update leaves the appointment as it was.
    let path = format!("/api/appointments/{}", kept["id"].as_str().unwrap());
    let mut bad = booking(&patient, 20.0, 19.0);
    bad["version"] = json!(1);
    assert_eq!(client.patiently("PUT", &path, Some(&bad)).0, 400);
    let mut unversioned = booking(&patient, 21.0, 22.0);
    unversioned.as_object_mut().unwrap().remove("version");
    assert_eq!(client.patiently("PUT", &path, Some(&unversioned)).0, 400);
    assert_eq!(read(&client, kept["id"].as_str().unwrap()), kept);

    // Nothing but the two good bookings exists for the patient.
    assert_eq!(listed(&client, &patient, 0.0, 24.0).len(), 2);
    for query in [
        "",
        "?from=2031-01-01T00:00:00Z",
        "?from=2031-01-02T00:00:00Z&to=2031-01-01T00:00:00Z",
        "?from=x&to=y",
    ] {
        let (status, _, problem) =
            client.patiently("GET", &format!("/api/appointments{query}"), None);
        assert_eq!(status, 400, "{query}: {problem}");
    }
}

#[test]
fn a_rename_reaches_appointments_and_a_deleted_patient_loses_future_ones() {
    let client = Client::new_user("CLINICIAN");
    let patient = patient(&client, "Before Rename");
    let booked = first_booking(&client, &booking(&patient, 11.0, 12.0));
    let id = booked["id"].as_str().unwrap().to_string();
    let renamed = unique("After Rename");
    let patient_path = format!("/api/patients/{patient}");
    let (_, _, mut record) = client.patiently("GET", &patient_path, None);
    record["name"] = json!(renamed);
    let (status, _, answer) = client.patiently("PUT", &patient_path, Some(&record));
    assert_eq!(status, 200, "{answer}");
    eventually("the new name on the appointment", PROPAGATION, || {
        (read(&client, &id)["patientName"] == renamed.as_str()).then_some(())
    });

    assert_eq!(client.patiently("DELETE", &patient_path, None).0, 204);
    let cancelled = eventually(
        "the appointment cancelled with its patient",
        PROPAGATION,
        || Some(read(&client, &id)).filter(|a| a["status"] == "CANCELLED"),
    );
    assert_eq!(
        cancelled["patientName"],
        renamed.as_str(),
        "the name stays on the record"
    );
    // No new appointment for a deleted patient.
    assert_eq!(
        client
            .patiently(
                "POST",
                "/api/appointments",
                Some(&booking(&patient, 15.0, 16.0))
            )
            .0,
        404
    );
}

#[test]
fn the_seed_appointments_of_john_doe_are_in_the_future() {
    let client = Client::new_user("CLINICIAN");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = format!(
        "/api/appointments?from={}&to={}",
        kit::time::rfc3339(now),
        kit::time::rfc3339(now + 20 * 86_400)
    );
    let (status, _, list) = client.patiently("GET", &path, None);
    assert_eq!(status, 200, "{list}");
    let seed: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["patientId"] == "123e4567-e89b-12d3-a456-426614174000")
        .collect();
    assert_eq!(seed.len(), 2, "{list}");
    assert!(seed
        .iter()
        .all(|a| a["patientName"] == "John Doe" && a["status"] == "SCHEDULED"));
}

/// Read your writes across services (issue 17): 50 patients each registered and booked with no
/// pause between, every booking 201 and under the name just registered; a patient deleted and
/// booked at once is refused.
#[test]
fn booking_right_after_registering_succeeds_and_right_after_deleting_is_refused() {
    let (pairs, figures) = common::register_then_book(50, &at(9.0), &at(9.5));
    common::report(&format!("create-then-book: {figures}"));
    let refused: Vec<&(u16, u16, Value)> = pairs
        .iter()
        .filter(|(created, booked, _)| (*created, *booked) != (201, 201))
        .collect();
    assert!(refused.is_empty(), "pairs not 201/201: {refused:?}");

    let client = Client::new_user("CLINICIAN");
    let gone = patient(&client, "Deleted Right Away");
    let (status, _, _) = client.patiently("DELETE", &format!("/api/patients/{gone}"), None);
    assert_eq!(status, 204);
    let (status, _, problem) =
        client.patiently("POST", "/api/appointments", Some(&booking(&gone, 9.0, 9.5)));
    assert_eq!(status, 404, "booking right after deleting: {problem}");
}
