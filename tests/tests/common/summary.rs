//! Reading analytics' summary through the gateway, for the tests that count events.
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Client;

/// A day in the 19th century that no other run registers patients on, most likely (each run
/// of the suite has its own database; this matters only on a long-lived dev stack). `offset`
/// tells apart the days one run needs.
pub fn unused_day(offset: u32) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_micros();
    format!(
        "{:04}-{:02}-{:02}",
        1800 + n % 150,
        1 + (n / 150) % 12,
        1 + (n / 1800 + offset) % 28
    )
}

pub fn summary(admin: &Client) -> Value {
    let (status, _, summary) = admin.patiently("GET", "/api/analytics/summary", None);
    assert_eq!(status, 200, "{summary}");
    summary
}

/// Patients registered on `day`, as the summary counts them.
pub fn registered_on(summary: &Value, day: &str) -> i64 {
    summary["registrationsByDay"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == day)
        .map_or(0, |d| d["count"].as_i64().unwrap())
}

pub fn total(summary: &Value, name: &str) -> i64 {
    summary[name].as_i64().unwrap()
}

/// Waits until analytics counts at least `target` patients registered on `day` (beyond
/// `before`), for as long as the count keeps rising: a backlog of events being worked through is
/// not a failure, a count that stops short is. Fails naming both numbers once the count has not
/// moved for a minute; returns the count.
pub fn counted_on(admin: &Client, day: &str, before: i64, target: i64) -> i64 {
    let stalled_after = std::time::Duration::from_secs(60);
    let mut last = (i64::MIN, std::time::Instant::now());
    loop {
        let now = registered_on(&summary(admin), day) - before;
        if now >= target {
            return now;
        }
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        if last.1.elapsed() >= stalled_after {
            panic!(
                "analytics' count for {day} stopped at {now} of {target} for {stalled_after:?}; \
                 its committed offsets on `patient`: {:?}; totals: {}",
                super::events::committed_offsets("analytics"),
                summary(admin)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
