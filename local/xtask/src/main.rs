//! `cargo xtask <command>`: the project's automation (the cargo-xtask pattern: Rust, not long
//! shell scripts). See `cargo xtask help`.
mod build;
mod faults;
mod join;
// The simulated machines of issue 19's multi-machine test.
mod machines;
mod manifest;
mod nats_client;
mod nats_nodes;
mod net;
mod operations;
mod patches;
mod paths;
mod process;
mod registry;
mod rotation;
mod secret_store;
mod security;
mod services;
mod signing;
mod stack;
mod store_roles;
mod tools;

use std::io::Read;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use stack::{Stack, StackConfig};

const USAGE: &str = "\
usage: cargo xtask <command>

  up [--hosts N] [--nats-nodes 3] [--registry] [--http-port P] [--rate-limit R]
     [--address A] [--zones z1,z2,...]
                                   install what is missing, build, start the lattice on
                                   127.0.0.1 and deploy the application (gateway on :4004);
                                   R replaces the 5 requests/s, burst 5 per-client limit;
                                   --nats-nodes 3 runs NATS as a cluster of three nodes that
                                   keeps every stream on all three; --registry pushes the
                                   artifacts to the lattice's OCI registry and deploys them
                                   from there (by tag and digest) instead of file://;
                                   --address: other machines reach NATS, the registry, the
                                   broker (and the manifest's Postgres and Redis) at this
                                   machine's address A, and every host serves HTTP;
                                   --zones: spread every component over these `zone` labels
                                   (machines that join say theirs: docs/deploy.md)
  down                             stop everything `up` started
  test [--only <file>[,<file>...]] unit tests, then end-to-end tests on a lattice of their own;
                                   --only runs just tests/tests/<file>.rs (no unit tests); with
                                   several files, in name order on one lattice, as a full run does
  tools                            only install/build the tools (wash, host, wadm, NATS)
  tool-path <host|wadm|wash|nats-server|tansu>
                                   print where that cached tool is (for `wash up --host-path`)
  swap <component> <wasm> [--manifest-only]
                                   replace a running component with another build, with no
                                   request lost: `wash update component` on every host, then a
                                   new manifest version naming the build (wadm's source of
                                   truth); --manifest-only rolls out through wadm alone
  provider restart <provider>      restart a provider (postgres, redis, kafka, ticker) host by
                                   host: each instance finishes its calls first, the next goes
                                   once the new one serves
  join-bundle <file> [--nats-node <address>]
                                   write what a host on another machine needs to join this
                                   lattice (NATS nodes, CA, host credentials, registry) to
                                   <file>, mode 600 (the lattice must run with --registry);
                                   with --nats-node, also what a NATS node listening on
                                   <address> needs to join the cluster (--nats-nodes 3)
  join <file> [--nats-node] [--no-host] [--label k=v ...] [--name N]
                                   on another machine: start the bundle's NATS node and/or a
                                   host that joins the lattice of that bundle with those
                                   labels; `leave [--name N]` stops them
                                   (or, with the bundle unpacked: `. ./wash-up.env` and
                                   `wash up`, docs/deploy.md)
  rotate <jwt-key|passwords|all>   replace the JWT signing key (tokens signed with the old one
                                   stay valid until they expire) and/or the Postgres and Redis
                                   passwords, while the platform serves
  secret put <key> <artifact> [lattice] < value
  audit verify [lattice]
                                   store an operator's secret (a managed store's account) in
                                   the lattice's secrets backend, readable by that component
                                   or provider alone (e.g. kafka-provider); the value is read
                                   from standard input, never from the command line
  wash <args>                      run the cached wash against the lattice `up` started
  status                           hosts and applications of that lattice
  bench                            benchmarks (bench/) on a lattice of their own; never pass/fail
                                   (with PM_NATS_URL: on that NATS, without TLS and credentials)

environment: PM_NATS_URL (use this NATS instead of starting one), PM_CACHE_DIR (tool cache)";

/// The lattice `up` manages; tests use their own.
const DEV_LATTICE: &str = "default";
const DEV_NATS_PORT: u16 = 4223;

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Progress line, with the time since the command started.
pub fn step(message: &str) {
    eprintln!("==> [{:>4}s] {message}", started().elapsed().as_secs());
}

fn main() -> ExitCode {
    started();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let (command, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match command {
        "up" => up(rest),
        "down" => Stack::existing(DEV_LATTICE).map_or_else(
            |_| {
                step("nothing to stop: no lattice was brought up from this checkout");
                Ok(())
            },
            |stack| stack.down(),
        ),
        "test" => match rest {
            [] => test(None),
            [flag, names] if flag == "--only" => test(Some(names.split(',').collect())),
            _ => bail!("usage: cargo xtask test [--only <end-to-end test file>[,<file>...]]"),
        },
        "bench" => bench(),
        "tools" => tools::ensure_all().map(|_| ()),
        // Where a cached tool is, for running it by hand: `wash up --host-path "$(cargo xtask
        // tool-path host)"` (docs/deploy.md).
        "tool-path" => {
            let tools = tools::ensure_all()?;
            let path = match rest {
                [name] if name == "host" => tools.host,
                [name] if name == "wadm" => tools.wadm,
                [name] if name == "wash" => tools.wash,
                [name] if name == "nats-server" => tools.nats_server,
                [name] if name == "tansu" => tools.tansu,
                _ => bail!("usage: cargo xtask tool-path <host|wadm|wash|nats-server|tansu>"),
            };
            println!("{}", path.display());
            Ok(())
        }
        // The `--config` arguments (one per line) that build a workspace (launchers, the
        // default, or providers) against our fixed crates (see local/xtask/src/patches.rs), for
        // building or locking it by hand.
        "patch-config" => {
            let workspace = match rest {
                [] => patches::Workspace::Launchers,
                [name] => name.parse()?,
                _ => bail!("usage: cargo xtask patch-config [launchers|providers]"),
            };
            patches::cargo_configs(workspace).map(|c| println!("{}", c.join("\n")))
        }
        // Used by the outage tests: take a lattice's broker down and bring it back.
        "broker" => match rest {
            [action, lattice] if action == "stop" => Stack::existing(lattice)?.stop_broker(),
            [action, lattice] if action == "start" => {
                Stack::existing(lattice)?.start_broker(&tools::ensure_all()?)
            }
            [action, lattice] if action == "pause" || action == "resume" => {
                Stack::existing(lattice)?.pause_broker(action == "pause")
            }
            _ => bail!("usage: cargo xtask broker <stop|start|pause|resume> <lattice>"),
        },
        // Used by the outage tests: stop a component (0) or bring it back, through wadm.
        "scale" => match rest {
            [component, instances, lattice] => Stack::existing(lattice)?.scale(
                &tools::ensure_all()?,
                component,
                instances
                    .parse()
                    .context("instances must be a whole number")?,
            ),
            _ => bail!("usage: cargo xtask scale <component> <instances> <lattice>"),
        },
        // Used by the failover test: lose a host (not the one with the HTTP listener) and get
        // it back; `settle` waits until wadm has everything in place again.
        "host" => match rest {
            [action, lattice] if action == "kill" => {
                let index = Stack::existing(lattice)?.kill_host()?;
                println!("{index}");
                Ok(())
            }
            [action, index, lattice] if action == "start" => Stack::existing(lattice)?
                .ensure_host(&tools::ensure_all()?, index.parse().context("host index")?),
            [action, lattice] if action == "pause" => {
                let index = Stack::existing(lattice)?.pause_host()?;
                println!("{index}");
                Ok(())
            }
            [action, index, lattice] if action == "resume" => {
                Stack::existing(lattice)?.resume_host(index.parse().context("host index")?)
            }
            _ => bail!(
                "usage: cargo xtask host <kill|pause <lattice> | start|resume <index> <lattice>>"
            ),
        },
        // Used by the machines test: lose a simulated machine and get it back.
        "machine" => match rest {
            [action, index, lattice] => {
                let stack = Stack::existing(lattice)?;
                let index = index.parse().context("machine index")?;
                match action.as_str() {
                    "kill" => stack.kill_machine(index),
                    "start" => stack.start_machine(index),
                    _ => bail!("usage: cargo xtask machine <kill|start> <index> <lattice>"),
                }
            }
            _ => bail!("usage: cargo xtask machine <kill|start> <index> <lattice>"),
        },
        "provider" => match rest {
            [action, provider, lattice @ ..] if action == "restart" => {
                let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
                let restarted =
                    Stack::existing(lattice)?.restart_provider(&tools::ensure_all()?, provider)?;
                println!("{restarted}");
                Ok(())
            }
            _ => bail!("usage: cargo xtask provider restart <provider> [lattice]"),
        },
        "settle" => match rest {
            [lattice] => {
                let took = Stack::existing(lattice)?
                    .settle(&tools::ensure_all()?, Duration::from_secs(180))?;
                println!("{:.1}", took.as_secs_f64());
                Ok(())
            }
            _ => bail!("usage: cargo xtask settle <lattice>"),
        },
        "swap" => {
            let (positional, flags): (Vec<&String>, Vec<&String>) =
                rest.iter().partition(|a| !a.starts_with("--"));
            let [component, wasm, lattice @ ..] = positional.as_slice() else {
                bail!("usage: cargo xtask swap <component> <wasm file> [--manifest-only]");
            };
            let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
            let manifest_only = flags.iter().any(|f| *f == "--manifest-only");
            Stack::existing(lattice)?.swap(
                &tools::ensure_all()?,
                component,
                std::path::Path::new(wasm.as_str()),
                !manifest_only,
            )
        }
        "join-bundle" => {
            const USAGE: &str =
                "usage: cargo xtask join-bundle <file> [--nats-node <address>] [lattice]";
            let node: Option<std::net::IpAddr> = optional_flag(rest, "--nats-node")?;
            let positional: Vec<&String> = rest
                .iter()
                .enumerate()
                .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || rest[i - 1] != "--nats-node"))
                .map(|(_, a)| a)
                .collect();
            match positional.as_slice() {
                [file, lattice @ ..] if lattice.len() <= 1 => {
                    let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
                    Stack::existing(lattice)?
                        .write_join_bundle(std::path::Path::new(file.as_str()), node)
                }
                _ => bail!(USAGE),
            }
        }
        "join" => {
            let Some(bundle) = rest.first().filter(|b| !b.starts_with("--")) else {
                bail!("usage: cargo xtask join <bundle> [--nats-node] [--no-host] [--name N] [--label key=value ...]");
            };
            let options = join::JoinOptions {
                labels: rest
                    .windows(2)
                    .filter(|pair| pair[0] == "--label")
                    .map(|pair| pair[1].clone())
                    .collect(),
                nats_node: rest.iter().any(|a| a == "--nats-node"),
                host: !rest.iter().any(|a| a == "--no-host"),
            };
            let name: String = flag(rest, "--name", "joined".to_string())?;
            join::Joined::new(&name).start(
                &tools::ensure_all()?,
                std::path::Path::new(bundle),
                &options,
            )
        }
        "leave" => {
            let name: String = flag(rest, "--name", "joined".to_string())?;
            let stopped = join::Joined::new(&name).stop()?;
            step(if stopped {
                "the joined host left the lattice"
            } else {
                "no joined host was running"
            });
            Ok(())
        }
        "rotate" => match rest {
            [what, lattice @ ..] if lattice.len() <= 1 => {
                let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
                let (stack, tools) = (Stack::existing(lattice)?, tools::ensure_all()?);
                match what.as_str() {
                    "jwt-key" => stack.rotate_jwt_key(&tools),
                    "passwords" => stack.rotate_store_passwords(&tools),
                    "all" => stack
                        .rotate_jwt_key(&tools)
                        .and_then(|()| stack.rotate_store_passwords(&tools)),
                    other => bail!("nothing called `{other}` rotates (jwt-key, passwords, all)"),
                }
            }
            _ => bail!("usage: cargo xtask rotate <jwt-key|passwords|all> [lattice]"),
        },
        "audit" => match rest {
            [action, lattice @ ..] if action == "verify" && lattice.len() <= 1 => {
                let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
                let verdict = Stack::existing(lattice)?.verify_audit_trail()?;
                println!("{verdict}");
                Ok(())
            }
            _ => bail!("usage: cargo xtask audit verify [lattice]"),
        },
        "secret" => match rest {
            [action, key, artifact, lattice @ ..] if action == "put" && lattice.len() <= 1 => {
                let lattice = lattice.first().map_or(DEV_LATTICE, |l| l.as_str());
                let (stack, tools) = (Stack::existing(lattice)?, tools::ensure_all()?);
                let mut value = String::new();
                std::io::stdin()
                    .read_to_string(&mut value)
                    .context("reading the secret's value from standard input")?;
                // A value piped by `echo` ends in a newline that is not part of it.
                let value = value.strip_suffix('\n').unwrap_or(&value);
                stack.put_operator_secret(&tools, key, artifact, value)
            }
            _ => bail!(
                "usage: cargo xtask secret put <key> <component or provider> [lattice] < value"
            ),
        },
        "wash" => {
            let tools = tools::ensure_all()?;
            let stack = Stack::existing(DEV_LATTICE)?;
            process::run_visible(stack.wash(&tools).args(rest))
        }
        "status" => {
            let tools = tools::ensure_all()?;
            let stack = Stack::existing(DEV_LATTICE)?;
            process::run_visible(stack.wash(&tools).args(["get", "hosts"]))?;
            process::run_visible(stack.wash(&tools).args(["app", "list"]))
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    Ok(optional_flag(args, name)?.unwrap_or(default))
}

/// The value after `name` in `args`, parsed; None when `name` is absent.
fn optional_flag<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let value = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            value
                .parse()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("{name}: `{value}` is not valid"))
        }
    }
}

fn external_nats() -> Result<Option<std::net::SocketAddr>> {
    let Ok(url) = std::env::var("PM_NATS_URL") else {
        return Ok(None);
    };
    let hostport = url.trim_start_matches("nats://");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .with_context(|| format!("PM_NATS_URL `{url}` is not host:port"))?
        .next()
        .with_context(|| format!("PM_NATS_URL `{url}` resolves to no address"))?;
    Ok(Some(addr))
}

fn up(args: &[String]) -> Result<()> {
    let hosts: usize = flag(args, "--hosts", 1)?;
    if !(1..=16).contains(&hosts) {
        bail!("--hosts must be between 1 and 16");
    }
    let nats_nodes: usize = flag(args, "--nats-nodes", 1)?;
    if nats_nodes != 1 && !(3..=nats_nodes::MAX_NODES).contains(&nats_nodes) {
        bail!(
            "--nats-nodes is 1, or 3 to {} (a cluster keeps each stream on three nodes)",
            nats_nodes::MAX_NODES
        );
    }
    let stack = Stack::new(StackConfig {
        lattice: DEV_LATTICE.into(),
        nats_port: DEV_NATS_PORT,
        external_nats: external_nats()?,
        nats_nodes,
        registry: args.iter().any(|a| a == "--registry"),
        http_port: flag(args, "--http-port", 4004)?,
        probe_port: 4014,
        broker_port: 9092,
        database: manifest::DEFAULT_DATABASE.into(),
        key_prefix: manifest::DEFAULT_KEY_PREFIX.into(),
        rate_limit: match flag(args, "--rate-limit", 0u32)? {
            0 => None,
            n => Some(n),
        },
        hosts,
        postgres_port: manifest::DEFAULT_POSTGRES_PORT,
        redis_port: manifest::DEFAULT_REDIS_PORT,
        seed_admin_password: stack::seed_admin_password(),
        machines: None,
        address: optional_flag(args, "--address")?,
        zones: flag(args, "--zones", String::new())?
            .split(',')
            .map(str::trim)
            .filter(|z| !z.is_empty())
            .map(str::to_string)
            .collect(),
    });
    // Fail on bad configuration before spending minutes on builds.
    stack.preflight()?;
    if let Some(addr) = stack.config.external_nats {
        net::require_usable_nats(&net::nats_info(addr)?, addr)?;
    }
    services::ensure_all()?;
    let tools = tools::ensure_all()?;
    build::artifacts(&tools)?;
    stack.up(&tools)?;
    stack.wait_for_zones(Duration::from_secs(30 * 60))?;
    deploy_platform(&stack, &tools)?;
    let gateway = stack.gateway_addr();
    step("the platform is up");
    println!(
        "\n  console:  http://{gateway}/  (sign in as testuser@test.com; API reference at /reference)\n  gateway:  http://{gateway}  (try: curl http://{gateway}/ready)\n  metrics:  {}\n  lattice:  `{}` on NATS {}\n  inspect:  cargo xtask status   |   cargo xtask wash app status {}\n  logs:     {}\n  stop:     cargo xtask down\n",
        stack.metrics_urls().join("  "),
        stack.config.lattice,
        stack.nats_addr(),
        manifest::APP_NAME,
        stack.dir.display()
    );
    Ok(())
}

fn deploy_platform(stack: &Stack, tools: &tools::Tools) -> Result<()> {
    stack.put_secrets(tools)?;
    let manifest = paths::repo().join(build::MANIFESTS[0]);
    stack.deploy(tools, &manifest, manifest::APP_NAME, || {
        stack.platform_ready()
    })
}

/// Unit tests, then the end-to-end suite against a lattice of its own; with `only`, just those
/// end-to-end test files (for working on one part without the whole run). A name that is not a
/// test file is refused before anything is built.
fn test(only: Option<Vec<&str>>) -> Result<()> {
    // Every test file but the machines test runs against one lattice on this machine; the
    // machines test gets a lattice of its own, spread over simulated machines.
    let files = e2e_test_files()?;
    let (on_machines, here): (Vec<String>, Vec<String>) = files
        .into_iter()
        .filter(|file| only.as_ref().is_none_or(|o| o.contains(&file.as_str())))
        .partition(|file| file == MACHINES_TEST);
    if let Some(unknown) = only
        .iter()
        .flatten()
        .find(|o| !on_machines.iter().chain(&here).any(|file| file == *o))
    {
        bail!("no end-to-end test file tests/tests/{unknown}.rs");
    }
    if only.is_none() {
        step("unit tests");
        process::run_visible(Command::new("cargo").current_dir(paths::repo()).args([
            "test",
            "--workspace",
            "--exclude",
            "e2e",
            "--exclude",
            "bench",
        ]))?;
        // The providers are tested against real servers: the NATS client against nats-server,
        // TLS stores against servers that speak only TLS (made with openssl), Kafka over TLS
        // and SASL against tansu behind socat.
        services::ensure_programs(&[("openssl", "openssl"), ("socat", "socat")])?;
        process::run_visible(
            build::providers_cargo("test")?
                .arg("--workspace")
                .env("PM_NATS_SERVER", tools::nats_server()?)
                .env("PM_TANSU", tools::broker()?),
        )?;
    }
    let validator = tools::openapi_validator()?;
    let schemathesis = tools::schemathesis()?;
    // The console's browser test drives Debian's Chromium through its ChromeDriver.
    services::ensure_programs(&[
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
    ])?;
    let tools = tools::ensure_all()?;
    let hot_swap_dir = build::hot_swap_builds(&tools)?;
    let run_files = |stack: &Stack, env: Vec<(&str, String)>, files: &[String]| {
        step(&format!(
            "end-to-end tests against lattice `{}`",
            stack.config.lattice
        ));
        let outcome = process::run_visible(
            Command::new("cargo")
                .current_dir(paths::repo())
                // Every test binary runs even after one fails, so a run reports all failures.
                .args(["test", "--no-fail-fast", "-p", "e2e"])
                .args(files.iter().flat_map(|file| ["--test", file.as_str()]))
                .envs(env)
                .env("PM_OPENAPI_VALIDATOR_PATH", &validator)
                .env("PM_SCHEMATHESIS_PATH", &schemathesis)
                .env("PM_CHROMIUM", "/usr/bin/chromium")
                .env("PM_CHROMEDRIVER", "/usr/bin/chromedriver")
                .env("PM_HOT_SWAP_DIR", &hot_swap_dir),
        );
        // The operations tests' figures (requests, failures, recovery times), whatever passed.
        if let Ok(figures) = std::fs::read_to_string(stack.dir.join("figures.txt")) {
            step("figures from the operations tests");
            eprintln!("{}", figures.trim_end());
        }
        // After the whole run, while every log is still there: no secret value in any of them.
        step("searching the run's logs and files for secret values");
        let searched = stack.search_for_leaked_secrets(&tools);
        if let Ok(summary) = &searched {
            step(summary);
        }
        outcome.and(searched.map(|_| ()))
    };
    // Two hosts in two zones: the failover test loses one of them.
    let outcome = match here.is_empty() {
        true => Ok(()),
        false => on_test_stack("pmtest", 2, None, |stack, env| run_files(stack, env, &here)),
    };
    // Run even when the first lattice's tests failed, so a run reports every failure.
    let on_machines = match on_machines.is_empty() {
        true => Ok(()),
        false => {
            // One machine more than the lattice starts on: the test joins it the way
            // docs/deploy.md says, from a join bundle (a NATS node, and a host by `wash up`).
            let machines = machines::Machines::create(std::process::id(), MACHINES + 1)?;
            on_test_stack(
                "pmmach",
                1,
                Some(machines.plan(MACHINES)),
                |stack, mut env| {
                    let spare = MACHINES + 1;
                    env.push((
                        "PM_SPARE_MACHINE",
                        format!("{} {}", machines.namespace(spare), machines.address(spare)),
                    ));
                    run_files(stack, env, &on_machines)
                },
            )
            // `machines` is dropped here, after the stack's processes have stopped.
        }
    };
    outcome.and(on_machines)
}

/// The test file (tests/tests/<name>.rs) that runs on simulated machines, and how many join its
/// lattice before it runs (each with a NATS node and a host).
const MACHINES_TEST: &str = "machines";
const MACHINES: usize = 3;

/// The end-to-end test files (tests/tests/*.rs), by name.
fn e2e_test_files() -> Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(paths::repo().join("tests/tests"))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The benchmarks in bench/, against a lattice of their own.
fn bench() -> Result<()> {
    on_test_stack("pmbench", 1, None, |stack, env| {
        step("provider benchmark");
        // The console's page load is measured in Debian's Chromium.
        services::ensure_programs(&[
            ("chromium", "chromium"),
            ("chromedriver", "chromium-driver"),
        ])?;
        process::run_visible(
            Command::new("cargo")
                .current_dir(paths::repo())
                .args(["run", "--release", "-p", "bench"])
                .envs(env)
                .env("PM_CHROMIUM", "/usr/bin/chromium")
                .env("PM_CHROMEDRIVER", "/usr/bin/chromedriver"),
        )?;
        // Scale-up (issue 6): from the request to wadm reporting the new instances placed, then
        // to every service answering through the gateway again.
        let tools = tools::ensure_all()?;
        let started = std::time::Instant::now();
        stack.scale(&tools, "patients", 16)?;
        net::wait_for(
            "the platform to serve after scaling",
            Duration::from_secs(60),
            || stack.platform_ready().map(|()| true),
        )?;
        step(&format!(
            "scale-up of patients 8 -> 16: serving {:.1} s after the request",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    })
}

/// Brings up a lattice with its own name, NATS, ports, database and key prefix, deploys the
/// platform and the provider probe, runs `f` with the environment that describes the stack, and
/// tears it all down whatever the outcome (keeping the logs when `f` failed).
fn on_test_stack(
    name: &str,
    hosts: usize,
    machines: Option<machines::MachinePlan>,
    f: impl FnOnce(&Stack, Vec<(&str, String)>) -> Result<()>,
) -> Result<()> {
    services::ensure_all()?;
    let tools = tools::ensure_all()?;
    build::artifacts(&tools)?;
    let run_id = std::process::id();
    let lattice = format!("{name}-{run_id}");
    // The tests reach the data stores through fault proxies they can switch (`faults.rs`); a
    // benchmark goes straight to them.
    let (stores, faults_addr) = if name != "pmbench" {
        // Simulated machines reach them at this machine's bridge address.
        let bind = machines
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |plan| plan.services);
        let (proxies, control) = faults::start(
            bind.into(),
            &[
                ("postgres", net::loopback(manifest::DEFAULT_POSTGRES_PORT)),
                ("redis", net::loopback(manifest::DEFAULT_REDIS_PORT)),
            ],
        )?;
        (
            (proxies["postgres"].port(), proxies["redis"].port()),
            Some(control),
        )
    } else {
        (
            (
                manifest::DEFAULT_POSTGRES_PORT,
                manifest::DEFAULT_REDIS_PORT,
            ),
            None,
        )
    };
    let stack = Stack::new(StackConfig {
        lattice: lattice.clone(),
        nats_port: net::free_port()?,
        // A benchmark may run on a NATS of the user's, as `up` may: without TLS and
        // credentials, it tells what those cost (bench/README.md).
        external_nats: if name == "pmbench" {
            external_nats()?
        } else {
            None
        },
        // Across simulated machines, as docs/deploy.md brings a lattice up across machines:
        // `up --registry --nats-nodes 3 --address <this machine's> --zones ...` here, then each
        // machine joins with a NATS node and a host of its own (`Stack::join_machine`).
        nats_nodes: machines.as_ref().map_or(1, |_| 3),
        registry: machines.is_some(),
        http_port: net::free_port()?,
        probe_port: net::free_port()?,
        broker_port: net::free_port()?,
        database: format!("{name}_{run_id}"),
        key_prefix: format!("{lattice}:"),
        // Benchmarks measure the request path, not the limiter's refusals.
        rate_limit: (name == "pmbench").then_some(1_000_000),
        hosts,
        postgres_port: stores.0,
        redis_port: stores.1,
        // Random unless set: the run then searches its logs and files for it (a documented
        // fixture would be found in the tests' own sources).
        seed_admin_password: match std::env::var("PM_SEED_ADMIN_PASSWORD") {
            Ok(password) => password,
            Err(_) => security::random_hex(12)?,
        },
        address: machines.as_ref().map(|plan| plan.services.into()),
        zones: match &machines {
            // The lattice machine's own host (the stack runs one), then each machine's.
            Some(plan) => std::iter::once(Stack::host_zone(1).to_string())
                .chain((1..=plan.addresses.len()).map(Stack::machine_zone))
                .collect(),
            None => Vec::new(),
        },
        machines,
    });
    let outcome = (|| {
        stack.up(&tools)?;
        // As docs/deploy.md has it: `up` waits for a host in every zone it spreads over while
        // the machines join, then deploys.
        std::thread::scope(|scope| {
            let joining =
                scope.spawn(|| (1..=stack.machine_count()).try_for_each(|i| stack.join_machine(i)));
            let waited = stack.wait_for_zones(Duration::from_secs(300));
            joining
                .join()
                .map_err(|_| anyhow::anyhow!("joining the machines panicked"))?
                .and(waited)
        })?;
        deploy_platform(&stack, &tools)?;
        if stack.config.machines.is_some() {
            let took = stack.settle(&tools, Duration::from_secs(300))?;
            step(&format!(
                "every component spread over the machines {:.1} s after the deployment",
                took.as_secs_f64()
            ));
        }
        // The probe's listener is on loopback, out of reach on simulated machines (the machines
        // test does not use it).
        if stack.config.machines.is_none() {
            stack.deploy(
                &tools,
                &paths::repo().join(build::MANIFESTS[1]),
                "provider-probe",
                || stack.probe_ready(),
            )?;
        }
        let gateways: Vec<String> = stack
            .gateway_addrs()
            .iter()
            .map(|addr| format!("http://{addr}"))
            .collect();
        let mut env = vec![
            ("PM_GATEWAY_URL", format!("http://{}", stack.gateway_addr())),
            ("PM_GATEWAY_URLS", gateways.join(" ")),
            (
                "PM_PROBE_URL",
                format!("http://127.0.0.1:{}", stack.config.probe_port),
            ),
            ("PM_XTASK", std::env::current_exe()?.display().to_string()),
            ("PM_LATTICE", lattice.clone()),
            ("PM_STACK_DIR", stack.dir.display().to_string()),
            ("PM_NATS_ADDR", stack.nats_addr().to_string()),
            ("PM_KAFKA_BROKERS", stack.broker_addr().to_string()),
            ("PM_DATABASE", stack.config.database.clone()),
            ("PM_KEY_PREFIX", stack.config.key_prefix.clone()),
            (
                "PM_SEED_ADMIN_PASSWORD",
                stack.config.seed_admin_password.clone(),
            ),
            (
                "PM_JWT_SECRET_FILE",
                stack.dir.join("jwt.secret").display().to_string(),
            ),
        ];
        if let Some(addr) = faults_addr {
            env.push(("PM_FAULTS_ADDR", addr.to_string()));
        }
        f(&stack, env)
    })();
    // The copy of the lattice's CA its providers wrote (providers/support/src/lattice_ca.rs).
    let ca = stack
        .secrets()
        .and_then(|secrets| std::fs::read_to_string(secrets.ca()).ok());
    stack.down()?;
    stack.drop_data();
    // The hosts' artifact caches (`HostLaunch`), this stack's and its machines'.
    remove_matching(&std::env::temp_dir(), &format!("pm-{lattice}-"));
    if let Some(ca) = ca {
        remove_copies(&std::env::temp_dir(), "pm-lattice-ca-", &ca);
    }
    let joined = paths::build().join("joined");
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&stack.dir);
        remove_matching(&joined, &format!("{lattice}-"));
    } else {
        step(&format!(
            "logs kept in {} (and the joined machines' in {}/{lattice}-*)",
            stack.dir.display(),
            joined.display()
        ));
    }
    outcome
}

/// Removes the files of `dir` whose name starts with `prefix` and that hold exactly `content`.
fn remove_copies(dir: &std::path::Path, prefix: &str, content: &str) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && std::fs::read_to_string(&path).is_ok_and(|held| held == content)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes every entry of `dir` whose name starts with `prefix`.
fn remove_matching(dir: &std::path::Path, prefix: &str) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
