//! One lattice on this machine: a NATS with JetStream, wadm, N wasmCloud hosts and the deployed
//! application. `up` is idempotent (it reuses whatever of its own already runs) and `down`
//! stops exactly what `up` started, so both are safe to run twice.
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::machines::MachinePlan;
use crate::nats_client::{self, NatsAuth};
use crate::net::{self, loopback};
use crate::process::{run, Daemon};
use crate::secret_store::Secret;
use crate::security::{Secrets, User};
use crate::tools::Tools;
use crate::{manifest, paths, step};

/// How a lattice host is started, whether by `up` (the stack's own hosts) or by `join` (a host
/// elsewhere, from a bundle): one place for the launcher's arguments and its readiness.
pub(crate) struct HostLaunch {
    pub nats_url: String,
    pub lattice: String,
    /// The host users' credentials and the CA; none on a NATS the user runs.
    pub credentials: Option<HostCredentials>,
    /// The lattice's registry, on a lattice that ships through it.
    pub registry: Option<RegistryAccess>,
    pub labels: Vec<String>,
    pub metrics: Option<SocketAddr>,
    /// The address the host's admin endpoint listens on (where xtask checks it is ready).
    pub admin_ip: IpAddr,
}

pub(crate) struct HostCredentials {
    pub control: PathBuf,
    pub rpc: PathBuf,
    pub ca: PathBuf,
}

pub(crate) struct RegistryAccess {
    pub address: String,
    pub user: String,
    pub password_file: PathBuf,
}

impl HostLaunch {
    /// Starts the host as `daemon` and waits until its admin endpoint says it is ready.
    pub(crate) fn start(&self, tools: &Tools, daemon: &Daemon, what: &str) -> Result<()> {
        let admin = SocketAddr::new(self.admin_ip, net::free_port()?);
        let mut host = Command::new(&tools.host);
        if let Some(credentials) = &self.credentials {
            host.arg("--ctl-creds")
                .arg(&credentials.control)
                .arg("--rpc-creds")
                .arg(&credentials.rpc)
                .arg("--tls-ca-file")
                .arg(&credentials.ca);
        }
        if let Some(registry) = &self.registry {
            host.args(["--oci-registry", &registry.address])
                .args(["--oci-user", &registry.user])
                .arg("--oci-password-file")
                .arg(&registry.password_file);
        }
        for label in &self.labels {
            host.args(["--label", label]);
        }
        if let Some(metrics) = self.metrics {
            host.arg("--metrics").arg(metrics.to_string());
        }
        // A temporary directory of its own: the host caches what it pulls from the registry in
        // `$TMPDIR/wasmcloud_ocicache`, and hosts sharing /tmp on one machine read each other's
        // half-written archives (measured: "failed to load provider archive: unexpected end of
        // file" on two of three hosts pulling at once). Outside the stack dir: the run's search
        // for leaked secrets would read every cached artifact again (they are searched in build/).
        // Named for the daemon's directory too: the hosts of machines that joined the lattice
        // (build/joined/<name>/) share /tmp with this machine's in the simulated machines.
        let owner = daemon
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = std::env::temp_dir().join(format!("pm-{owner}-{}", daemon.name));
        fs::create_dir_all(&tmp)?;
        daemon.spawn(
            host.env("TMPDIR", &tmp)
                .args(["--nats-url", &self.nats_url])
                .args(["--lattice", &self.lattice])
                .arg("--http-admin")
                .arg(admin.to_string())
                .args(["--heartbeat-secs", &HEARTBEAT_SECS.to_string()])
                .arg("--structured-logging"),
        )?;
        daemon.wait_ready(what, Duration::from_secs(60), || {
            Ok(net::http_get(admin, "/readyz").is_ok_and(|(status, _)| status == 200))
        })
    }
}

/// Hosts send a heartbeat this often; wadm forgets a host that has sent none for
/// `HOST_EXPIRY_SECS` (wadm checks every half of that) and puts its work on the hosts that remain.
/// So a host that dies without saying goodbye is replaced 20 to 30 s later, instead of wasmCloud's
/// default 70 to 105 s.
const HEARTBEAT_SECS: u64 = 5;
/// How long an inventory waits for the hosts to answer a ping (wash's default control timeout);
/// it ends sooner once every host the stack runs has answered.
const HOST_PING_WINDOW: Duration = Duration::from_secs(2);
const HOST_EXPIRY_SECS: u64 = 20;

/// Zones handed to hosts in turn, as the `zone` label wadm's spread scalers select on.
const ZONES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
pub struct StackConfig {
    pub lattice: String,
    /// Our own NATS port; ignored when `external_nats` is set.
    pub nats_port: u16,
    /// A NATS the user runs (PM_NATS_URL); we check it and never start or stop it.
    pub external_nats: Option<SocketAddr>,
    /// How many nodes our own NATS has (nats_nodes.rs): 1, or a cluster of 3 or more.
    pub nats_nodes: usize,
    /// Ship the artifacts through the lattice's OCI registry (registry.rs) instead of `file://`.
    pub registry: bool,
    pub http_port: u16,
    /// The provider probe's listener (only deployed by tests).
    pub probe_port: u16,
    /// The Kafka-compatible broker (tansu) this stack runs.
    pub broker_port: u16,
    /// Postgres database and Redis key prefix of this stack's data.
    pub database: String,
    pub key_prefix: String,
    /// Overrides the manifest's per-client rate limit (benchmarks only).
    pub rate_limit: Option<u32>,
    pub hosts: usize,
    /// Where the providers reach Postgres and Redis: the machine's servers, or the test run's
    /// fault proxies in front of them (`faults.rs`).
    pub postgres_port: u16,
    pub redis_port: u16,
    /// The seed admin's password (`seed_admin_password`; random on a test stack, so the test
    /// run can search its logs for it).
    pub seed_admin_password: String,
    /// Simulated machines (machines.rs) that joined this lattice the way docs/deploy.md says,
    /// each with a NATS node, a host and an HTTP listener (`join_machine`). None: no machines.
    pub machines: Option<MachinePlan>,
    /// The address of this machine that other machines reach the lattice at (`up --address`):
    /// its NATS nodes, registry and broker listen there, the manifest's Postgres and Redis are
    /// there, and every host has an HTTP listener. None: loopback only.
    pub address: Option<IpAddr>,
    /// The `zone` labels every component is spread over (`up --zones`); empty: those of this
    /// stack's own hosts.
    pub zones: Vec<String>,
}

pub struct Stack {
    pub config: StackConfig,
    pub dir: PathBuf,
}

impl Stack {
    pub fn new(config: StackConfig) -> Self {
        let dir = paths::stack(&config.lattice);
        Self { config, dir }
    }

    /// Reopens a stack `up` recorded earlier (its NATS address is kept in the stack dir).
    pub fn existing(lattice: &str) -> Result<Self> {
        let dir = paths::stack(lattice);
        let saved = fs::read_to_string(dir.join("nats.addr"))
            .with_context(|| format!("no lattice `{lattice}` was brought up from this checkout"))?;
        let addr: SocketAddr = saved.trim().parse()?;
        let stores: serde_json::Value = fs::read_to_string(dir.join(STORES_FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let text = |key: &str, default: &str| stores[key].as_str().unwrap_or(default).to_string();
        let port = |key: &str, default: u16| {
            stores[key]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(default)
        };
        let config = StackConfig {
            lattice: lattice.to_string(),
            nats_port: addr.port(),
            external_nats: None,
            registry: stores["registry"] == true,
            nats_nodes: stores["nats_nodes"].as_u64().map_or(1, |n| n as usize),
            http_port: read_port(&dir, "http.port", 4004),
            probe_port: 4014,
            broker_port: read_port(&dir, "broker.port", 9092),
            database: text("database", manifest::DEFAULT_DATABASE),
            key_prefix: text("key_prefix", manifest::DEFAULT_KEY_PREFIX),
            rate_limit: None,
            hosts: 0,
            postgres_port: port("postgres_port", manifest::DEFAULT_POSTGRES_PORT),
            redis_port: port("redis_port", manifest::DEFAULT_REDIS_PORT),
            seed_admin_password: seed_admin_password(),
            machines: MachinePlan::from_json(&stores["machines"]),
            address: stores["address"].as_str().and_then(|a| a.parse().ok()),
            zones: stores["zones"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|z| z.as_str().map(str::to_string))
                .collect(),
        };
        Ok(Self { config, dir })
    }

    pub fn nats_addr(&self) -> SocketAddr {
        self.config
            .external_nats
            .unwrap_or_else(|| SocketAddr::new(self.own_ip(), self.config.nats_port))
    }

    /// This machine's address for the lattice (`--address`, or loopback): where its NATS nodes,
    /// hosts, registry and broker listen, and the manifest's local stores are reached.
    pub(crate) fn own_ip(&self) -> IpAddr {
        self.config
            .address
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The lattice's TLS and NATS credentials (made by `up` for our own NATS). None on a NATS
    /// the user runs (`PM_NATS_URL`): we neither configure nor secure that one, and its clients
    /// connect as it allows.
    pub fn secrets(&self) -> Option<Secrets> {
        let dir = self.dir.join("secrets");
        (self.config.external_nats.is_none() && dir.exists()).then_some(Secrets { dir })
    }

    /// One NATS request to this lattice as its operator (`nats_client::request`: the answer, or
    /// None when nobody answers).
    pub fn nats_request(&self, subject: &str) -> Result<Option<String>> {
        nats_client::request(self.nats_addr(), &self.operator_auth(), subject)
    }

    /// How xtask reaches the lattice's NATS: as the operator over TLS on our own NATS.
    pub(crate) fn operator_auth(&self) -> NatsAuth {
        self.auth_as(User::Operator)
    }

    /// How `user` reaches the lattice's NATS: over TLS with its credentials on our own NATS.
    pub(crate) fn auth_as(&self, user: User) -> NatsAuth {
        match self.secrets() {
            Some(secrets) => NatsAuth {
                ca: Some(secrets.ca()),
                creds: Some(secrets.creds(user)),
            },
            None => NatsAuth::default(),
        }
    }

    /// The URL NATS clients of this lattice connect to: TLS on our own NATS.
    pub fn nats_url(&self) -> String {
        self.nats_url_of(self.nats_addr())
    }

    /// The URL of a NATS node of this lattice at `addr`: TLS on our own NATS.
    pub(crate) fn nats_url_of(&self, addr: SocketAddr) -> String {
        let scheme = if self.secrets().is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://{addr}")
    }

    /// A port of this stack chosen once and kept in `file`.
    pub(crate) fn kept_port(&self, file: &str) -> Result<u16> {
        let path = self.dir.join(file);
        if let Some(port) = fs::read_to_string(&path)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return Ok(port);
        }
        let port = net::free_port()?;
        fs::write(&path, port.to_string())?;
        Ok(port)
    }

    pub fn broker_addr(&self) -> SocketAddr {
        SocketAddr::new(self.own_ip(), self.config.broker_port)
    }

    /// Where the gateway answers on this machine.
    pub fn gateway_addr(&self) -> SocketAddr {
        SocketAddr::new(self.own_ip(), self.config.http_port)
    }

    /// The gateway's listener on joined machine `index` (every host has one there).
    fn gateway_on_machine(&self, plan: &MachinePlan, index: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(plan.addresses[index - 1]), self.config.http_port)
    }

    /// Every HTTP entry of the lattice: this machine's, or one per joined machine.
    pub fn gateway_addrs(&self) -> Vec<SocketAddr> {
        match &self.config.machines {
            Some(plan) => (1..=plan.addresses.len())
                .map(|i| self.gateway_on_machine(plan, i))
                .collect(),
            None => vec![self.gateway_addr()],
        }
    }

    /// How many simulated machines joined the stack (0 when there are none).
    pub(crate) fn machine_count(&self) -> usize {
        self.config
            .machines
            .as_ref()
            .map_or(0, |p| p.addresses.len())
    }

    /// Environment that points `wash` at this lattice.
    pub fn wash(&self, tools: &Tools) -> Command {
        let mut command = Command::new(&tools.wash);
        command
            .env("WASMCLOUD_CTL_HOST", self.nats_addr().ip().to_string())
            .env("WASMCLOUD_CTL_PORT", self.nats_addr().port().to_string())
            .env("WASMCLOUD_LATTICE", &self.config.lattice)
            // wash keeps contexts, plugins and downloads under $HOME/.wash (wash-lib 0.33's
            // `cfg_dir`; it reads no other variable for it): keep ours out of the user's.
            .env("HOME", paths::cache().join("wash-home"))
            // A host under load answers a control request (its inventory, say) in more than
            // wash's default 2 s now that every message is encrypted (measured: an inventory
            // timed out at 320 requests/s on 2 cores). Every command xtask gives wash has one
            // answer, so only a host that is gone waits this long (inventories, a scatter-gather
            // that would wait it out every time, are asked directly: `inventories`).
            .env("WASMCLOUD_CTL_TIMEOUT_MS", "5000");
        if let Some(secrets) = self.secrets() {
            command
                .env("WASH_CTL_CREDS", secrets.creds(User::Operator))
                .env("WASH_CTL_TLS_CA_FILE", secrets.ca());
        }
        command
    }

    fn nats(&self) -> Daemon {
        self.nats_node(1)
    }
    fn broker(&self) -> Daemon {
        Daemon::new(&self.dir, "broker")
    }
    fn broker_data_dir(&self) -> PathBuf {
        self.dir.join("broker-data")
    }
    fn wadm(&self) -> Daemon {
        Daemon::new(&self.dir, "wadm")
    }
    pub(crate) fn host(&self, index: usize) -> Daemon {
        Daemon::new(&self.dir, &format!("host-{index}"))
    }

    pub(crate) fn running_hosts(&self) -> Vec<usize> {
        (1..=16)
            .filter(|i| self.host(*i).running_pid().is_some())
            .collect()
    }

    /// Refuses to start when a port we need belongs to someone else, before anything starts.
    pub fn preflight(&self) -> Result<()> {
        // The port may be taken by this very stack's gateway (a second `up`), by nothing else.
        let ours = !self.running_hosts().is_empty()
            && read_port(&self.dir, "http.port", 0) == self.config.http_port;
        if !ours && net::port_taken(self.config.http_port) {
            bail!(
                "port {} is already in use by another process; the gateway cannot listen there. \
                 Stop that process or choose another port with --http-port.",
                self.config.http_port
            );
        }
        if self.broker().running_pid().is_none() && net::port_taken(self.config.broker_port) {
            bail!(
                "port {} is already in use by another process; the Kafka-compatible broker cannot \
                 listen there. Stop that process or free the port.",
                self.config.broker_port
            );
        }
        // The providers of every machine reach the manifest's local Postgres and Redis at this
        // machine's address: xtask does not forward them there (a forwarder would hand the
        // network this machine's loopback trust), so they must listen there themselves. (A
        // manifest pointed at managed stores is left as it is: `manifest::render`.)
        if let Some(address) = self.config.address {
            let manifest =
                fs::read_to_string(crate::paths::repo().join(crate::build::MANIFESTS[0]))?;
            for (what, port, local) in [
                (
                    "Postgres",
                    self.config.postgres_port,
                    "POSTGRES_HOST: 127.0.0.1\n",
                ),
                ("Redis", self.config.redis_port, "redis://127.0.0.1:"),
            ] {
                if !manifest.contains(local) {
                    continue;
                }
                let addr = SocketAddr::new(address, port);
                if !net::listening(addr, Duration::from_secs(1)) {
                    bail!(
                        "{what} does not answer on {addr}: with --address, the providers on every \
                         machine reach it there. Make it listen on that address, with password \
                         authentication for the platform's roles, or point the manifest at a \
                         managed {what} (docs/deploy.md)"
                    );
                }
            }
        }
        Ok(())
    }

    pub fn up(&self, tools: &Tools) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        self.preflight()?;
        self.forget_state_of_stopped_lattice()?;
        self.ensure_nats(tools)?;
        fs::write(self.dir.join("nats.addr"), self.nats_addr().to_string())?;
        fs::write(
            self.dir.join("http.port"),
            self.config.http_port.to_string(),
        )?;
        fs::write(
            self.dir.join("broker.port"),
            self.config.broker_port.to_string(),
        )?;
        // Which database, key prefix and ports this stack's data lives at, how many NATS nodes
        // it has and whether it ships through its registry, for commands run on it later
        // (`rotate`, `swap`, `join-bundle`): recorded, not guessed from files an earlier `up`
        // of another shape left behind.
        fs::write(
            self.dir.join(STORES_FILE),
            serde_json::json!({
                "database": self.config.database,
                "key_prefix": self.config.key_prefix,
                "postgres_port": self.config.postgres_port,
                "redis_port": self.config.redis_port,
                "registry": self.config.registry,
                "nats_nodes": self.config.nats_nodes,
                "machines": self.config.machines.as_ref().map(MachinePlan::to_json),
                "address": self.config.address.map(|a| a.to_string()),
                "zones": self.config.zones,
            })
            .to_string(),
        )?;
        self.ensure_broker(tools)?;
        if self.config.registry {
            self.ensure_registry()?;
        }
        self.ensure_secrets_backend(tools)?;
        self.prepare_wadm_streams()?;
        self.ensure_wadm(tools)?;
        for index in 1..=self.config.hosts {
            self.ensure_host(tools, index)?;
        }
        // wadm, the secrets backend and the hosts have made their buckets by now.
        self.replicate_streams()?;
        Ok(())
    }

    /// wadm keeps its state (manifests, what runs where, expected events) in JetStream under the
    /// stack dir. Left from a lattice that is gone, it does not converge on the new one: measured,
    /// a stopped lattice started again (same or another host count) could end with the HTTP
    /// listener started on both hosts and then stopped on the one that held the port, so nothing
    /// listened; `up --hosts 2` after `up` stayed Reconciling. A stopped lattice therefore always
    /// starts with a fresh wadm state; `up` on a running one keeps it.
    fn forget_state_of_stopped_lattice(&self) -> Result<()> {
        let stopped = self.nats().running_pid().is_none() && self.running_hosts().is_empty();
        if stopped && self.dir.join("jetstream").exists() {
            step("the lattice was stopped: starting it with a fresh wadm state");
            let _ = fs::remove_dir_all(self.dir.join("jetstream"));
            for node in 2..=crate::nats_nodes::MAX_NODES {
                let _ = fs::remove_dir_all(self.dir.join(format!("jetstream-{node}")));
            }
            let _ = fs::remove_file(self.dir.join(format!("{}.yaml", manifest::APP_NAME)));
        }
        Ok(())
    }

    fn ensure_nats(&self, tools: &Tools) -> Result<()> {
        let addr = self.nats_addr();
        if self.config.external_nats.is_some()
            || self.nats().running_pid().is_none() && net::port_taken(addr.port())
        {
            // Not ours: use it only if it can carry a lattice.
            let info = net::nats_info(addr)?;
            net::require_usable_nats(&info, addr)?;
            step(&format!(
                "using the NATS {} already listening on {addr}",
                info.version
            ));
            return Ok(());
        }
        self.start_nats_nodes(tools)
    }

    pub fn stop_broker(&self) -> Result<()> {
        self.broker().stop(Duration::from_secs(10))?;
        step(&format!(
            "broker of lattice `{}` stopped",
            self.config.lattice
        ));
        Ok(())
    }

    /// SIGSTOP / SIGCONT the broker: it keeps its connections but answers nothing (the hung
    /// broker of the outage tests).
    pub fn pause_broker(&self, pause: bool) -> Result<()> {
        self.broker().pause(pause)?;
        step(&format!(
            "broker {}",
            if pause {
                "paused (SIGSTOP)"
            } else {
                "resumed (SIGCONT)"
            }
        ));
        Ok(())
    }

    pub fn start_broker(&self, tools: &Tools) -> Result<()> {
        self.ensure_broker(tools)
    }

    fn ensure_broker(&self, tools: &Tools) -> Result<()> {
        let addr = self.broker_addr();
        if self.broker().running_pid().is_some() {
            step(&format!(
                "Kafka-compatible broker already running on {addr}"
            ));
            return Ok(());
        }
        // SQLite storage in the stack dir: topics, records and consumer offsets survive a
        // restart (issue 17, item 6); `drop_data` removes a test stack's with its database.
        let data = self.broker_data_dir();
        fs::create_dir_all(&data)?;
        step(&format!(
            "starting the Kafka-compatible broker (tansu, storage {}) on {addr}",
            data.join("broker.db").display()
        ));
        let url = format!("tcp://{addr}");
        self.broker().spawn(
            Command::new(&tools.tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    // tansu opens the path relative to its working directory.
                    "--storage-engine",
                    "sqlite:///broker.db",
                ])
                .current_dir(&data)
                .env("CLUSTER_ID", format!("pm-{}", self.config.lattice)),
        )?;
        self.wait_alive(
            &self.broker(),
            "the broker to accept connections",
            Duration::from_secs(30),
            || Ok(net::listening(addr, Duration::from_millis(300))),
        )
    }

    fn ensure_wadm(&self, tools: &Tools) -> Result<()> {
        if self.wadm().running_pid().is_some() {
            step("wadm already running");
            return Ok(());
        }
        step("starting wadm");
        let mut wadm = Command::new(&tools.wadm);
        if let Some(secrets) = self.secrets() {
            wadm.env("WADM_NATS_CREDS_FILE", secrets.creds(User::Wadm))
                .env("WADM_NATS_TLS_CA_FILE", secrets.ca());
        }
        self.wadm().spawn(
            wadm.env("WADM_NATS_SERVER", self.nats_url())
                .env("WADM_CLEANUP_INTERVAL", HOST_EXPIRY_SECS.to_string())
                .env("WADM_STRUCTURED_LOGGING", "true"),
        )?;
        // wadm answers its API over NATS once its streams and consumers exist.
        self.wait_alive(
            &self.wadm(),
            "wadm to answer `wash app list`",
            Duration::from_secs(60),
            || Ok(run(self.wash(tools).args(["app", "list"])).is_ok()),
        )
    }

    /// The `zone` label of the stack's own host `index` (from 1).
    pub fn host_zone(index: usize) -> &'static str {
        ZONES[(index - 1) % ZONES.len()]
    }

    pub(crate) fn ensure_host(&self, tools: &Tools, index: usize) -> Result<()> {
        let daemon = self.host(index);
        if daemon.running_pid().is_some() {
            step(&format!("host {index} already running"));
            return Ok(());
        }
        let zone = Self::host_zone(index);
        let metrics = SocketAddr::new(self.own_ip(), net::free_port()?);
        fs::write(
            self.dir.join(format!("host-{index}.metrics")),
            metrics.to_string(),
        )?;
        step(&format!(
            "starting wasmCloud host {index} (zone={zone}, lattice {})",
            self.config.lattice
        ));
        let registry = match self.config.registry {
            true => Some(RegistryAccess {
                address: self.registry_addr()?.to_string(),
                user: crate::registry::USER.to_string(),
                password_file: self.registry_password_file()?,
            }),
            false => None,
        };
        HostLaunch {
            nats_url: self.nats_node_url(self.nats_node_of_host(index))?,
            lattice: self.config.lattice.clone(),
            credentials: self.secrets().map(|secrets| HostCredentials {
                control: secrets.creds(User::HostControl),
                rpc: secrets.creds(User::HostRpc),
                ca: secrets.ca(),
            }),
            registry,
            labels: vec![format!("zone={zone}"), format!("pm.host={index}")],
            metrics: Some(metrics),
            admin_ip: self.own_ip(),
        }
        .start(tools, &daemon, &format!("host {index} to be ready"))
    }

    /// Polls `ready`, failing at once (with the log's tail) if the process died meanwhile.
    pub(crate) fn wait_alive(
        &self,
        daemon: &Daemon,
        what: &str,
        timeout: Duration,
        ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        daemon.wait_ready(what, timeout, ready)
    }

    /// Deploys a manifest (with this stack's ports and data names) and waits until `ready`
    /// answers Ok (its error says what is not ready yet); a manifest identical to the one
    /// deployed before is not deployed again.
    pub fn deploy(
        &self,
        tools: &Tools,
        source: &Path,
        app: &str,
        ready: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let text = fs::read_to_string(source)?;
        let overrides = manifest::Overrides {
            http_port: self.config.http_port,
            probe_port: self.config.probe_port,
            broker_port: self.config.broker_port,
            database: self.config.database.clone(),
            key_prefix: self.config.key_prefix.clone(),
            rate_limit: self.config.rate_limit,
            postgres_port: self.config.postgres_port,
            redis_port: self.config.redis_port,
            zones: match self.config.zones.is_empty() {
                true => ZONES
                    .iter()
                    .take(self.config.hosts.clamp(1, ZONES.len()))
                    .map(|z| z.to_string())
                    .collect(),
                false => self.config.zones.clone(),
            },
            services_host: self.own_ip().to_string(),
            listener_on_every_host: self.config.machines.is_some() || self.config.address.is_some(),
        };
        let rendered = manifest::render(&text, source.parent().unwrap(), &overrides)?;
        let rendered = if self.config.registry {
            self.pushed(tools, &rendered)?
        } else {
            rendered
        };
        let target = self.dir.join(source.file_name().context("manifest path")?);
        let unchanged = fs::read_to_string(&target).is_ok_and(|old| old == rendered);
        if unchanged && ready().is_ok() {
            step(&format!(
                "{app} already deployed and serving; manifest unchanged"
            ));
            return Ok(());
        }
        fs::write(&target, &rendered)?;
        step(&format!("deploying {app} with wadm"));
        run(self.wash(tools).args(["app", "deploy"]).arg(&target))?;
        let deployed_at = std::time::Instant::now();
        // When the gateway first answered (200 on /health): what a client would see first.
        // Only measured when it was not answering before this deploy.
        let was_answering = self.gateway_healthy();
        let first_answer = std::cell::Cell::new(None);
        // Serving is not enough: wadm must also have put every link and provider in place.
        let settled = || -> Result<bool> {
            if !was_answering && first_answer.get().is_none() && self.gateway_healthy() {
                first_answer.set(Some(deployed_at.elapsed()));
            }
            ready()?;
            Ok(self.app_deployed(tools, app))
        };
        net::wait_for(&format!("{app} to serve"), Duration::from_secs(180), settled).map(|()| {
            if let Some(first) = first_answer.get() {
                step(&format!(
                    "{app}: first 200 from the gateway {:.1} s after `wash app deploy`, every service serving after {:.1} s",
                    first.as_secs_f64(),
                    deployed_at.elapsed().as_secs_f64()
                ));
            }
        }).map_err(|e| {
            let status = run(self.wash(tools).args(["app", "status", app]))
                .unwrap_or_else(|e| e.to_string());
            e.context(format!(
                "the application did not come up.\n`wash app status`:\n{status}\nhost log tail:\n{}",
                self.host(1).log_tail(15)
            ))
        })
    }

    /// Redeploys the platform as last deployed, with `component` at `instances`, and waits
    /// until wadm reports it deployed (the outage tests stop billing this way).
    pub fn scale(&self, tools: &Tools, component: &str, instances: u32) -> Result<()> {
        let app = manifest::APP_NAME;
        let (target, deployed) = self.deployed_manifest()?;
        fs::write(
            &target,
            manifest::with_instances(&deployed, component, instances)?,
        )?;
        step(&format!("scaling {component} to {instances} instance(s)"));
        run(self.wash(tools).args(["app", "deploy"]).arg(&target))?;
        let started = std::time::Instant::now();
        // wadm's status can still say "deployed" from before it read the new version, so the
        // hosts' inventories must show the new count too.
        net::wait_for(
            &format!("{app} to be deployed"),
            Duration::from_secs(180),
            || Ok(self.instances(component)? == instances && self.app_deployed(tools, app)),
        )?;
        step(&format!(
            "{component} at {instances} instance(s) on the hosts {:.1} s after the request",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The rendered manifest wadm was last given for the platform, and where it is kept.
    pub(crate) fn deployed_manifest(&self) -> Result<(PathBuf, String)> {
        let path = self.dir.join(format!("{}.yaml", manifest::APP_NAME));
        let text = fs::read_to_string(&path)
            .with_context(|| format!("{} was not deployed on this lattice", manifest::APP_NAME))?;
        Ok((path, text))
    }

    /// What every host runs, one JSON object per host (as `wash get inventory` prints them).
    /// Asked over NATS directly: wash waits its whole control timeout for hosts to answer a
    /// ping, while the stack knows which hosts it runs and stops waiting once they all answered.
    pub(crate) fn inventories(&self) -> Result<Vec<serde_json::Value>> {
        let ctl = format!("wasmbus.ctl.v1.{}", self.config.lattice);
        // The hosts expected to answer: the stack's own and those of the machines that joined.
        let ours: Vec<String> = self
            .running_hosts()
            .iter()
            .map(usize::to_string)
            .chain(
                (1..=self.machine_count())
                    .filter(|i| self.machine_joined(*i))
                    .map(Self::machine_zone),
            )
            .collect();
        let mut nats = nats_client::Connection::open(self.nats_addr(), &self.operator_auth())?;
        let pings = nats.gather(&format!("{ctl}.host.ping"), HOST_PING_WINDOW, |answers| {
            let labels: Vec<String> = answers
                .iter()
                .filter_map(|a| serde_json::from_str::<serde_json::Value>(a).ok())
                .filter_map(|a| {
                    a["response"]["labels"]["pm.host"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            ours.iter().all(|host| labels.contains(host))
        })?;
        let mut inventories = Vec::new();
        for ping in pings {
            let ping: serde_json::Value = serde_json::from_str(&ping).context("a host's ping")?;
            let id = ping["response"]["id"]
                .as_str()
                .context("a ping without a host id")?;
            let answer = nats
                .request(&format!("{ctl}.host.get.{id}"), nats_client::ANSWER_TIMEOUT)?
                .with_context(|| format!("host {id:.8} did not send its inventory"))?;
            let answer: serde_json::Value = serde_json::from_str(&answer)?;
            if answer["success"] != true {
                bail!("host {id:.8} refused its inventory: {}", answer["message"]);
            }
            inventories.push(answer["response"].clone());
        }
        Ok(inventories)
    }

    /// How many instances of the manifest's `component` the hosts run, by their inventories.
    pub(crate) fn instances(&self, component: &str) -> Result<u32> {
        let placed: u64 = self
            .inventories()?
            .iter()
            .map(|host| instances_on(host, component))
            .sum();
        Ok(placed as u32)
    }

    /// wadm reports every scaler of `app` deployed.
    pub(crate) fn app_deployed(&self, tools: &Tools, app: &str) -> bool {
        let Ok(out) = run(self.wash(tools).args(["app", "status", app, "-o", "json"])) else {
            return false;
        };
        serde_json::from_str::<serde_json::Value>(out.trim())
            .is_ok_and(|v| v["status"]["status"]["type"] == "deployed")
    }

    pub fn gateway_healthy(&self) -> bool {
        net::http_get(self.gateway_addr(), "/health").is_ok_and(|(status, _)| status == 200)
    }

    /// The gateway's `/ready` is 200: every service answers through the gateway with its
    /// dependencies behind it. wadm's "Deployed" and `/health` say only that components,
    /// providers and links were placed; a provider that did not take up a link shows here.
    /// On simulated machines, every live machine's listener must answer so.
    pub fn platform_ready(&self) -> Result<()> {
        let mut live = vec![self.gateway_addr()];
        if let Some(plan) = &self.config.machines {
            live.extend(
                (1..=plan.addresses.len())
                    .filter(|i| self.machine_joined(*i))
                    .map(|i| self.gateway_on_machine(plan, i)),
            );
        }
        for gateway in live {
            match net::http_get(gateway, "/ready") {
                Ok((200, _)) => {}
                Ok((status, body)) => bail!("/ready on {gateway} answers {status}: {body}"),
                Err(e) => {
                    return Err(e.context(format!(
                        "the gateway on {gateway} does not answer /ready yet"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The probe answers only once its component and key-value link work.
    pub fn probe_ready(&self) -> Result<()> {
        match net::http_get(loopback(self.config.probe_port), "/delivered/readiness") {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => bail!("the probe answers {status}: {body}"),
            Err(e) => Err(e.context("the probe does not answer")),
        }
    }

    /// Stops hosts, then wadm, then NATS (only a NATS we started). Safe when nothing runs.
    pub fn down(&self) -> Result<()> {
        self.leave_machines()?;
        let mut stopped = Vec::new();
        let hosts = (1..=16).map(|i| self.host(i));
        let others = [
            self.wadm(),
            self.secrets_backend(),
            self.broker(),
            self.registry(),
        ]
        .into_iter()
        .chain(
            (1..=crate::nats_nodes::MAX_NODES)
                .rev()
                .map(|i| self.nats_node(i)),
        );
        for daemon in hosts.chain(others) {
            if daemon.stop(Duration::from_secs(15))? {
                stopped.push(daemon.name.clone());
            }
        }
        if stopped.is_empty() {
            step(&format!(
                "lattice `{}`: nothing was running",
                self.config.lattice
            ));
        } else {
            step(&format!(
                "lattice `{}`: stopped {}",
                self.config.lattice,
                stopped.join(", ")
            ));
        }
        Ok(())
    }
}

/// The entries of a host's inventory for the manifest's `component` (ids are `<app>-<name>`).
pub(crate) fn running<'a>(
    host: &'a serde_json::Value,
    component: &str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    let suffix = format!("-{component}");
    host["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| c["id"].as_str().is_some_and(|id| id.ends_with(&suffix)))
}

/// How many instances of the manifest's `component` one inventory entry stands for.
pub(crate) fn instance_count(entry: &serde_json::Value) -> u64 {
    entry["max_instances"].as_u64().unwrap_or(0)
}

/// How many instances of the manifest's `component` a host runs, by its inventory.
pub(crate) fn instances_on(host: &serde_json::Value, component: &str) -> u64 {
    running(host, component).map(instance_count).sum()
}

/// Where a stack's data lives and its shape (see `up`).
const STORES_FILE: &str = "stores.json";

fn read_port(dir: &Path, file: &str, default: u16) -> u16 {
    fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(default)
}

impl Stack {
    /// Removes a test stack's database and Redis keys (best effort: a leftover is harmless,
    /// since every run uses fresh names).
    pub fn drop_data(&self) {
        let pattern = format!("{}*", self.config.key_prefix);
        let script = format!("redis-cli -h 127.0.0.1 --scan --pattern '{pattern}' | xargs -r redis-cli -h 127.0.0.1 del > /dev/null");
        if let Err(e) = run(Command::new("sh").args(["-c", &script])) {
            step(&format!("could not remove test keys {pattern}: {e:#}"));
        }
        self.drop_database_and_roles();
        // The broker's topics hold the test's events (the broker is stopped by now).
        let _ = fs::remove_dir_all(self.broker_data_dir());
    }
}

/// The seed admin's password when `PM_SEED_ADMIN_PASSWORD` is unset: the documented local
/// fixture of SPEC.md (`testuser@test.com` / `password123`), not a secret.
pub const DEFAULT_SEED_ADMIN_PASSWORD: &str = "password123";

pub fn seed_admin_password() -> String {
    std::env::var("PM_SEED_ADMIN_PASSWORD")
        .unwrap_or_else(|_| DEFAULT_SEED_ADMIN_PASSWORD.to_string())
}

impl Stack {
    /// The platform's secrets into the secrets backend (secret_store.rs), and `lattice-tls`,
    /// where the manifest's providers find the CA their NATS connection trusts: the certificate
    /// itself, so a provider on any machine has it (empty on a NATS without TLS; public, not a
    /// secret; read by providers/support/src/lattice_ca.rs).
    pub fn put_secrets(&self, tools: &Tools) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut secrets = self.jwt_secrets()?;
        secrets.push((
            Secret::SeedAdminPassword,
            self.config.seed_admin_password.clone(),
        ));
        secrets.extend(self.ensure_store_roles()?);
        self.store_platform_secrets(tools, &secrets)?;
        let ca = match self.secrets() {
            Some(secrets) => fs::read_to_string(secrets.ca())?,
            None => String::new(),
        };
        run(self
            .wash(tools)
            .args(["config", "put", "lattice-tls"])
            .arg(format!("nats_tls_ca={ca}")))
        .context("storing lattice-tls on the lattice")
        .map(|_| ())
    }
}
