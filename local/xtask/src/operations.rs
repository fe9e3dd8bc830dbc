//! Operating a running lattice: losing a host and getting it back, waiting for wadm to put
//! everything back in place, and replacing a component's image while it serves (hot swap).
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::run;
use crate::stack::{instance_count, instances_on, running, Stack};
use crate::tools::{fnv1a, Tools, FNV_OFFSET};
use crate::{manifest, net, paths, step};

/// The platform's HTTP listener (the built-in http-server provider). (The test probe's listener
/// belongs to another application and does not count.)
const LISTENER: &str = "http-server";

impl Stack {
    /// The inventories of the hosts that run the platform's provider `name`.
    fn hosts_running(&self, name: &str) -> Result<Vec<serde_json::Value>> {
        let id = provider_id(name);
        Ok(self
            .inventories()?
            .into_iter()
            .filter(|host| {
                host["providers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["id"] == id.as_str())
            })
            .collect())
    }

    /// Our index (`pm.host` label) of each host holding the HTTP listener.
    fn listener_hosts(&self) -> Result<Vec<String>> {
        Ok(self
            .hosts_running(LISTENER)?
            .iter()
            .filter_map(|host| host["labels"]["pm.host"].as_str().map(str::to_string))
            .collect())
    }

    /// Each running host's Prometheus endpoint; the one whose host holds the HTTP listener (where
    /// the gateway answers every request, so where the per-route series are) is marked.
    pub fn metrics_urls(&self) -> Vec<String> {
        let listeners = self.listener_hosts().unwrap_or_default();
        self.running_hosts()
            .into_iter()
            .filter_map(|i| {
                let addr = fs::read_to_string(self.dir.join(format!("host-{i}.metrics"))).ok()?;
                let mark = if listeners.contains(&i.to_string()) {
                    " (per route)"
                } else {
                    ""
                };
                Some(format!("http://{}/metrics{mark}", addr.trim()))
            })
            .collect()
    }

    /// Kills a host that does not hold the HTTP listener the way a lost machine goes: SIGKILL to
    /// it and its providers, no goodbye to the lattice. Returns its index (`pm.host` label).
    pub fn kill_host(&self) -> Result<usize> {
        let victim = self.host_without_listener()?;
        self.host(victim).kill_hard()?;
        step(&format!(
            "host {victim} killed (SIGKILL, with its providers)"
        ));
        Ok(victim)
    }

    /// Stops a host that does not serve HTTP (SIGSTOP) and returns its index: its components stop
    /// answering the calls NATS routes to them, as on a machine that hangs.
    pub fn pause_host(&self) -> Result<usize> {
        let victim = self.host_without_listener()?;
        self.host(victim).pause(true)?;
        step(&format!("host {victim} paused (SIGSTOP)"));
        Ok(victim)
    }

    pub fn resume_host(&self, index: usize) -> Result<()> {
        self.host(index).pause(false)?;
        step(&format!("host {index} resumed (SIGCONT)"));
        Ok(())
    }

    /// Waits until a host with each `zone` label the platform is spread over (`up --zones`)
    /// has joined, saying what to run on the machines meanwhile: wadm reports a spread that no
    /// host can take as failed, so the platform is deployed once every zone has a host.
    pub fn wait_for_zones(&self, timeout: Duration) -> Result<()> {
        let missing = || -> Result<Vec<String>> {
            let present: Vec<String> = self
                .inventories()?
                .iter()
                .filter_map(|host| host["labels"]["zone"].as_str().map(str::to_string))
                .collect();
            Ok(self
                .config
                .zones
                .iter()
                .filter(|zone| !present.contains(zone))
                .cloned()
                .collect())
        };
        let waiting = missing()?;
        if waiting.is_empty() {
            return Ok(());
        }
        step(&format!(
            "waiting for a host in zone(s) {} (on each machine: `cargo xtask join-bundle FILE \
             --nats-node <its address>` here, then `cargo xtask join FILE --nats-node --label \
             zone=<zone>` there; docs/deploy.md)",
            waiting.join(", ")
        ));
        net::wait_for(
            "a host in every zone",
            timeout,
            || Ok(missing()?.is_empty()),
        )
    }

    fn host_without_listener(&self) -> Result<usize> {
        let listeners = self.listener_hosts()?;
        self.running_hosts()
            .into_iter()
            .find(|i| !listeners.contains(&i.to_string()))
            .context("no running host without the HTTP listener (start with --hosts 2 or more)")
    }

    /// Waits until the live hosts run every component at the manifest's count, spread over
    /// every live zone, wadm reports the application deployed and the gateway's `/ready` is 200. Returns how
    /// long that took.
    pub fn settle(&self, tools: &Tools, timeout: Duration) -> Result<Duration> {
        let (_, deployed) = self.deployed_manifest()?;
        let wanted = manifest::component_instances(&deployed);
        let started = Instant::now();
        net::wait_for("the application to be whole again", timeout, || {
            let inventories = self.inventories()?;
            for (component, count) in &wanted {
                // Instances per zone (the `zone` label wadm spreads on).
                let mut per_zone = std::collections::BTreeMap::<String, u64>::new();
                for host in &inventories {
                    let zone = host["labels"]["zone"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    *per_zone.entry(zone).or_default() += instances_on(host, component);
                }
                let placed: u64 = per_zone.values().sum();
                if placed != u64::from(*count) {
                    bail!("{component}: {placed} of {count} instances on the live hosts");
                }
                // Spread: with enough instances, every live zone runs some.
                if *count as usize >= per_zone.len() && per_zone.values().any(|n| *n == 0) {
                    bail!("{component}: not in every live zone yet ({per_zone:?})");
                }
            }
            if !self.app_deployed(tools, manifest::APP_NAME) {
                bail!("wadm does not report the application deployed yet");
            }
            self.platform_ready()?;
            Ok(true)
        })?;
        Ok(started.elapsed())
    }

    /// Replaces `component`'s image with `wasm` while it serves, and records the new image in the
    /// manifest wadm holds, so later reconciling (scaling, a lost host) keeps it.
    /// The new manifest version is deployed first; wadm rolls it out host by host as an in-place
    /// update (see patches.rs). `in_place` also runs `wash update component` on every host that
    /// runs the component at once. Either way no instance is stopped before its successor serves.
    pub fn swap(&self, tools: &Tools, component: &str, wasm: &Path, in_place: bool) -> Result<()> {
        let (path, deployed) = self.deployed_manifest()?;
        let copy = release_copy(component, wasm)?;
        // On a lattice that ships through its registry, the new build goes there too.
        let image = if self.config.registry {
            self.push_artifact(tools, component, &copy)?
        } else {
            format!("file://{}", copy.display())
        };
        if manifest::image(&deployed, component)? == image {
            step(&format!("{component} already runs {image}"));
            return Ok(());
        }
        let started = Instant::now();
        // The manifest first: wadm reconciles running instances to it, so a host updated before
        // wadm knew the new image would be put back (hitlessly, but back) until it did.
        fs::write(&path, manifest::with_image(&deployed, component, &image)?)?;
        step(&format!(
            "deploying the manifest with {component} at {image}"
        ));
        run(self.wash(tools).args(["app", "deploy"]).arg(&path))?;
        if in_place {
            // Then each host directly, without waiting for wadm's next pass.
            for host in self.inventories()? {
                let host_id = host["host_id"].as_str().unwrap_or_default();
                for instance in running(&host, component) {
                    let id = instance["id"].as_str().unwrap_or_default();
                    step(&format!("wash update component {id} on host {host_id:.8}…"));
                    run(self.wash(tools).args([
                        "update",
                        "component",
                        "--host-id",
                        host_id,
                        id,
                        &image,
                    ]))?;
                }
            }
        }
        let count = manifest::component_instances(&deployed)
            .into_iter()
            .find_map(|(name, count)| (name == component).then_some(u64::from(count)))
            .with_context(|| format!("`{component}` is not a component of the manifest"))?;
        net::wait_for(
            &format!("every {component} instance to run the new image"),
            Duration::from_secs(120),
            || {
                let (mut new, mut old) = (0, 0);
                for host in self.inventories()? {
                    for instance in running(&host, component) {
                        let n = instance_count(instance);
                        if instance["image_ref"] == image.as_str() {
                            new += n
                        } else {
                            old += n
                        }
                    }
                }
                if new != count || old != 0 {
                    bail!("{new} of {count} instances on the new image, {old} on another");
                }
                Ok(self.app_deployed(tools, manifest::APP_NAME))
            },
        )?;
        step(&format!(
            "{component} swapped to {image} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
    /// Restarts `provider` on every host that runs it, one host at a time, while it serves.
    /// Each instance stops taking calls, finishes those in progress and exits (drain.rs); wadm
    /// starts it again, and the next host's goes only once the new one answers its `serving`
    /// subject. Meanwhile the other hosts' instances take the calls, so none is lost; on a
    /// one-host lattice calls made in the gap fail at once (NATS has no one to hand them to).
    /// Returns how many instances it restarted.
    pub fn restart_provider(&self, tools: &Tools, provider: &str) -> Result<usize> {
        let id = provider_id(provider);
        let hosts: Vec<String> = self
            .hosts_running(provider)?
            .iter()
            .filter_map(|host| host["host_id"].as_str().map(str::to_string))
            .collect();
        if hosts.is_empty() {
            bail!("no host runs provider `{id}`");
        }
        for host_id in &hosts {
            // What providers/support/src/drain.rs answers on while it serves.
            let subject = format!("pm.{}.serving.{id}.{host_id}", self.config.lattice);
            let before = self
                .nats_request(&subject)?
                .with_context(|| format!("{id} on host {host_id:.8} does not answer {subject}"))?;
            let started = Instant::now();
            step(&format!(
                "stopping {id} on host {host_id:.8} (it finishes its calls first)…"
            ));
            run(self.wash(tools).args([
                "stop",
                "provider",
                "--timeout-ms",
                "20000",
                "--host-id",
                host_id,
                &id,
            ]))?;
            net::wait_for(
                &format!("wadm to start {id} again on host {host_id:.8}"),
                Duration::from_secs(120),
                || {
                    let now = self.nats_request(&subject)?;
                    Ok(now.is_some_and(|now| now != before))
                },
            )?;
            step(&format!(
                "{id} on host {host_id:.8} serving again after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(hosts.len())
    }
}

/// The id wadm gives the platform's provider `name`: `<app>-<name>`, in each part every character
/// other than a letter or digit made `_` (`patient_management-http_server`).
fn provider_id(name: &str) -> String {
    let wadm_name = |part: &str| -> String {
        part.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("{}-{}", wadm_name(manifest::APP_NAME), wadm_name(name))
}

/// `wasm` copied to `build/releases/<component>-<content hash>.wasm`: an image reference names
/// one build for good, so hosts and wadm can tell builds apart and a rollback is a swap to an
/// earlier release.
fn release_copy(component: &str, wasm: &Path) -> Result<PathBuf> {
    let bytes = fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let dir = paths::build().join("releases");
    fs::create_dir_all(&dir)?;
    let release = dir.join(format!(
        "{component}-{:016x}.wasm",
        fnv1a(FNV_OFFSET, bytes.iter().copied())
    ));
    if !release.exists() {
        fs::write(&release, &bytes)?;
    }
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_spelled_as_wadm_spells_them() {
        assert_eq!(provider_id(LISTENER), "patient_management-http_server");
        assert_eq!(provider_id("postgres"), "patient_management-postgres");
    }
}
