//! Losing a host under load (issue 6), in a binary of its own that runs after `operations`
//! (cargo runs test binaries in name order): a kafka provider killed with its host can leave
//! one partition of a consumer group unconsumed for minutes (measured: analytics' partition
//! without a committed offset after the kill, while the others advanced; open in the note of
//! issue 16), which would stall the event counts the operations tests check exactly.
mod common;

use std::time::Duration;

use common::load::{Load, Outcome};

/// A host that is not the HTTP listener dies (SIGKILL, with its providers) under load. Only the
/// requests in flight on it may fail; wadm moves its share of every component to the survivor,
/// and spreads again when the host comes back.
#[test]
fn losing_a_host_fails_only_requests_in_flight() {
    const CLIENTS: usize = 4;
    // `/ready` crosses every service and provider, so every hop can meet the lost host.
    let load = Load::start("/ready", CLIENTS, 10);
    load.wait_for_answer("the platform to be ready", Duration::ZERO, Outcome::ok);

    let victim = common::xtask_output(&["host", "kill"]);
    // The kill happened before this instant: requests sent after it never met the lost host.
    let killed_by = load.now();
    common::xtask(&["settle"]);
    let whole_after = load.now() - killed_by;
    let after = load.now() + Duration::from_secs(2);
    load.wait_for_answer("answers after recovery", after, Outcome::ok);

    // The host comes back; wadm spreads again. Reported, not part of the loss above.
    let restarted_at = load.now();
    common::xtask(&["host", "start", &victim]);
    common::xtask(&["settle"]);
    let respread = load.now() - restarted_at;
    let (outcomes, ran) = load.finish();

    let (lost, rejoined): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.sent < restarted_at);
    let failed_while_lost = lost.iter().filter(|o| !o.ok()).count();
    let failed_rejoining = rejoined.iter().filter(|o| !o.ok()).count();
    common::report(&format!(
        "failover: {} requests in {:.1} s; host {victim} killed: {} requests, {failed_while_lost} failed, every instance back on the survivor and wadm Deployed {:.1} s later; host back: {} requests, {failed_rejoining} failed, spread again in {:.1} s",
        outcomes.len(),
        ran.as_secs_f64(),
        lost.len(),
        whole_after.as_secs_f64(),
        rejoined.len(),
        respread.as_secs_f64()
    ));
    // Each client has one request in flight at a time, so at most CLIENTS were on the lost host
    // when it died; anything sent later must have found the survivor.
    let late: Vec<&&Outcome> = lost
        .iter()
        .filter(|o| !o.ok() && o.sent > killed_by + Duration::from_millis(500))
        .collect();
    assert!(
        late.is_empty(),
        "requests sent after the host was lost failed: {late:?}"
    );
    assert!(
        failed_while_lost <= CLIENTS,
        "more failures than requests in flight: {failed_while_lost}"
    );
}
