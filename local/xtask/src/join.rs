//! Joining a lattice from another machine (issue 19, item 2). `cargo xtask join-bundle FILE
//! [--nats-node ADDRESS]` on the lattice's machine writes a bundle (a tar file, mode 600): where
//! the lattice's NATS nodes are, the CA that signed their certificate, the two host users'
//! credentials, the registry's address and pull credentials, `wash-up.env` for `wash up`, and,
//! with `--nats-node`, what a NATS node at ADDRESS needs to join the cluster (a certificate for
//! that address signed by the lattice's CA, the accounts, the routes). `cargo xtask join FILE
//! [--nats-node] [--no-host] [--label k=v ...]` on the other machine starts, from the bundle
//! alone, that NATS node and/or a host that joins the lattice with its labels (through the node
//! of its own machine when there is one) and pulls what wadm places on it from the registry.
//! Nothing else passes between the machines.
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{run, Daemon};
use crate::security::{Cluster, Secrets, User};
use crate::stack::{HostCredentials, HostLaunch, RegistryAccess, Stack};
use crate::tools::Tools;
use crate::{net, paths, step};

/// What the bundle's `join.json` says, beside its files (`ca.pem`, `host-control.creds`,
/// `host-rpc.creds`, `registry.password`).
const DESCRIPTION: &str = "join.json";
/// The bundle's settings for `wash up` (docs/deploy.md), sourced in the unpacked bundle.
const WASH_UP_ENV: &str = "wash-up.env";
/// The bundle's directory of a NATS node's files, named as in a lattice's secrets directory.
const NODE_FILES: &str = "nats-node";

/// `wash-up.env`: wash's own variables for reaching the lattice as a host, and the variables
/// wash passes on to the host it starts (the registry, the CA: the launcher reads them,
/// local/launchers/host/src/wash_up.rs). Paths are the unpacked bundle's, where it is sourced;
/// the registry's password is read from its file there, never written into this one.
fn wash_up_env(lattice: &str, nats: SocketAddr, registry: &str) -> String {
    let user = crate::registry::USER;
    format!(
        "# Source in the unpacked join bundle's directory, then run `wash up` (docs/deploy.md).\n\
         export WASMCLOUD_LATTICE={lattice}\n\
         # This machine's NATS node when the bundle brings one, else the lattice's first.\n\
         export WASMCLOUD_NATS_HOST={} WASMCLOUD_NATS_PORT={}\n\
         export WASMCLOUD_CTL_CREDSFILE=\"$PWD/host-control.creds\"\n\
         export WASMCLOUD_RPC_CREDSFILE=\"$PWD/host-rpc.creds\"\n\
         export WASMCLOUD_CTL_TLS=true WASMCLOUD_RPC_TLS=true\n\
         export WASMCLOUD_CTL_TLS_CA_FILE=\"$PWD/ca.pem\" WASMCLOUD_TLS_CA_PATH=\"$PWD/ca.pem\"\n\
         export WASMCLOUD_OCI_REGISTRY={registry} WASMCLOUD_OCI_REGISTRY_USER={user}\n\
         WASMCLOUD_OCI_REGISTRY_PASSWORD=\"$(cat \"$PWD/registry.password\")\"\n\
         export WASMCLOUD_OCI_REGISTRY_PASSWORD\n",
        nats.ip(),
        nats.port()
    )
}

impl Stack {
    /// Writes the join bundle of this lattice to `target`, with what a NATS node at `node` needs
    /// when given. The lattice must ship through its registry: a host elsewhere cannot load
    /// `file://` paths of this machine.
    pub fn write_join_bundle(&self, target: &Path, node: Option<IpAddr>) -> Result<()> {
        if !self.config.registry {
            bail!("this lattice deploys files of this machine; bring it up with `--registry` so hosts elsewhere can pull what they run");
        }
        let secrets = self
            .secrets()
            .context("only a lattice on its own NATS has credentials to hand out")?;
        let staging = self.dir.join("join-bundle");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))?;
        let nats: Vec<String> = (1..=self.config.nats_nodes.max(1))
            .map(|node| self.nats_node_url(node))
            .collect::<Result<_>>()?;
        let mut description = serde_json::json!({
            "lattice": self.config.lattice,
            "nats": nats,
            "registry": self.registry_addr()?.to_string(),
            "registry_user": crate::registry::USER,
        });
        // `wash up` connects to the node of its own machine when the bundle brings one.
        let mut wash_up_nats = self.nats_node_addr(1)?;
        if let Some(address) = node {
            let joining = self.joining_node(address)?;
            let files = Secrets {
                dir: staging.join(NODE_FILES),
            };
            fs::create_dir_all(&files.dir)?;
            secrets.issue_node_certificate(address, &files)?;
            fs::copy(secrets.auth_conf(), files.auth_conf())?;
            wash_up_nats = joining.client;
            description["nats_node"] = joining.to_json();
        }
        fs::write(
            staging.join(DESCRIPTION),
            serde_json::to_string_pretty(&description)?,
        )?;
        fs::write(
            staging.join(WASH_UP_ENV),
            wash_up_env(
                &self.config.lattice,
                wash_up_nats,
                &self.registry_addr()?.to_string(),
            ),
        )?;
        for (from, to) in [
            (secrets.ca(), "ca.pem"),
            (secrets.creds(User::HostControl), "host-control.creds"),
            (secrets.creds(User::HostRpc), "host-rpc.creds"),
            (self.registry_password_file()?, "registry.password"),
        ] {
            fs::copy(&from, staging.join(to))?;
            fs::set_permissions(staging.join(to), fs::Permissions::from_mode(0o600))?;
        }
        // Made private before anything is written to it.
        fs::write(target, b"")?;
        fs::set_permissions(target, fs::Permissions::from_mode(0o600))?;
        run(Command::new("tar")
            .arg("-cf")
            .arg(target)
            .arg("-C")
            .arg(&staging)
            .arg("."))?;
        fs::remove_dir_all(&staging)?;
        step(&format!(
            "join bundle of lattice `{}` written to {} (mode 600: it holds the hosts' credentials)",
            self.config.lattice,
            target.display()
        ));
        Ok(())
    }
}

impl Stack {
    /// A NATS node joining this lattice's cluster at `address`: it takes clients and routes on
    /// the ports node 1 uses (on its own address), and routes to every node there is; the others
    /// learn it from whichever it reaches. A lattice on one node has no cluster to join: NATS
    /// cannot add JetStream peers to a server started without routes.
    fn joining_node(&self, address: IpAddr) -> Result<JoiningNode> {
        let cluster = self.cluster(1)?.with_context(|| {
            format!(
                "lattice `{}` runs a single NATS node, which no node can join; bring it up with \
                 `--nats-nodes 3`",
                self.config.lattice
            )
        })?;
        let mut routes = cluster.routes.clone();
        routes.insert(0, cluster.listen);
        Ok(JoiningNode {
            name: format!("pm-{}-{address}", self.config.lattice),
            client: SocketAddr::new(address, self.nats_node_addr(1)?.port()),
            cluster: Cluster {
                name: cluster.name,
                listen: SocketAddr::new(address, cluster.listen.port()),
                routes,
            },
        })
    }
}

/// Simulated machines joining a lattice (machines.rs): what an operator does on each machine,
/// done by the test run, with the documented commands (docs/deploy.md, "Adding a machine").
impl Stack {
    /// The name joined machine `index` runs under (`join --name`): its daemons are kept under
    /// `build/joined/<name>/`. Also its `zone` and `pm.host` labels.
    fn machine_name(&self, index: usize) -> String {
        format!("{}-m{index}", self.config.lattice)
    }

    /// The `zone` label of joined machine `index`: a zone of its own.
    pub(crate) fn machine_zone(index: usize) -> String {
        format!("m{index}")
    }

    fn machine_plan(&self, index: usize) -> Result<&crate::machines::MachinePlan> {
        let plan = self
            .config
            .machines
            .as_ref()
            .context("this lattice has no simulated machines")?;
        if !(1..=plan.addresses.len()).contains(&index) {
            bail!(
                "lattice `{}` has no simulated machine {index} (it has {})",
                self.config.lattice,
                plan.addresses.len()
            );
        }
        Ok(plan)
    }

    /// Whether joined machine `index` runs its host.
    pub(crate) fn machine_joined(&self, index: usize) -> bool {
        Joined::new(&self.machine_name(index))
            .host()
            .running_pid()
            .is_some()
    }

    /// Joins simulated machine `index` to the lattice: its bundle with a NATS node for the
    /// machine's address, then `cargo xtask join --nats-node` run on the machine (its network
    /// namespace), which starts the node and a host labelled with the machine's zone.
    pub fn join_machine(&self, index: usize) -> Result<()> {
        let plan = self.machine_plan(index)?;
        let bundle = self.dir.join(format!("machine-{index}.tar"));
        if !bundle.exists() {
            self.write_join_bundle(&bundle, Some(plan.addresses[index - 1].into()))?;
        }
        let zone = Self::machine_zone(index);
        crate::process::run_visible(
            Command::new("ip")
                .args(["netns", "exec", &plan.namespaces[index - 1]])
                .arg(std::env::current_exe()?)
                .arg("join")
                .arg(&bundle)
                .arg("--nats-node")
                .args(["--label", &format!("zone={zone}")])
                .args(["--label", &format!("pm.host={zone}")])
                .args(["--name", &self.machine_name(index)]),
        )
        .with_context(|| format!("joining machine {index}"))
    }

    /// Loses joined machine `index` the way a machine goes: its NATS node and its host (with
    /// its providers) SIGKILLed together, returning once they have exited.
    pub fn kill_machine(&self, index: usize) -> Result<()> {
        self.machine_plan(index)?;
        Joined::new(&self.machine_name(index)).kill()?;
        step(&format!(
            "machine {index} lost: its NATS node and host killed (SIGKILL) and exited"
        ));
        Ok(())
    }

    /// Brings joined machine `index` back the way it first joined.
    pub fn start_machine(&self, index: usize) -> Result<()> {
        self.join_machine(index)
    }

    /// Stops what every joined machine runs (`leave`), for the stack's `down`.
    pub(crate) fn leave_machines(&self) -> Result<()> {
        for index in 1..=self.machine_count() {
            Joined::new(&self.machine_name(index)).stop()?;
        }
        Ok(())
    }
}

/// What the bundle says of the NATS node it brings (`nats_node` in `join.json`).
struct JoiningNode {
    name: String,
    client: SocketAddr,
    cluster: Cluster,
}

impl JoiningNode {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "client": self.client.to_string(),
            "cluster": self.cluster.name,
            "cluster_listen": self.cluster.listen.to_string(),
            "routes": self.cluster.routes.iter().map(SocketAddr::to_string).collect::<Vec<_>>(),
        })
    }

    fn from_json(value: &serde_json::Value) -> Result<Self> {
        let addr = |v: &serde_json::Value| -> Result<SocketAddr> {
            v.as_str()
                .context("an address")?
                .parse()
                .context("an address")
        };
        Ok(JoiningNode {
            name: value["name"]
                .as_str()
                .context("the node's name")?
                .to_string(),
            client: addr(&value["client"])?,
            cluster: Cluster {
                name: value["cluster"]
                    .as_str()
                    .context("the cluster's name")?
                    .to_string(),
                listen: addr(&value["cluster_listen"])?,
                routes: value["routes"]
                    .as_array()
                    .context("the routes")?
                    .iter()
                    .map(addr)
                    .collect::<Result<_>>()?,
            },
        })
    }
}

/// What a bundle starts on a machine (a host, a NATS node or both), kept under
/// `build/joined/<name>/`.
pub struct Joined {
    dir: PathBuf,
}

/// What `join` starts from a bundle.
pub struct JoinOptions {
    pub labels: Vec<String>,
    /// Start the bundle's NATS node (`join-bundle --nats-node`).
    pub nats_node: bool,
    /// Start a host (not when a host is started otherwise, with `wash up`).
    pub host: bool,
}

impl Joined {
    pub fn new(name: &str) -> Self {
        Self {
            dir: paths::build().join("joined").join(name),
        }
    }

    fn host(&self) -> Daemon {
        Daemon::new(&self.dir, "host")
    }

    fn nats(&self) -> Daemon {
        Daemon::new(&self.dir, "nats")
    }

    /// Unpacks `bundle`, then starts what `options` asks for: the bundle's NATS node, which
    /// joins the cluster, and a host with its labels that joins the lattice through the node of
    /// this machine, or else the first of the lattice's nodes it can reach.
    pub fn start(&self, tools: &Tools, bundle: &Path, options: &JoinOptions) -> Result<()> {
        let files = self.dir.join("bundle");
        fs::create_dir_all(&files)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(bundle)
            .arg("-C")
            .arg(&files))
        .with_context(|| format!("unpacking the join bundle {}", bundle.display()))?;
        let description: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(files.join(DESCRIPTION))?)
                .context("the bundle's join.json")?;
        let lattice = description["lattice"]
            .as_str()
            .context("the bundle's lattice")?;
        let auth = crate::nats_client::NatsAuth {
            ca: Some(files.join("ca.pem")),
            creds: Some(files.join("host-control.creds")),
        };
        let own_node = if options.nats_node {
            let node = JoiningNode::from_json(&description["nats_node"]).context(
                "this bundle brings no NATS node: write it with `join-bundle --nats-node <address>`",
            )?;
            self.start_node(tools, &files, &node, &auth)?;
            Some(format!("tls://{}", node.client))
        } else {
            None
        };
        if !options.host {
            return Ok(());
        }
        if self.host().running_pid().is_some() {
            step(&format!(
                "joined host in {} already running",
                self.dir.display()
            ));
            return Ok(());
        }
        let url = match own_node {
            Some(url) => url,
            None => first_answering(&description)?,
        };
        let registry = description["registry"]
            .as_str()
            .context("the bundle's registry")?;
        let user = description["registry_user"]
            .as_str()
            .context("the bundle's registry user")?;
        step(&format!(
            "starting a host that joins lattice `{lattice}` through {url} (labels: {})",
            options.labels.join(", ")
        ));
        HostLaunch {
            nats_url: url,
            lattice: lattice.to_string(),
            credentials: Some(HostCredentials {
                control: files.join("host-control.creds"),
                rpc: files.join("host-rpc.creds"),
                ca: files.join("ca.pem"),
            }),
            registry: Some(RegistryAccess {
                address: registry.to_string(),
                user: user.to_string(),
                password_file: files.join("registry.password"),
            }),
            labels: options.labels.clone(),
            metrics: None,
            admin_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        }
        .start(tools, &self.host(), "the joined host to be ready")
    }

    /// Starts the bundle's NATS node and waits until JetStream answers through it: it has
    /// routed to the cluster and the cluster has a leader.
    fn start_node(
        &self,
        tools: &Tools,
        files: &Path,
        node: &JoiningNode,
        auth: &crate::nats_client::NatsAuth,
    ) -> Result<()> {
        let daemon = self.nats();
        if daemon.running_pid().is_some() {
            step(&format!("joined NATS node {} already running", node.name));
            return Ok(());
        }
        step(&format!(
            "starting NATS node {} on {}, joining cluster {} through {}",
            node.name,
            node.client,
            node.cluster.name,
            node.cluster
                .routes
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let secrets = Secrets {
            dir: files.join(NODE_FILES),
        };
        let conf = secrets.write_server_conf(
            node.client,
            &node.name,
            &self.dir.join("jetstream"),
            Some(&node.cluster),
        )?;
        daemon.spawn(Command::new(&tools.nats_server).arg("-c").arg(&conf))?;
        daemon.wait_ready(
            "the joined NATS node to serve JetStream",
            Duration::from_secs(60),
            || {
                let answer = crate::nats_client::request(node.client, auth, "$JS.API.INFO")?;
                Ok(answer.is_some_and(|a| !a.contains("\"error\"")))
            },
        )
    }

    /// Kills the host and the node at once (SIGKILL), as a machine that dies.
    fn kill(&self) -> Result<()> {
        self.host().kill_hard()?;
        self.nats().kill_hard()?;
        Ok(())
    }

    /// Stops what was started here: the host first, then the node it reached the lattice by.
    pub fn stop(&self) -> Result<bool> {
        let host = self.host().stop(Duration::from_secs(15))?;
        let node = self.nats().stop(Duration::from_secs(15))?;
        Ok(host || node)
    }
}

/// The first of the bundle's NATS nodes that answers: a host takes one address (it learns the
/// others there).
fn first_answering(description: &serde_json::Value) -> Result<String> {
    let nats: Vec<&str> = description["nats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str())
        .collect();
    nats.iter()
        .find(|url| {
            url.rsplit("//")
                .next()
                .and_then(|addr| addr.parse().ok())
                .is_some_and(|addr| net::listening(addr, Duration::from_millis(500)))
        })
        .map(|url| url.to_string())
        .with_context(|| format!("none of the lattice's NATS nodes answers: {nats:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sourced by a POSIX shell in a bundle's directory, `wash-up.env` gives wash and the host
    /// the lattice, the node, the bundle's own files and the registry's password from its file.
    #[test]
    fn wash_up_env_sourced_in_the_bundle_points_at_its_files() {
        let dir = std::env::temp_dir().join(format!("pm-wash-up-env-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("registry.password"), "s3cret\n").unwrap();
        fs::write(
            dir.join(WASH_UP_ENV),
            wash_up_env("pmx", "10.0.0.5:4223".parse().unwrap(), "10.0.0.1:5000"),
        )
        .unwrap();
        let shown = run(Command::new("sh").current_dir(&dir).args([
            "-c",
            ". ./wash-up.env && env | grep -E '^WASMCLOUD_' | sort",
        ]))
        .unwrap();
        let dir = dir.canonicalize().unwrap();
        for line in [
            "WASMCLOUD_LATTICE=pmx".to_string(),
            "WASMCLOUD_NATS_HOST=10.0.0.5".into(),
            "WASMCLOUD_NATS_PORT=4223".into(),
            format!(
                "WASMCLOUD_CTL_CREDSFILE={}/host-control.creds",
                dir.display()
            ),
            format!("WASMCLOUD_RPC_CREDSFILE={}/host-rpc.creds", dir.display()),
            format!("WASMCLOUD_TLS_CA_PATH={}/ca.pem", dir.display()),
            "WASMCLOUD_CTL_TLS=true".into(),
            "WASMCLOUD_OCI_REGISTRY=10.0.0.1:5000".into(),
            format!("WASMCLOUD_OCI_REGISTRY_USER={}", crate::registry::USER),
            "WASMCLOUD_OCI_REGISTRY_PASSWORD=s3cret".into(),
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} not in:\n{shown}");
        }
        assert!(!fs::read_to_string(dir.join(WASH_UP_ENV))
            .unwrap()
            .contains("s3cret"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
