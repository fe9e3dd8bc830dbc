//! One wasmCloud host for the patient-management lattice, built on the `wasmcloud-host` crate.
//!
//! Why a launcher of our own instead of the `wasmcloud` binary: the binary is distributed from
//! GitHub releases, which this project cannot reach; the crate is on crates.io. The launcher
//! sets exactly what the platform relies on: files may be loaded (images are `file://` paths
//! produced by the build on one machine) or pulled from the lattice's OCI registry with its
//! credentials, the built-in http-server provider is on, and labels come from flags
//! or the environment so several hosts with different labels (`zone=a`, `zone=b`) can join one
//! lattice and wadm's spread scalers can place components by label.
mod metrics;
mod wash_up;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;
use wasmcloud_host::wasmbus::{host_config::Host as HostConfig, Features, Host};

#[derive(Parser, Debug)]
#[command(
    name = "pm-host",
    about = "wasmCloud host for the patient-management lattice"
)]
struct Args {
    /// NATS server carrying the lattice's control and RPC traffic (NATS 2.10+ with JetStream).
    #[arg(long, env = "PM_NATS_URL", default_value = "nats://127.0.0.1:4223")]
    nats_url: wasmcloud_host::url::Url,
    /// NATS credentials (a `.creds` file: user JWT and seed) for the control connection: control
    /// commands, events, the lattice's key-value buckets, secrets requests.
    #[arg(long, env = "PM_CTL_CREDS", conflicts_with = "ctl_jwt")]
    ctl_creds: Option<PathBuf>,
    /// The control user's JWT and seed themselves, instead of `--ctl-creds` (what `wash up`
    /// passes: wash_up.rs).
    #[arg(long, env = "PM_CTL_JWT", requires = "ctl_seed", hide = true)]
    ctl_jwt: Option<String>,
    #[arg(long, env = "PM_CTL_SEED", requires = "ctl_jwt", hide = true)]
    ctl_seed: Option<String>,
    /// NATS credentials for the RPC connection: wRPC calls, and the connection of every provider
    /// this host starts (the host hands them this user).
    #[arg(long, env = "PM_RPC_CREDS", conflicts_with = "rpc_jwt")]
    rpc_creds: Option<PathBuf>,
    #[arg(long, env = "PM_RPC_JWT", requires = "rpc_seed", hide = true)]
    rpc_jwt: Option<String>,
    #[arg(long, env = "PM_RPC_SEED", requires = "rpc_jwt", hide = true)]
    rpc_seed: Option<String>,
    /// The CA that signed the NATS server's certificate; with it, both connections require TLS
    /// (as a `tls://` URL does).
    #[arg(long, env = "PM_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Subject prefix of the lattice's secrets backends (wasmCloud secrets, `nats-kv`).
    #[arg(long, env = "PM_SECRETS_TOPIC", default_value = "wasmcloud.secrets")]
    secrets_topic: String,
    /// Lattice name; every host, wadm and wash of one deployment must agree on it.
    #[arg(long, env = "WASMCLOUD_LATTICE", default_value = "default")]
    lattice: String,
    /// Host label as key=value; repeat the flag for several labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Labels from the environment, comma separated: `zone=a,tier=web`.
    #[arg(long, env = "PM_HOST_LABELS", default_value = "")]
    labels_env: String,
    /// Address of the host's admin endpoint (`/livez`, `/readyz`), used as a readiness check.
    #[arg(long, env = "PM_HOST_ADMIN")]
    http_admin: Option<SocketAddr>,
    /// How long the host's NATS client waits for a request's reply (control and RPC clients).
    #[arg(long, env = "PM_RPC_TIMEOUT_MS", default_value_t = 2000)]
    rpc_timeout_ms: u64,
    /// The most one call a component makes (to another component or a provider, over wRPC) may
    /// take end to end, from sending it to its last result. A call to a component that declares
    /// `result<_, wrpc:rpc/error.error>` as its result (the gateway's calls to services) returns
    /// that error when this passes; other calls trap the caller. Read by the host's runtime from
    /// the environment (see `call_timeout` in local/xtask/src/patches.rs).
    #[arg(long, env = "PM_CALL_TIMEOUT_MS", default_value_t = 10000)]
    call_timeout_ms: u64,
    /// The most one invocation of a component may run before the host stops it (a component
    /// that loops, or waits on something that never comes). Longer than the call timeout, so a
    /// caller outlives the calls it makes and can answer for them.
    #[arg(long, env = "PM_MAX_EXECUTION_MS", default_value_t = 30000)]
    max_execution_ms: u64,
    /// Seconds between the host's heartbeats. wadm counts a host as gone (and re-places its
    /// components and providers elsewhere) once it has missed heartbeats for wadm's
    /// `WADM_CLEANUP_INTERVAL`, so that must be several of these: the lattice's wadm forgets a
    /// host after 20 s (local/xtask/src/stack.rs, HOST_EXPIRY_SECS).
    #[arg(long, env = "PM_HEARTBEAT_SECS", default_value_t = 5)]
    heartbeat_secs: u64,
    /// Whether a call to a component with an instance on this host goes through memory (the
    /// default) or, like a call to anything elsewhere, over NATS. At run time SIGUSR1 turns
    /// local calls off and SIGUSR2 on again (for comparing the two, as the bench does).
    #[arg(long, env = "PM_LOCAL_CALLS", default_value_t = true, action = clap::ArgAction::Set)]
    local_calls: bool,
    /// Serve Prometheus metrics (per route, and of this host process) on this address.
    #[arg(long, env = "PM_METRICS_ADDR")]
    metrics: Option<SocketAddr>,
    /// Log as JSON lines (one object per event) instead of human-readable text.
    #[arg(long, env = "PM_STRUCTURED_LOGGING", default_value_t = false)]
    structured_logging: bool,
    /// The OCI registry (`host:port`) images are pulled from with `--oci-user`'s credentials.
    #[arg(long, env = "PM_OCI_REGISTRY")]
    oci_registry: Option<String>,
    #[arg(long, env = "PM_OCI_USER")]
    oci_user: Option<String>,
    /// A file holding the registry user's password (not the password itself: argv is public).
    #[arg(long, env = "PM_OCI_PASSWORD_FILE", conflicts_with = "oci_password")]
    oci_password_file: Option<PathBuf>,
    /// The password itself, from the environment only (what `wash up` passes on).
    #[arg(long, env = "PM_OCI_PASSWORD", hide = true, hide_env_values = true)]
    oci_password: Option<String>,
    /// Reach `--oci-registry` over plain HTTP (a registry on the lattice's own network).
    #[arg(long, env = "PM_OCI_INSECURE", default_value_t = false)]
    oci_insecure: bool,
}

/// Where images may come from besides `file://`: the registry and its credentials, if any.
fn oci_config(args: &Args) -> anyhow::Result<wasmcloud_host::OciConfig> {
    let password = match (&args.oci_password_file, &args.oci_password) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, password) => password.clone(),
    };
    if args.oci_user.is_some() != password.is_some() {
        bail!("a registry user needs a password (--oci-password-file), and a password a user");
    }
    let insecure = match (&args.oci_registry, args.oci_insecure) {
        (Some(registry), true) => vec![registry.clone()],
        _ => Vec::new(),
    };
    Ok(wasmcloud_host::OciConfig {
        // The lattice's registry serves the lattice's certificate.
        additional_ca_paths: args.tls_ca_file.iter().cloned().collect(),
        allowed_insecure: insecure,
        oci_registry: args.oci_registry.clone(),
        oci_user: args.oci_user.clone(),
        oci_password: password,
        ..Default::default()
    })
}

fn parse_labels(args: &Args) -> anyhow::Result<HashMap<String, String>> {
    let from_env = args
        .labels_env
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let mut labels = HashMap::new();
    for raw in args.labels.iter().map(String::as_str).chain(from_env) {
        let Some((key, value)) = raw.split_once('=') else {
            bail!("label `{raw}` is not of the form key=value");
        };
        if key.is_empty() {
            bail!("label `{raw}` has an empty key");
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

fn main() -> anyhow::Result<()> {
    // Set before any thread starts (and before clap reads the environment).
    for (name, value) in wash_up::adopt(&std::env::vars().collect()) {
        std::env::set_var(name, value);
    }
    let args = Args::parse();
    if args.call_timeout_ms >= args.max_execution_ms {
        bail!(
            "the call timeout ({} ms) must be shorter than the execution limit ({} ms): a caller \
             must outlive its calls to answer for them",
            args.call_timeout_ms,
            args.max_execution_ms
        );
    }
    // The runtime reads it from the environment; set before any thread starts.
    std::env::set_var("PM_CALL_TIMEOUT_MS", args.call_timeout_ms.to_string());
    // The host's NATS client trusts the certificates rustls-native-certs loads, which are only
    // SSL_CERT_FILE's when it is set: so the lattice's CA, and no public one.
    if let Some(ca) = &args.tls_ca_file {
        std::env::set_var("SSL_CERT_FILE", ca);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // By default the log is events only: the host opens several info spans per invocation, and
    // recording them (each one's fields formatted as JSON) cost about 5% of its CPU on a cached
    // get. Setting PM_LOG brings spans back with whatever it selects.
    let (filter, with_spans) = match EnvFilter::try_from_env("PM_LOG") {
        Ok(filter) => (filter, true),
        Err(_) => (
            EnvFilter::new("info,cranelift_codegen=warn,wasmtime=warn"),
            false,
        ),
    };
    let logged = filter.and(filter_fn(move |meta| with_spans || meta.is_event()));
    let labels = parse_labels(&args)?;
    let host_label = labels
        .get("pm.host")
        .cloned()
        .unwrap_or_else(|| "host".into());
    let metrics = metrics::Metrics::new(&host_label)?;
    let logs = if args.structured_logging {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    // The metrics layer reads the gateway's request records whatever PM_LOG filters out.
    let records = Targets::new().with_target(metrics::LOG_TARGET, tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(logs.with_filter(logged))
        .with(metrics.clone().with_filter(records))
        .init();
    if let Some(addr) = args.metrics {
        metrics.include_host_instruments()?;
        metrics
            .serve(addr)
            .await
            .with_context(|| format!("metrics cannot listen on {addr}"))?;
    }

    let (ctl_jwt, ctl_key) = credentials(
        args.ctl_creds.as_deref(),
        args.ctl_jwt.as_deref().zip(args.ctl_seed.as_deref()),
    )?;
    let (rpc_jwt, rpc_key) = credentials(
        args.rpc_creds.as_deref(),
        args.rpc_jwt.as_deref().zip(args.rpc_seed.as_deref()),
    )?;
    let tls = args.tls_ca_file.is_some() || args.nats_url.scheme() == "tls";
    let config = HostConfig {
        ctl_nats_url: args.nats_url.clone(),
        rpc_nats_url: args.nats_url.clone(),
        ctl_jwt,
        ctl_key,
        ctl_tls: tls,
        rpc_jwt,
        rpc_key,
        rpc_tls: tls,
        secrets_topic_prefix: Some(args.secrets_topic.clone()),
        rpc_timeout: Duration::from_millis(args.rpc_timeout_ms),
        max_execution_time: Duration::from_millis(args.max_execution_ms),
        lattice: args.lattice.clone().into(),
        labels,
        allow_file_load: true,
        enable_structured_logging: args.structured_logging,
        http_admin: args.http_admin,
        heartbeat_interval: Some(Duration::from_secs(args.heartbeat_secs.max(1))),
        oci_opts: oci_config(&args)?,
        // How long a provider asked to stop may take before its process is killed: the
        // platform's providers first finish the calls they took (up to 5 s, see
        // providers/support/src/drain.rs), then close their pools.
        provider_shutdown_delay: Some(Duration::from_secs(10)),
        // `rpc_interface` links `wrpc:rpc/error`: a component whose import returns
        // `result<_, error>` gets a failed or timed-out call as that error instead of a trap.
        experimental_features: Features::new()
            .enable_builtin_http_server()
            .enable_rpc_interface(),
        ..Default::default()
    };
    wasmcloud_host::wasmbus::set_local_calls(args.local_calls);
    tokio::spawn(switch_local_calls_on_signals());
    let (host, shutdown) = Host::new(config).await.with_context(|| {
        format!(
            "failed to start host on {} (lattice {})",
            args.nats_url, args.lattice
        )
    })?;
    tracing::info!(lattice = %args.lattice, nats = %args.nats_url, "host started");

    tokio::select! {
        stopped = host.stopped() => {
            stopped.context("host stopped with an error")?;
            tracing::info!("host stopped by a lattice command");
        }
        _ = shutdown_signal() => tracing::info!("shutdown requested"),
    }
    // Stop components and providers cleanly so wadm sees them leave at once.
    shutdown.await.context("host shutdown failed")
}

type Credentials = (Option<String>, Option<Arc<nkeys::KeyPair>>);

/// The user JWT and key pair of a NATS credentials file, or given as they are (none without
/// either). The host crate takes them apart, and the file's format is two armoured blocks: the
/// line after each BEGIN marker.
fn credentials(path: Option<&Path>, given: Option<(&str, &str)>) -> anyhow::Result<Credentials> {
    let Some(path) = path else {
        return match given {
            Some((jwt, seed)) => {
                let key = nkeys::KeyPair::from_seed(seed)
                    .context("the NATS user seed given is not valid")?;
                Ok((Some(jwt.to_string()), Some(Arc::new(key))))
            }
            None => Ok((None, None)),
        };
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read NATS credentials {}", path.display()))?;
    let block = |marker: &str| {
        text.lines()
            .skip_while(|line| !line.contains(marker))
            .nth(1)
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .with_context(|| format!("{} has no {marker} block", path.display()))
    };
    let jwt = block("BEGIN NATS USER JWT")?.to_string();
    let key = nkeys::KeyPair::from_seed(block("BEGIN USER NKEY SEED")?)
        .with_context(|| format!("{} holds no valid user seed", path.display()))?;
    Ok((Some(jwt), Some(Arc::new(key))))
}

/// SIGUSR1 sends every call over NATS from now on, SIGUSR2 lets calls to components on this host
/// go through memory again.
async fn switch_local_calls_on_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut off), Ok(mut on)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("no SIGUSR1/SIGUSR2 handlers: local calls cannot be switched at run time");
        return;
    };
    loop {
        let local = tokio::select! { _ = off.recv() => false, _ = on.recv() => true };
        wasmcloud_host::wasmbus::set_local_calls(local);
        tracing::info!(local, "calls to components on this host switched");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
}
