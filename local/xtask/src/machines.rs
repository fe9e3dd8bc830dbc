//! Machines simulated on this one (issue 19): one Linux network namespace per machine, each with
//! its own address on a bridge the run owns, so what crosses between them crosses a network
//! (each machine has its own loopback, its own ports and routes; killing a machine's processes
//! takes its address off the lattice). The namespaces, their links and the bridge are made by
//! `Machines::create` and removed when the value is dropped; their addresses exist only inside
//! them and on the bridge, and nothing is routed anywhere else.
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::run;
use crate::step;

/// The simulated machines a stack's lattice spans: this machine is the lattice machine, at its
/// bridge address (`services`: the stack's NATS nodes, hosts, registry, broker and the data
/// stores' proxies listen there, as `up --address` has them), and machine `i` joins it with a
/// NATS node and a host of its own (`Stack::join_machine`). Kept in the stack's record
/// (`stores.json`) for the commands run on it later (`machine kill|start`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachinePlan {
    pub namespaces: Vec<String>,
    pub addresses: Vec<Ipv4Addr>,
    pub services: Ipv4Addr,
}

impl MachinePlan {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "namespaces": self.namespaces,
            "addresses": self.addresses.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>(),
            "services": self.services.to_string(),
        })
    }

    pub fn from_json(value: &serde_json::Value) -> Option<MachinePlan> {
        let strings = |key: &str| -> Option<Vec<String>> {
            value[key]
                .as_array()?
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        Some(MachinePlan {
            namespaces: strings("namespaces")?,
            addresses: strings("addresses")?
                .iter()
                .map(|a| a.parse().ok())
                .collect::<Option<_>>()?,
            services: value["services"].as_str()?.parse().ok()?,
        })
    }
}

/// A set of simulated machines: `ip netns` namespaces on a bridge.
pub struct Machines {
    /// Names the bridge, the namespaces and their links, so runs never share one.
    tag: String,
    /// The /24 the bridge and the machines take addresses in.
    subnet: [u8; 3],
    count: usize,
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args)).with_context(|| format!("ip {}", args.join(" ")))
}

impl Machines {
    /// `count` machines on a new bridge. `id` (a small number unique among concurrent runs,
    /// such as the process id) picks the names and the subnet, 10.213.<id % 250>.0/24, which
    /// must not be routed already.
    pub fn create(id: u32, count: usize) -> Result<Machines> {
        let machines = Machines {
            tag: format!("pm{}", id % 100_000),
            subnet: [10, 213, (id % 250) as u8 + 1],
            count,
        };
        let prefix = format!(
            "{}.{}.{}.",
            machines.subnet[0], machines.subnet[1], machines.subnet[2]
        );
        if ip(&["-4", "route", "show"])?.contains(&prefix) {
            bail!("{prefix}0/24 is routed already: another run's machines, or this machine's own network");
        }
        step(&format!(
            "simulating {count} machines: network namespaces on bridge {} ({prefix}0/24)",
            machines.bridge()
        ));
        // Made before the first command, so a failure half-way removes what was made.
        let bridge = machines.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", machines.bridge_address()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for index in 1..=count {
            let (ns, outside, inside) = (
                machines.namespace(index),
                format!("{}h{index}", machines.tag),
                format!("{}m{index}", machines.tag),
            );
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            let address = format!("{}/24", machines.address(index));
            for args in [
                vec!["addr", "add", address.as_str(), "dev", inside.as_str()],
                vec!["link", "set", inside.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                ip(&[&["netns", "exec", ns.as_str(), "ip"], args.as_slice()].concat())?;
            }
        }
        Ok(machines)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace of machine `index` (1-based).
    pub fn namespace(&self, index: usize) -> String {
        format!("{}-m{index}", self.tag)
    }

    /// Machine `index`'s address (1-based): .11, .12, ...
    pub fn address(&self, index: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + index as u8)
    }

    /// This machine's own address on the bridge (.1): where the services it keeps for the
    /// simulated machines (the data stores, the registry) are reached.
    pub fn bridge_address(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// `program` to be run on machine `index`.
    #[cfg(test)]
    pub fn command(&self, index: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(index)])
            .arg(program);
        command
    }

    /// The stack's view of the first `count` machines, where it runs its NATS nodes and hosts
    /// (the others are left for what joins later).
    pub fn plan(&self, count: usize) -> MachinePlan {
        let count = count.min(self.count);
        MachinePlan {
            namespaces: (1..=count).map(|i| self.namespace(i)).collect(),
            addresses: (1..=count).map(|i| self.address(i)).collect(),
            services: self.bridge_address(),
        }
    }
}

impl Drop for Machines {
    /// Removes the namespaces (their ends of the links go with them, and the other ends with
    /// those) and the bridge. A process still running in a namespace would keep it alive: the
    /// stack stops its own first, and whatever is left (a host a test started there by hand, say,
    /// when the test failed before stopping it) is killed here.
    fn drop(&mut self) {
        for index in 1..=self.count {
            let namespace = self.namespace(index);
            if let Ok(pids) = ip(&["netns", "pids", &namespace]) {
                for pid in pids.split_whitespace() {
                    let _ = run(Command::new("kill").args(["-KILL", pid]));
                }
            }
            let _ = ip(&["netns", "del", &namespace]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    /// A TCP listener on machine 2's address answers machine 1 and this machine (through the
    /// bridge); one on this machine's loopback answers this machine but not machine 1; and
    /// everything is gone after the drop.
    #[test]
    fn machines_reach_each_other_and_nothing_else_and_go_away() {
        if !root() {
            eprintln!("skipped: making network namespaces needs root");
            return;
        }
        let machines = Machines::create(std::process::id() % 1000 + 3000, 2).unwrap();
        // A listener on machine 2's address, and one on this machine's loopback.
        let port = crate::net::free_port().unwrap();
        let listener = |command: &mut Command, address: String| {
            let mut child = command
                .args([
                    "-c",
                    &format!(
                        "import socket; s = socket.socket(); s.bind(('{address}', {port})); s.listen(); \
                         print('ready', flush=True)\nwhile True: c, _ = s.accept(); c.sendall(b'hi'); c.close()"
                    ),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut ready = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut ready,
            )
            .unwrap();
            assert_eq!(ready.trim(), "ready");
            child
        };
        let on_machine_2 = listener(
            &mut machines.command(2, std::path::Path::new("python3")),
            machines.address(2).to_string(),
        );
        let on_loopback = listener(&mut Command::new("python3"), "127.0.0.1".into());
        let reach = |from: Option<usize>, address: &str| {
            let script = format!(
                "import socket; socket.create_connection(('{address}', {port}), timeout=2).recv(2)"
            );
            let mut command = match from {
                Some(index) => machines.command(index, std::path::Path::new("python3")),
                None => Command::new("python3"),
            };
            command
                .args(["-c", &script])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        let machine_2 = machines.address(2).to_string();
        assert!(reach(Some(1), &machine_2), "machine 1 → machine 2");
        assert!(reach(None, &machine_2), "this machine → machine 2");
        assert!(reach(None, "127.0.0.1"), "this machine → its own loopback");
        assert!(
            !reach(Some(1), "127.0.0.1"),
            "machine 1 reached this machine's loopback"
        );
        for mut child in [on_machine_2, on_loopback] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let namespace = machines.namespace(1);
        drop(machines);
        let left = ip(&["netns", "list"]).unwrap();
        assert!(!left.contains(&namespace), "{left}");
    }
}
