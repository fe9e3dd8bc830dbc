//! Operating the lattice while it serves (issue 6): a component replaced by another build, a host
//! lost, and providers restarted, each under a bounded load whose every answer is checked. Each
//! changes the whole lattice, so they run one at a time. Figures are printed, never asserted on as timings.
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::load::{Load, Outcome};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn build_of(outcome: &Outcome) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(&outcome.body).ok()?;
    Some(body["build"].as_str().unwrap_or("plain").to_string())
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| !o.ok()).collect()
}

/// Hot swap, both ways operators do it: `wash update component` on every host then the manifest
/// (`cargo xtask swap`), and back through a new manifest version alone (`--manifest-only`).
/// At least 200 requests/s throughout, and not one may fail.
#[test]
fn hot_swap_under_load_loses_no_request() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let next = std::env::var("PM_HOT_SWAP_WASM").expect("PM_HOT_SWAP_WASM is not set");
    let plain = std::path::Path::new(&next).with_file_name("gateway.wasm");
    let plain = plain.to_str().unwrap();

    let load = Load::start("/health", 8, 40);
    load.wait_for_answer("the plain build to answer", Duration::ZERO, |o| {
        build_of(o).as_deref() == Some("plain")
    });

    common::xtask(&["swap", "gateway", &next]);
    let swapped = load.now();
    load.wait_for_answer("the new build to answer", swapped, |o| {
        build_of(o).as_deref() == Some("hot-swap-check")
    });
    let settled = load.now() + Duration::from_secs(1);
    load.wait_for_answer("answers a second after the swap", settled, Outcome::ok);

    let swapping_back = load.now();
    common::xtask(&["swap", "gateway", plain, "--manifest-only"]);
    let back = load.now();
    load.wait_for_answer("the plain build to answer again", back, |o| {
        build_of(o).as_deref() == Some("plain")
    });
    let settled_back = load.now() + Duration::from_secs(1);
    load.wait_for_answer(
        "answers a second after swapping back",
        settled_back,
        Outcome::ok,
    );

    let (outcomes, ran) = load.finish();
    let failed = failures(&outcomes);
    let rate = outcomes.len() as f64 / ran.as_secs_f64();
    common::report(&format!(
        "hot swap: {} requests in {:.1} s ({rate:.0}/s), {} failed; in-place swap then manifest-only swap back",
        outcomes.len(),
        ran.as_secs_f64(),
        failed.len()
    ));
    assert!(
        failed.is_empty(),
        "requests failed during the swaps: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        rate >= 200.0,
        "the load ran at {rate:.0} requests/s, below the 200/s the check needs"
    );
    // Once each swap had settled, only the build it installed answered.
    let build_after = |from: Duration, to: Duration| -> Vec<String> {
        let mut builds: Vec<String> = outcomes
            .iter()
            .filter(|o| o.sent >= from && o.sent < to)
            .filter_map(build_of)
            .collect();
        builds.dedup();
        builds
    };
    assert_eq!(
        build_after(settled, swapping_back),
        vec!["hot-swap-check".to_string()]
    );
    assert_eq!(build_after(settled_back, ran), vec!["plain".to_string()]);
}

/// A host that is not the HTTP listener dies (SIGKILL, with its providers) under load. Only the
/// requests in flight on it may fail; wadm moves its share of every component to the survivor,
/// and spreads again when the host comes back.
#[test]
fn losing_a_host_fails_only_requests_in_flight() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// Providers restarted host by host under load (`cargo xtask provider restart`). Each instance
/// drains: NATS hands new calls to the other host's instance, the calls already routed to it are
/// still taken (the drain lasts until the server confirmed it), those it took run to the end, and
/// only then does it exit. So no request fails.
#[test]
fn restarting_providers_loses_no_call() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // `/ready` calls Postgres through every service and Redis through the gateway and patients.
    let load = Load::start("/ready", 8, 20);
    load.wait_for_answer("the platform to be ready", Duration::ZERO, Outcome::ok);

    let mut restarts = Vec::new();
    let mut instances = 0;
    for provider in ["postgres", "redis"] {
        let started = load.now();
        let restarted: usize = common::xtask_output(&["provider", "restart", provider])
            .parse()
            .expect("xtask prints how many instances it restarted");
        instances += restarted;
        restarts.push(format!(
            "{provider} ({restarted} instances) {:.1} s",
            (load.now() - started).as_secs_f64()
        ));
    }
    let after = load.now() + Duration::from_secs(1);
    load.wait_for_answer("answers after the restarts", after, Outcome::ok);

    let (outcomes, ran) = load.finish();
    let failed = failures(&outcomes);
    common::report(&format!(
        "provider restarts: {} requests in {:.1} s, {} failed; restarted host by host: {}",
        outcomes.len(),
        ran.as_secs_f64(),
        failed.len(),
        restarts.join(", ")
    ));
    assert!(instances >= 2, "the test needs every provider on two hosts");
    assert!(
        failed.is_empty(),
        "{} requests failed over {instances} instance restarts: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
