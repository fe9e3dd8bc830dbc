//! The broker keeps what it acknowledged across a restart (issue 17, item 6), in a binary of its
//! own that cargo runs before `operations` and `outages_of_hosts` (binaries run in name order):
//! a Kafka provider killed with its host can leave one partition of a consumer group unconsumed
//! for minutes (tansu 0.6.0's group coordinator; docs/operations.md, known limits), and a
//! restart test after that would measure that stall, not the restart. Its precondition still
//! checks the group is settled, so a stall from any other cause fails it rather than hides.
mod common;

use std::time::Duration;

use common::events::{committed_offsets, patient_events, wait_until_settled};
use common::load::{as_fresh_admin, Load, Outcome, Request};
use common::summary::{counted_on, registered_on, summary, unused_day};
use common::{xtask, Client};
use serde_json::Value;

/// The broker keeps what it acknowledged across a restart (issue 17): with creates flowing, it is
/// stopped and started again. Every event produced before the stop is still on the topic, every
/// offset analytics had committed is still committed (none went back), no create failed, and
/// analytics counts exactly the patients created.
///
/// The restart comes once analytics' consumer group has settled. tansu 0.6.0's group coordinator
/// mishandles a restart in the middle of a rebalance (the rebalance an earlier test's broker
/// restart or provider restart set off): it can keep a departed member's assignment and leave
/// partitions unconsumed for minutes. That case is a known limit (docs/operations.md); its fix
/// upstream (nisshi 0.8) needs a newer Rust than this machine has.
#[test]
fn a_broker_restart_under_load_loses_no_event_and_no_offset() {
    wait_until_settled("analytics", Duration::from_secs(180));
    let admin = Client::seed_admin();
    let day = unused_day(3);
    let registered_before = registered_on(&summary(&admin), &day);
    let load_day = day.clone();
    let load = Load::start_with(4, 10, move |client, n| {
        as_fresh_admin(
            Request::post("/api/patients", common::new_patient(&load_day)),
            client,
            n,
        )
    });
    // Analytics has consumed and committed some of this run's events before the stop.
    counted_on(&admin, &day, registered_before, 1);
    let before = committed_offsets("analytics");
    xtask(&["broker", "stop"]);
    let stopped = load.now();
    xtask(&["broker", "start"]);
    let after = committed_offsets("analytics");
    let restarted = load.now();
    load.wait_for_answer("creates after the restart", restarted, Outcome::ok);
    let (outcomes, ran) = load.finish();

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    let ids: Vec<String> = outcomes
        .iter()
        .filter_map(|o| serde_json::from_str::<Value>(&o.body).ok())
        .filter_map(|body| body["id"].as_str().map(str::to_string))
        .collect();
    let seen = patient_events(&ids, Duration::from_secs(120), |seen| {
        ids.iter().all(|id| seen.contains_key(id))
    });
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let created = ids.len() as i64;
    let counted = counted_on(&admin, &day, registered_before, created);
    let went_back: Vec<(i32, i64, Option<i64>)> = before
        .iter()
        .filter(|(p, offset)| after.get(p).is_none_or(|now| now < offset))
        .map(|(p, offset)| (*p, *offset, after.get(p).copied()))
        .collect();
    common::report(&format!(
        "broker restart under load: {} creates in {:.1} s, {} failed; broker down for {:.1} s; {} events on the topic afterwards, {missing} missing; analytics' committed offsets {before:?} before, {after:?} after; analytics counted {counted} of {created}",
        outcomes.len(),
        ran.as_secs_f64(),
        failed.len(),
        (restarted - stopped).as_secs_f64(),
        ids.len() - missing,
    ));
    assert!(
        failed.is_empty(),
        "creates failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        missing, 0,
        "events acknowledged before the restart were lost"
    );
    assert!(
        went_back.is_empty(),
        "committed offsets lost or moved back (partition, before, after): {went_back:?}"
    );
    assert_eq!(
        counted, created,
        "analytics' count differs from the creates made"
    );
}
