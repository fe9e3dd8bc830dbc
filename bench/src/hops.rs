//! Where a request's calls go and what each kind of hop costs (issue 22).
//!
//! The bench lattice's host counts the calls its components make over links, by target and path
//! (`pm_link_calls_total`, local/launchers/host/src/metrics.rs): `local` is a call to a
//! component instance on the same host, in memory; `nats` one over the lattice, to a provider or
//! to a component elsewhere. Scraped before and after a case, the difference per request is the
//! case's calls per operation. The host's local calls can be switched off and on at run time
//! (SIGUSR1 / SIGUSR2), so one run measures both paths.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Report;

/// The manifest's capability providers (wadm names them `<application>-<name>`): calls to them
/// are component → provider hops; calls to any other target are component → component.
const PROVIDERS: [&str; 6] = [
    "kafka",
    "ticker",
    "postgres",
    "redis",
    "http-server",
    "nats-kv",
];

/// Calls by (target id, path) since the host started.
pub type Calls = BTreeMap<(String, String), u64>;

/// The bench lattice's one host: its metrics address and process id, from the stack's files.
pub struct Host {
    metrics: String,
    pid: String,
}

impl Host {
    pub fn from_stack() -> Result<Self> {
        let dir = std::path::PathBuf::from(std::env::var("PM_STACK_DIR").context("PM_STACK_DIR")?);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("{name} in the stack's directory"))
                .map(|text| text.trim().to_string())
        };
        Ok(Self {
            metrics: format!("http://{}/metrics", read("host-1.metrics")?),
            pid: read("host-1.pid")?,
        })
    }

    pub fn calls(&self) -> Result<Calls> {
        let text = ureq::get(&self.metrics).call()?.into_string()?;
        let mut calls = Calls::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("pm_link_calls_total{"))
        {
            let label = |name: &str| {
                let start = line.find(&format!("{name}=\""))? + name.len() + 2;
                let end = start + line[start..].find('"')?;
                Some(line[start..end].to_string())
            };
            let count = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok());
            if let (Some(target), Some(path), Some(count)) = (label("target"), label("path"), count)
            {
                calls.insert((target, path), count as u64);
            }
        }
        Ok(calls)
    }

    /// Switches the host's calls to components on it between memory (`true`) and NATS, and
    /// waits until `probe` (a request that makes such a call) is seen taking the new path.
    pub fn local_calls(&self, on: bool, probe: impl Fn() -> Result<()>) -> Result<()> {
        let signal = if on { "-USR2" } else { "-USR1" };
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} {} failed", self.pid);
        let path = if on { "local" } else { "nats" };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let before = self.calls()?;
            probe()?;
            let after = self.calls()?;
            if after.iter().any(|((target, p), n)| {
                p == path
                    && !is_provider(target)
                    && *n
                        > before
                            .get(&(target.clone(), p.clone()))
                            .copied()
                            .unwrap_or(0)
            }) {
                return Ok(());
            }
        }
        bail!("the host's calls did not switch to {path} within 10 s")
    }
}

fn is_provider(target: &str) -> bool {
    PROVIDERS
        .iter()
        .any(|name| target.ends_with(&format!("-{name}")))
}

/// What a case's requests called, per request: "target (path) n" for each, and the totals by hop
/// kind.
pub fn per_request(before: &Calls, after: &Calls, requests: usize) -> String {
    let mut parts = Vec::new();
    let (mut local, mut remote, mut provider) = (0.0, 0.0, 0.0);
    for ((target, path), n) in after {
        let made = (n - before
            .get(&(target.clone(), path.clone()))
            .copied()
            .unwrap_or(0)) as f64
            / requests as f64;
        if made < 0.005 {
            continue;
        }
        let short = target
            .rsplit_once('-')
            .map_or(target.as_str(), |(_, name)| name);
        parts.push(format!("{short} ({path}) {made:.2}"));
        match (is_provider(target), path.as_str()) {
            (true, _) => provider += made,
            (false, "local") => local += made,
            (false, _) => remote += made,
        }
    }
    format!(
        "{:.2} component→component local, {:.2} component→component over NATS, {:.2} component→provider: {}",
        local,
        remote,
        provider,
        parts.join(", ")
    )
}

/// Runs a closed-loop case (`crate::measure`) and what its requests called, per request.
pub fn measure_counted(
    host: &Host,
    name: &'static str,
    call: impl Fn() -> Result<()> + Send + Sync + 'static,
) -> Result<(Report, String)> {
    let before = host.calls()?;
    let report = crate::measure(name, call)?;
    let after = host.calls()?;
    let calls = per_request(&before, &after, crate::CALLS + crate::WARM_UP);
    Ok((report, calls))
}

/// Machine time of one hop: on saturated cores 1/throughput is the CPU a request costs, so a
/// hop costs the case with it minus the same case without it.
pub fn hop_cost(with: &Report, without: &Report) -> Duration {
    Duration::from_secs_f64((1.0 / with.per_second - 1.0 / without.per_second).max(0.0))
}
