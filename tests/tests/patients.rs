//! Patients and billing through the gateway on a real lattice (SPEC.md "Patients", "Billing").
mod common;

use std::time::Duration;

use common::events::patient_events;
use common::{eventually, unique, Client};
use serde_json::{json, Value};

fn body(name: &str) -> Value {
    json!({
        "name": name,
        "email": format!("{}@example.test", unique("patient")),
        "address": "1 Test Street, Springfield",
        "dateOfBirth": "1990-04-01",
        "registeredDate": "2026-01-15"
    })
}

/// Creates a patient and returns its JSON.
fn create(client: &Client, patient: &Value) -> Value {
    let (status, headers, created) = client.patiently("POST", "/api/patients", Some(patient));
    assert_eq!(status, 201, "{created}");
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone());
    assert_eq!(
        location,
        Some(format!("/api/patients/{}", created["id"].as_str().unwrap()))
    );
    created
}

#[test]
fn a_patient_is_created_read_updated_and_deleted() {
    let client = Client::new_user("CLINICIAN");
    let sent = body("Ada Lovelace");
    let created = create(&client, &sent);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["email"], sent["email"]);
    assert_eq!(created["dateOfBirth"], "1990-04-01");
    let path = format!("/api/patients/{id}");

    let (status, _, read) = client.patiently("GET", &path, None);
    assert_eq!((status, &read), (200, &created));

    // Read after write: the cached copy above must not be served again.
    let mut changed = sent.clone();
    changed["name"] = json!("Augusta Ada King");
    changed["address"] = json!("12 St James's Square, London");
    let (status, _, updated) = client.patiently("PUT", &path, Some(&changed));
    assert_eq!(status, 200, "{updated}");
    for _ in 0..5 {
        let (status, _, read) = client.patiently("GET", &path, None);
        assert_eq!(status, 200);
        assert_eq!(
            read["name"], "Augusta Ada King",
            "a stale read after the update"
        );
        assert_eq!(read["address"], "12 St James's Square, London");
    }

    let (status, _, _) = client.patiently("DELETE", &path, None);
    assert_eq!(status, 204);
    let (status, _, gone) = client.patiently("GET", &path, None);
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["status"], 404);
    assert_eq!(client.patiently("DELETE", &path, None).0, 404);
    assert_eq!(client.patiently("PUT", &path, Some(&changed)).0, 404);
}

#[test]
fn every_validation_rule_is_a_400_naming_the_field_and_stores_nothing() {
    let client = Client::new_user("CLINICIAN");
    let marker = unique("Invalid");
    let with = |field: &str, value: Value| {
        let mut b = body(&marker);
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = body(&marker);
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases = [
        ("name", without("name")),
        ("name", with("name", json!(""))),
        ("name", with("name", json!("x".repeat(101)))),
        ("email", without("email")),
        ("email", with("email", json!("not-an-email"))),
        ("address", without("address")),
        ("dateOfBirth", without("dateOfBirth")),
        ("dateOfBirth", with("dateOfBirth", json!("2999-01-01"))),
        ("dateOfBirth", with("dateOfBirth", json!("01/04/1990"))),
        ("registeredDate", without("registeredDate")),
        (
            "registeredDate",
            with("registeredDate", json!("2026-02-30")),
        ),
    ];
    for (field, patient) in cases {
        let (status, headers, problem) = client.patiently("POST", "/api/patients", Some(&patient));
        assert_eq!(status, 400, "{field}: {problem}");
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/problem+json")));
        assert!(problem["errors"][field].is_string(), "{field}: {problem}");
    }
    let (status, _, not_json) = client.patiently("POST", "/api/patients", None);
    assert!(status == 400 || status == 415, "{status} {not_json}");
    let (_, _, page) =
        client.patiently("GET", &format!("/api/patients?searchValue={marker}"), None);
    assert_eq!(
        page["totalElements"], 0,
        "an invalid request stored something"
    );
}

#[test]
fn duplicate_emails_are_409_on_create_and_update() {
    let client = Client::new_user("CLINICIAN");
    let first = create(&client, &body("First Duplicate"));
    let second = create(&client, &body("Second Duplicate"));
    let mut same = body("Third Duplicate");
    same["email"] = json!(first["email"].as_str().unwrap().to_uppercase());
    let (status, _, problem) = client.patiently("POST", "/api/patients", Some(&same));
    assert_eq!(status, 409, "{problem}");
    let mut update = body("Second Duplicate");
    update["email"] = first["email"].clone();
    let path = format!("/api/patients/{}", second["id"].as_str().unwrap());
    assert_eq!(client.patiently("PUT", &path, Some(&update)).0, 409);
    let (_, _, unchanged) = client.patiently("GET", &path, None);
    assert_eq!(unchanged["email"], second["email"]);
}

#[test]
fn lists_page_sort_and_search_case_insensitively() {
    let client = Client::new_user("CLINICIAN");
    let tag = unique("Zq").replace('-', "");
    for name in ["b", "A", "c"] {
        create(&client, &body(&format!("{tag} {name}")));
    }
    let search = tag.to_lowercase();
    let (status, _, page) = client.patiently(
        "GET",
        &format!("/api/patients?searchValue={search}&size=2&page=1&sort=desc&sortField=name"),
        None,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["totalElements"].as_u64(), page["totalPages"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (page["page"].as_u64(), page["size"].as_u64()),
        (Some(1), Some(2))
    );
    let names: Vec<&str> = page["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{tag} c"), format!("{tag} b")]);

    let (_, _, unsearched) = client.patiently("GET", "/api/patients?size=100", None);
    assert!(
        unsearched["totalElements"].as_u64().unwrap() >= 15,
        "the seed's patients: {unsearched}"
    );
    for bad in [
        "page=0",
        "size=101",
        "sort=sideways",
        "sortField=address",
        "colour=red",
    ] {
        let (status, _, problem) = client.patiently("GET", &format!("/api/patients?{bad}"), None);
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}

#[test]
fn the_seed_patients_are_loaded() {
    let client = Client::new_user("CLINICIAN");
    let (status, _, john) = client.patiently(
        "GET",
        "/api/patients/123e4567-e89b-12d3-a456-426614174000",
        None,
    );
    assert_eq!(status, 200, "{john}");
    assert_eq!(john["name"], "John Doe");
    let (status, _, isabella) = client.patiently(
        "GET",
        "/api/patients/223e4567-e89b-12d3-a456-426614174014",
        None,
    );
    assert_eq!(
        (status, isabella["name"].as_str()),
        (200, Some("Isabella Walker"))
    );
    assert_eq!(
        client.patiently("GET", "/api/patients/not-a-uuid", None).0,
        400
    );
}

#[test]
fn a_new_patient_gets_a_billing_account_that_delete_closes() {
    let client = Client::new_user("CLINICIAN");
    let created = create(&client, &body("Billing Patient"));
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/billing/accounts/{id}");
    let account = eventually(
        "the billing account to open",
        Duration::from_secs(30),
        || {
            let (status, _, account) = client.patiently("GET", &path, None);
            (status == 200).then_some(account)
        },
    );
    assert_eq!(account["patientId"], id.as_str());
    assert_eq!(account["status"], "ACTIVE");
    assert!(account["accountId"].as_str().is_some_and(|a| a.len() == 36));
    assert_eq!(
        client
            .patiently("DELETE", &format!("/api/patients/{id}"), None)
            .0,
        204
    );
    eventually(
        "the billing account to close",
        Duration::from_secs(30),
        || {
            let (_, _, account) = client.patiently("GET", &path, None);
            (account["status"] == "CLOSED").then_some(())
        },
    );
    assert_eq!(
        client.patiently("GET", "/api/billing/accounts/42", None).0,
        400
    );
    let unknown = "/api/billing/accounts/00000000-0000-4000-8000-000000000000";
    assert_eq!(client.patiently("GET", unknown, None).0, 404);
}

#[test]
fn each_write_publishes_its_event_in_order() {
    let client = Client::new_user("CLINICIAN");
    let sent = body("Event Patient");
    let created = create(&client, &sent);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/patients/{id}");
    let mut renamed = sent.clone();
    renamed["name"] = json!("Event Patient Renamed");
    assert_eq!(client.patiently("PUT", &path, Some(&renamed)).0, 200);
    assert_eq!(client.patiently("DELETE", &path, None).0, 204);

    let ids = [id.clone()];
    let seen = patient_events(&ids, Duration::from_secs(60), |seen| {
        seen.get(&id).is_some_and(|events| events.len() >= 3)
    });
    let events = seen.get(&id).cloned().unwrap_or_default();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_DELETED"]
    );
    assert_eq!(events[0].name, "Event Patient");
    assert_eq!(events[1].name, "Event Patient Renamed");
    assert_eq!(events[2].email, sent["email"].as_str().unwrap());
    let mut event_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 3, "each event has its own id");
    assert!(events.iter().all(|e| e.occurred_at.ends_with('Z')));
}
