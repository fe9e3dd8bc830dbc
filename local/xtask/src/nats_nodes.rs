//! The lattice's own NATS: one node, or a cluster of several (issue 19, `up --nats-nodes 3`)
//! whose JetStream streams (wadm's state, the hosts' config and lattice data, the secrets) are
//! replicated on three of them, so the lattice survives the loss of one node.
//!
//! Every node takes the same TLS certificate and accounts (security.rs); the nodes route to each
//! other over TLS, each proving itself with a certificate of the lattice's CA. Host `i` connects
//! to node `i` (in turn), so the clients are spread and a host outlives another node's loss;
//! a NATS client learns the other nodes from the one it reached and moves to them when its node
//! goes.
//!
//! wadm, the hosts and the secrets backend create their streams with one replica and have no
//! setting for more. wadm's are made with three before wadm first starts (`prepare_wadm_streams`:
//! wadm keeps streams it finds); the hosts' and the backend's key-value buckets are raised to
//! three once they have made them (`replicate_streams`: a bucket's replicas can change while it
//! serves). Raising wadm's event streams under its consumers did not work: wadm stopped getting
//! events (docs/operations.md).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::Daemon;
use crate::security::{Cluster, Secrets};
use crate::stack::Stack;
use crate::tools::Tools;
use crate::{nats_client, step};

/// How many copies of each stream a cluster keeps: the loss of one node leaves a majority.
const REPLICAS: u64 = 3;
/// The most nodes `down` looks for.
pub const MAX_NODES: usize = 5;

impl Stack {
    /// NATS node `index` (1-based; node 1 is `nats_addr`, where xtask itself connects).
    pub(crate) fn nats_node(&self, index: usize) -> Daemon {
        match index {
            1 => Daemon::new(&self.dir, "nats"),
            i => Daemon::new(&self.dir, &format!("nats-{i}")),
        }
    }

    /// Where clients reach node `index`.
    pub(crate) fn nats_node_addr(&self, index: usize) -> Result<SocketAddr> {
        match index {
            1 => Ok(self.nats_addr()),
            i => Ok(SocketAddr::new(
                self.own_ip(),
                self.kept_port(&format!("nats-{i}.port"))?,
            )),
        }
    }

    /// The node a host connects to: host `i` to node `i`, in turn.
    pub(crate) fn nats_node_of_host(&self, host: usize) -> usize {
        (host - 1) % self.config.nats_nodes.max(1) + 1
    }

    /// The URL of node `index` for the lattice's clients (TLS on our own NATS).
    pub(crate) fn nats_node_url(&self, index: usize) -> Result<String> {
        Ok(self.nats_url_of(self.nats_node_addr(index)?))
    }

    pub(crate) fn cluster(&self, index: usize) -> Result<Option<Cluster>> {
        let nodes = self.config.nats_nodes;
        if nodes < 2 {
            return Ok(None);
        }
        let route = |i: usize| -> Result<SocketAddr> {
            Ok(SocketAddr::new(
                self.own_ip(),
                self.kept_port(&format!("nats-{i}.cluster-port"))?,
            ))
        };
        Ok(Some(Cluster {
            name: format!("pm-{}", self.config.lattice),
            listen: route(index)?,
            routes: (1..=nodes)
                .filter(|i| *i != index)
                .map(route)
                .collect::<Result<_>>()?,
        }))
    }

    /// Starts every node not running, then waits until each takes the operator's requests and
    /// JetStream answers (in a cluster, once its nodes have elected a leader).
    pub(crate) fn start_nats_nodes(&self, tools: &Tools) -> Result<()> {
        // The nodes' certificate names the address clients and other nodes reach them at (a node
        // joining from another machine gets one for its own: `join-bundle --nats-node`).
        let secrets = Secrets::ensure(
            &self.dir.join("secrets"),
            &self.config.lattice,
            &[self.own_ip()],
        )?;
        let nodes = self.config.nats_nodes.max(1);
        for index in 1..=nodes {
            let daemon = self.nats_node(index);
            let addr = self.nats_node_addr(index)?;
            if daemon.running_pid().is_some() {
                step(&format!("NATS node {index} already running on {addr}"));
                continue;
            }
            step(&format!(
                "starting NATS {} node {index} of {nodes} with JetStream on {addr} (TLS; a user per kind of client)",
                crate::tools::NATS_VERSION
            ));
            let name = match index {
                1 => format!("pm-{}", self.config.lattice),
                i => format!("pm-{}-{i}", self.config.lattice),
            };
            let store = match index {
                1 => self.dir.join("jetstream"),
                i => self.dir.join(format!("jetstream-{i}")),
            };
            let conf =
                secrets.write_server_conf(addr, &name, &store, self.cluster(index)?.as_ref())?;
            daemon.spawn(Command::new(&tools.nats_server).arg("-c").arg(&conf))?;
        }
        for index in 1..=nodes {
            let addr = self.nats_node_addr(index)?;
            self.wait_alive(
                &self.nats_node(index),
                &format!("NATS node {index} to serve JetStream"),
                Duration::from_secs(30),
                // A whole request as the operator: a probe that left after the greeting would be
                // logged by NATS as a failed TLS handshake.
                || {
                    let answer = nats_client::request(addr, &self.operator_auth(), "$JS.API.INFO")?;
                    Ok(answer.is_some_and(|a| !a.contains("\"error\"")))
                },
            )?;
        }
        Ok(())
    }

    /// One JetStream API request as the operator; the answer, or the API's error as an error.
    fn jetstream(
        nats: &mut nats_client::Connection,
        subject: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let answer = nats
            .request_with(
                subject,
                payload.to_string().as_bytes(),
                nats_client::ANSWER_TIMEOUT,
            )?
            .with_context(|| format!("JetStream did not answer {subject}"))?;
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        if !answer["error"].is_null() {
            bail!("{subject}: {}", answer["error"]);
        }
        Ok(answer)
    }

    /// Makes wadm's streams and buckets with `REPLICAS` copies before wadm first starts (a
    /// cluster only). wadm 0.21.1 makes them with one copy and no setting for more, but keeps a
    /// stream it finds with the subjects it expects (`crates/wadm/src/nats.rs`, `ensure_*`), so
    /// these are its own configurations (`wadm_streams.json`, read from that file at v0.21.1)
    /// with three copies. Raising them after wadm made them did not work (measured: wadm stopped
    /// getting events), and one copy makes the node that holds it a machine the lattice cannot
    /// lose. Streams that exist are left as they are.
    pub(crate) fn prepare_wadm_streams(&self) -> Result<()> {
        if self.config.nats_nodes < REPLICAS as usize {
            return Ok(());
        }
        let streams: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("wadm_streams.json"))?;
        // As wadm's own user: the streams are wadm's, and the operator may not create streams.
        let auth = self.auth_as(crate::security::User::Wadm);
        let mut nats = nats_client::Connection::open(self.nats_addr(), &auth)?;
        let mut made = Vec::new();
        // In order: wadm_event_consumer sources two of the others.
        for config in streams {
            let name = config["name"].as_str().context("a stream name")?;
            let info = nats.request_with(
                &format!("$JS.API.STREAM.INFO.{name}"),
                b"",
                nats_client::ANSWER_TIMEOUT,
            )?;
            let exists = info
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                .is_some_and(|a| a["error"].is_null());
            if !exists {
                Self::jetstream(&mut nats, &format!("$JS.API.STREAM.CREATE.{name}"), &config)?;
                made.push(name.to_string());
            }
        }
        if !made.is_empty() {
            step(&format!(
                "wadm's streams made on {REPLICAS} NATS nodes: {}",
                made.join(", ")
            ));
        }
        Ok(())
    }

    /// Raises every key-value bucket of the lattice's account to `REPLICAS` copies (a cluster
    /// only): the hosts' and the secrets backend's, which they make with one. Returns the
    /// buckets' streams it raised.
    pub(crate) fn replicate_streams(&self) -> Result<Vec<String>> {
        if self.config.nats_nodes < REPLICAS as usize {
            return Ok(Vec::new());
        }
        let mut nats = nats_client::Connection::open(self.nats_addr(), &self.operator_auth())?;
        let mut ask = |subject: &str, payload: &serde_json::Value| {
            Self::jetstream(&mut nats, subject, payload)
        };
        let names = ask("$JS.API.STREAM.NAMES", &serde_json::json!({}))?;
        let mut raised = Vec::new();
        for name in names["streams"].as_array().into_iter().flatten() {
            let name = name.as_str().context("a stream name")?;
            if !name.starts_with("KV_") {
                continue;
            }
            let info = ask(
                &format!("$JS.API.STREAM.INFO.{name}"),
                &serde_json::json!({}),
            )?;
            let mut config = info["config"].clone();
            if config["num_replicas"].as_u64().unwrap_or(1) >= REPLICAS {
                continue;
            }
            config["num_replicas"] = REPLICAS.into();
            ask(&format!("$JS.API.STREAM.UPDATE.{name}"), &config)?;
            raised.push(name.to_string());
        }
        if !raised.is_empty() {
            step(&format!(
                "{} streams now kept on {REPLICAS} NATS nodes: {}",
                raised.len(),
                raised.join(", ")
            ));
        }
        Ok(raised)
    }
}
