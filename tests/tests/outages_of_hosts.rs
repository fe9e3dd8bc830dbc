//! Losing a host under load (issue 6), in a binary of its own that runs after `operations`
//! (cargo runs test binaries in name order): a Kafka provider killed with its host leaves one
//! member of each consumer group dead, and tansu 0.6.0's coordinator then keeps that member's
//! partitions unconsumed (docs/operations.md, known limits) until a live member rejoins the
//! group, which the Kafka provider does when it sees such a partition stall (up to a minute
//! and more). The operations tests count events exactly and would measure that pause.
mod common;

use std::time::{Duration, Instant};

use common::events::wait_until_settled;
use common::failover::lose_and_return;
use common::load::Load;
use common::Client;

/// A host that is not the HTTP listener dies (SIGKILL, with its providers) under load. Only the
/// requests in flight on it may fail; wadm moves its share of every component to the survivor,
/// and spreads again when the host comes back; then analytics' consumer group consumes all its
/// partitions again.
#[test]
fn losing_a_host_fails_only_requests_in_flight() {
    const CLIENTS: usize = 4;
    // `/ready` crosses every service and provider, so every hop can meet the lost host.
    let load = Load::start("/ready", CLIENTS, 10);
    // `host kill` returns once the host's processes have exited.
    let (victim, failover) = lose_and_return(
        load,
        || common::xtask_output(&["host", "kill"]),
        |victim| common::xtask(&["host", "start", victim]),
    );
    common::report(&format!(
        "failover: {}",
        failover.figures(&format!("host {victim}"))
    ));
    every_partition_is_consumed_again();
    failover.assert_only_in_flight_failed(CLIENTS);
}

/// After the host came back, every partition of a consumer group is consumed again: events of
/// patients registered now (their ids spread them over the partitions) all reach analytics,
/// whose group commits every partition to its end. Without the Kafka provider's rejoin on a
/// stalled partition, the dead member's partitions would wait for good.
fn every_partition_is_consumed_again() {
    let admin = Client::seed_admin();
    let day = common::summary::unused_day(9);
    for _ in 0..24 {
        let (status, _, body) =
            admin.patiently("POST", "/api/patients", Some(&common::new_patient(&day)));
        assert_eq!(status, 201, "{body}");
    }
    let created = Instant::now();
    wait_until_settled("analytics", Duration::from_secs(180));
    common::report(&format!(
        "consumer groups after the host loss: every partition of `patient` consumed by analytics \
         {:.1} s after the last of 24 creates",
        created.elapsed().as_secs_f64()
    ));
}
