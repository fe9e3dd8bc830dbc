//! The lattice across machines (issue 19): `cargo xtask test` runs this file on a lattice of its
//! own, spread over three simulated machines (Linux network namespaces on a bridge the run
//! creates and removes, local/xtask/src/machines.rs). Each machine runs a node of the NATS
//! cluster and a host that pulls what it runs from the lattice's OCI registry; each serves HTTP.
//! The data stores, the broker, the registry, wadm and the secrets backend stay on this machine,
//! reached over the bridge.
mod common;

use std::time::Duration;

use common::failover::{failed, lose_and_return};
use common::load::Load;

/// The gateways of the machines (PM_GATEWAY_URLS), machine 1 first.
fn gateways() -> Vec<String> {
    std::env::var("PM_GATEWAY_URLS")
        .expect("PM_GATEWAY_URLS is not set: run with `cargo xtask test`")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn ready(gateway: &str) -> u16 {
    common::get(&format!("{gateway}/ready")).0
}

/// Machine 3 (its NATS node and host together) dies under load sent through machine 1's
/// listener. Only the requests in flight on it may fail; wadm stays or returns to Deployed with
/// every component on the two left; the listeners of the machines left serve; the machine coming
/// back is absorbed without a failed request.
#[test]
fn losing_a_machine_fails_only_requests_in_flight_and_its_return_fails_none() {
    const CLIENTS: usize = 4;
    const VICTIM: usize = 3;
    let gateways = gateways();
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    // Every machine takes traffic, and the whole platform answers through each.
    for gateway in &gateways {
        common::eventually(
            &format!("{gateway} to be ready"),
            Duration::from_secs(60),
            || (ready(gateway) == 200).then_some(()),
        );
    }
    // Every component is on every machine (`settle` requires each live zone, one per machine,
    // to run some of each) before anything is lost.
    common::xtask(&["settle"]);

    let load = Load::start("/ready", CLIENTS, 10);
    let (_, failover) = lose_and_return(
        load,
        || {
            common::xtask(&["machine", "kill", &VICTIM.to_string()]);
            VICTIM.to_string()
        },
        |machine| common::xtask(&["machine", "start", machine]),
    );
    common::report(&format!(
        "machines: {}",
        failover.figures(&format!("machine {VICTIM} (NATS node and host)"))
    ));
    failover.assert_only_in_flight_failed(CLIENTS);
    let back = failover.after_return();
    assert!(
        failed(&back).is_empty(),
        "requests failed while machine {VICTIM} rejoined: {:?}",
        failed(&back)
    );
    // Every listener serves again, the returned machine's too.
    for gateway in &gateways {
        assert_eq!(ready(gateway), 200, "{gateway}/ready after the return");
    }
}
