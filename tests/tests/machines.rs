//! The lattice across machines (issue 19): `cargo xtask test` runs this file on a lattice of its
//! own, brought up the way docs/deploy.md says: `up --registry --nats-nodes 3 --address` on this
//! machine (wadm, the secrets backend, the registry, the broker and three NATS nodes, one host),
//! then three simulated machines (Linux network namespaces on a bridge the run creates and
//! removes, local/xtask/src/machines.rs) joined with `join-bundle --nats-node` and `join
//! --nats-node`: each runs a NATS node of the cluster and a host of its own zone that pulls what
//! it runs from the registry, and serves HTTP. The data stores are reached over the bridge.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// One test, so its two parts never run at once: each changes which hosts the lattice has.
#[test]
fn the_lattice_spans_machines() {
    let gateways = gateways();
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    losing_a_machine_fails_only_requests_in_flight_and_its_return_fails_none(&gateways);
    a_host_joins_from_another_machine_with_wash_up(&gateways);
}

/// Machine 3 (its NATS node and host together) dies under load sent through the lattice
/// machine's listener. Only the requests in flight on it may fail; wadm stays or returns to
/// Deployed with every component on the machines left; their listeners serve; the machine coming
/// back (joining again as it first did) is absorbed without a failed request.
fn losing_a_machine_fails_only_requests_in_flight_and_its_return_fails_none(gateways: &[String]) {
    const CLIENTS: usize = 4;
    const VICTIM: usize = 3;
    // Every machine takes traffic, and the whole platform answers through each.
    for gateway in gateways {
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
    for gateway in gateways {
        assert_eq!(ready(gateway), 200, "{gateway}/ready after the return");
    }
}

/// docs/deploy.md, "Adding a machine", on the spare machine (a fourth namespace, where
/// nothing of the lattice runs): a join bundle with a NATS node for that machine's address,
/// unpacked there; `cargo xtask join --nats-node --no-host` starts the node, which joins the
/// cluster; `. ./wash-up.env` and `wash up` with the platform's host start a host connected to it.
/// Nothing but the bundle comes from the lattice's machine. The host joins with its labels; wadm
/// starts on it every provider the lattice's hosts run (each pulled from the registry with the
/// bundle's credentials, over the new node); the application stays deployed; `wash stop host`,
/// as the operator, and `cargo xtask leave` take it all out again with every listener still
/// serving.
fn a_host_joins_from_another_machine_with_wash_up(gateways: &[String]) {
    let spare = std::env::var("PM_SPARE_MACHINE").expect("PM_SPARE_MACHINE is not set");
    let (namespace, address) = spare.split_once(' ').expect("namespace and address");
    let lattice = std::env::var("PM_LATTICE").unwrap();
    let dir = PathBuf::from(std::env::var("PM_STACK_DIR").expect("PM_STACK_DIR")).join("wash-up");
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let tar = dir.join("bundle.tar");
    common::xtask(&["join-bundle", tar.to_str().unwrap(), "--nats-node", address]);

    // On the spare machine, from here on.
    let started = Instant::now();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&bundle));
    let joined_name = format!("{lattice}-spare");
    let xtask = std::env::var("PM_XTASK").unwrap();
    run(Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(&xtask)
        .arg("join")
        .arg(&tar)
        .args(["--nats-node", "--no-host", "--name", &joined_name]));
    let node_joined = started.elapsed();
    // The operator's shell there: nothing of this test's environment but a temporary directory
    // the run removes (the host caches what it pulls there).
    let tmp = std::env::temp_dir().join(format!("pm-{lattice}-wash-up"));
    std::fs::create_dir_all(&tmp).unwrap();
    run(Command::new("ip")
        .args(["netns", "exec", namespace, "sh", "-c"])
        .arg(
            ". ./wash-up.env && \"$WASH\" up --detached --nats-connect-only --disable-wadm \
             --host-path \"$HOST_BIN\" --label zone=d --label pm.host=wash-up",
        )
        .current_dir(&bundle)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", dir.join("home"))
        .env("TMPDIR", &tmp)
        .env("WASH", common::tool_path("wash"))
        .env("HOST_BIN", common::tool_path("host")));

    let id = common::eventually("the wash up host to join", Duration::from_secs(60), || {
        wash(&["get", "hosts"])["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["labels"]["pm.host"] == "wash-up")
            .map(|h| {
                assert_eq!(h["labels"]["zone"], "d", "{h}");
                h["id"].as_str().unwrap().to_string()
            })
    });
    let host_joined = started.elapsed();
    // The providers the lattice's own hosts run (daemon scalers: every host runs each).
    let wanted = providers_on(&host_labelled("1"));
    assert!(wanted.len() >= 4, "machine 1 runs {wanted:?}");
    common::eventually(
        "the wash up host to run every provider",
        Duration::from_secs(120),
        || (providers_on(&id) == wanted).then_some(()),
    );
    let serving = started.elapsed();
    common::eventually(
        "the application to stay deployed with the new host",
        Duration::from_secs(60),
        || {
            (wash(&["app", "status", "patient-management"])["status"]["status"]["type"]
                == "deployed")
                .then_some(())
        },
    );
    common::report(&format!(
        "joining machine: NATS node in the cluster after {:.1} s, wash up host joined after {:.1} s, \
         running every provider after {:.1} s",
        node_joined.as_secs_f64(),
        host_joined.as_secs_f64(),
        serving.as_secs_f64()
    ));

    // `wash stop host` (the control interface), not `wash down --host-id`: wash 0.39's `down`
    // reads the credentials from `WASMCLOUD_CTL_*` only and, without them, skips the hosts and
    // still reports success (measured: the host stayed).
    wash(&["stop", "host", &id]);
    common::eventually("the wash up host to leave", Duration::from_secs(60), || {
        let hosts = wash(&["get", "hosts"]);
        (!hosts["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["id"] == id.as_str()))
        .then_some(())
    });
    common::xtask_alone(&["leave", "--name", &joined_name]);
    for gateway in gateways {
        assert_eq!(
            ready(gateway),
            200,
            "{gateway}/ready after the joined machine left"
        );
    }
}

/// Plain `wash <args> -o json` as the lattice's operator, set up the way docs/operations.md
/// ("Working with plain wash") says.
fn wash(args: &[&str]) -> serde_json::Value {
    let secrets = PathBuf::from(std::env::var("PM_STACK_DIR").unwrap()).join("secrets");
    let nats: std::net::SocketAddr = std::env::var("PM_NATS_ADDR").unwrap().parse().unwrap();
    let out = run(Command::new(common::tool_path("wash"))
        .args(args)
        .args(["-o", "json"])
        .env(
            "HOME",
            secrets.join("..").join("wash-up").join("operator-home"),
        )
        .env("WASMCLOUD_CTL_HOST", nats.ip().to_string())
        .env("WASMCLOUD_CTL_PORT", nats.port().to_string())
        .env("WASMCLOUD_LATTICE", std::env::var("PM_LATTICE").unwrap())
        .env("WASH_CTL_CREDS", secrets.join("operator.creds"))
        .env("WASH_CTL_TLS_CA_FILE", secrets.join("ca.pem")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("wash {args:?}: {e}: {out}"))
}

/// The id of the host whose `pm.host` label is `label`.
fn host_labelled(label: &str) -> String {
    wash(&["get", "hosts"])["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["labels"]["pm.host"] == label)
        .and_then(|h| h["id"].as_str())
        .unwrap_or_else(|| panic!("no host labelled pm.host={label}"))
        .to_string()
}

/// The ids of the providers host `id` runs, sorted.
fn providers_on(id: &str) -> Vec<String> {
    let inventory = wash(&["get", "inventory", id]);
    let mut ids: Vec<String> = inventory["inventories"][0]["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Runs `command`, requiring success, and returns its stdout.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
