//! The wadm manifest in `wadm/` is the source of truth. A stack deploys a rendered copy: image
//! paths made absolute (the copy lives elsewhere) and the gateway's listen port set to the
//! stack's, so a test lattice never collides with the one on 4004.
use std::path::Path;

use anyhow::{ensure, Context, Result};

pub const APP_NAME: &str = "patient-management";
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:4004";
pub const DEFAULT_BROKER_ADDRESS: &str = "127.0.0.1:9092";
/// The provider probe's listener (test manifest only).
pub const DEFAULT_PROBE_ADDRESS: &str = "127.0.0.1:4014";
/// The manifest's database and key prefix for local runs; a test stack swaps in its own so its
/// data never mixes with a running platform's or another test run's.
pub const DEFAULT_DATABASE: &str = "patient_management";
/// The data stores' ports in the manifest; a test stack may put fault proxies in front of them.
pub const DEFAULT_POSTGRES_PORT: u16 = 5432;
pub const DEFAULT_REDIS_PORT: u16 = 6379;
pub const DEFAULT_KEY_PREFIX: &str = "patient-management:";

/// Where one stack's manifest differs from the checked-in one.
pub struct Overrides {
    pub http_port: u16,
    pub probe_port: u16,
    pub broker_port: u16,
    pub database: String,
    pub key_prefix: String,
    /// Requests per second and burst per client, for a bench lattice that must not measure 429s.
    pub rate_limit: Option<u32>,
    pub postgres_port: u16,
    pub redis_port: u16,
    /// The hosts' `zone` labels; with two or more, every component is spread evenly across them.
    pub zones: Vec<String>,
    /// Where the providers reach Postgres, Redis and the broker (127.0.0.1 on one machine).
    pub services_host: String,
    /// An HTTP listener on every host (each on its own machine), or one in the lattice.
    pub listener_on_every_host: bool,
}

/// The manifest's single HTTP listener (a spread of one instance)...
const ONE_LISTENER: &str =
    "        # One listener in the lattice: on several hosts each would bind the same address.
        - type: spreadscaler
          properties:
            instances: 1
";
/// ...and a listener on every host, when each host is on a machine of its own.
const LISTENER_ON_EVERY_HOST: &str =
    "        # A listener on every host: each host is on a machine of its own.
        - type: daemonscaler
          properties:
            instances: 1
";

pub fn render(text: &str, manifest_dir: &Path, overrides: &Overrides) -> Result<String> {
    ensure!(
        text.contains(DEFAULT_HTTP_ADDRESS) || text.contains(DEFAULT_PROBE_ADDRESS),
        "the manifest names neither {DEFAULT_HTTP_ADDRESS} nor {DEFAULT_PROBE_ADDRESS}; update xtask"
    );
    let services = &overrides.services_host;
    let (listener, http_ip) = if overrides.listener_on_every_host {
        ensure!(
            text.contains(ONE_LISTENER) || !text.contains(DEFAULT_HTTP_ADDRESS),
            "the manifest's HTTP listener is not the spread of one xtask knows; update xtask"
        );
        // Each machine's listener on all its addresses: one link config serves every host.
        (LISTENER_ON_EVERY_HOST, "0.0.0.0")
    } else {
        (ONE_LISTENER, "127.0.0.1")
    };
    let text = text
        .replace(ONE_LISTENER, listener)
        .replace(
            DEFAULT_HTTP_ADDRESS,
            &format!("{http_ip}:{}", overrides.http_port),
        )
        .replace(
            DEFAULT_PROBE_ADDRESS,
            &format!("127.0.0.1:{}", overrides.probe_port),
        )
        .replace(
            DEFAULT_BROKER_ADDRESS,
            &format!("{services}:{}", overrides.broker_port),
        )
        .replace(
            "POSTGRES_HOST: 127.0.0.1\n",
            &format!("POSTGRES_HOST: {services}\n"),
        )
        .replace(
            &format!("POSTGRES_PORT: \"{DEFAULT_POSTGRES_PORT}\""),
            &format!("POSTGRES_PORT: \"{}\"", overrides.postgres_port),
        )
        .replace(
            &format!("redis://127.0.0.1:{DEFAULT_REDIS_PORT}/"),
            &format!("redis://{services}:{}/", overrides.redis_port),
        )
        .replace(DEFAULT_DATABASE, &overrides.database)
        .replace(DEFAULT_KEY_PREFIX, &overrides.key_prefix);
    let text = match overrides.rate_limit {
        Some(n) => text
            .replace(
                "rate_limit_per_second: \"5\"",
                &format!("rate_limit_per_second: \"{n}\""),
            )
            .replace(
                "rate_limit_burst: \"5\"",
                &format!("rate_limit_burst: \"{n}\""),
            ),
        None => text,
    };
    let text = spread_across(&text, &overrides.zones);
    Ok(absolute_file_urls(&text, manifest_dir))
}

/// Every spread scaler of `text` split evenly across `zones` (the hosts' `zone` labels), so the
/// hosts of one zone going away leaves the others serving every component. With one zone the
/// text is unchanged: a spread that no host matches would keep the application from deploying.
pub fn spread_across(text: &str, zones: &[String]) -> String {
    if zones.len() < 2 {
        return text.to_string();
    }
    let weight = 100 / zones.len();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        // A single instance (the HTTP listener) is left for wadm to place on any one host.
        if line.trim_start().starts_with("instances: ") && line.trim() != "instances: 1" {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!("{indent}spread:\n"));
            for zone in zones {
                out.push_str(&format!(
                    "{indent}  - name: zone-{zone}\n{indent}    requirements:\n{indent}      zone: {zone}\n{indent}    weight: {weight}\n"
                ));
            }
        }
    }
    out
}

/// `file://../build/x.wasm` (relative to the manifest, as `wash app deploy` reads it) becomes
/// `file:///abs/build/x.wasm`.
fn absolute_file_urls(text: &str, base: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("file://") {
        let (before, after) = rest.split_at(at + "file://".len());
        out.push_str(before);
        if !after.starts_with('/') {
            let end = after
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(after.len());
            let joined = base.join(&after[..end]);
            out.push_str(&normalize(&joined));
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Resolves `.` and `..` without touching the file system (the file may not be built yet).
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.to_str().unwrap_or_default().split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// An artifact a manifest expects under `build/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Artifact {
    /// Path below `build/`, e.g. `gateway.wasm` or `probe/redis-provider.par.gz`.
    pub path: String,
    /// The workspace package that produces it (the file stem).
    pub package: String,
    /// `wasm` (a component) or `par.gz` (a provider archive).
    pub kind: String,
}

/// The artifacts a manifest's `file://.../build/...` images name. A provider archive may sit in
/// a subdirectory: the host caches provider binaries by image path, so two applications on one
/// host need two paths for the same provider.
pub fn artifacts(text: &str) -> Vec<Artifact> {
    let mut found = Vec::new();
    for chunk in text.split("file://").skip(1) {
        let path: String = chunk
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        let Some((_, below)) = path.split_once("build/") else {
            continue;
        };
        let file = below.rsplit('/').next().unwrap_or(below);
        for kind in ["wasm", "par.gz"] {
            if let Some(package) = file.strip_suffix(&format!(".{kind}")) {
                found.push(Artifact {
                    path: below.to_string(),
                    package: package.to_string(),
                    kind: kind.to_string(),
                });
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `text` with the spread scaler of `component` asking for `instances` (0 stops it): how the
/// outage tests take a component away without wadm putting it straight back.
/// The text of `component`'s entry: from its `- name:` line to the next entry.
fn component_block(text: &str, component: &str) -> Result<(usize, usize)> {
    let start = text
        .find(&format!("\n    - name: {component}\n"))
        .with_context(|| format!("no component `{component}` in the manifest"))?;
    let end = text[start + 1..]
        .find("\n    - name: ")
        .map_or(text.len(), |i| start + 1 + i);
    Ok((start, end))
}

/// `text` with the value of the first `key: ` line of `component`'s entry replaced.
fn with_property(text: &str, component: &str, key: &str, value: &str) -> Result<String> {
    let (start, end) = component_block(text, component)?;
    let block = &text[start..end];
    let at = block
        .find(&format!("{key}: "))
        .with_context(|| format!("component `{component}` has no `{key}`"))?;
    let line_end = block[at..].find('\n').map_or(block.len(), |i| at + i);
    Ok(format!(
        "{}{key}: {value}{}",
        &text[..start + at],
        &text[start + line_end..]
    ))
}

pub fn with_instances(text: &str, component: &str, instances: u32) -> Result<String> {
    with_property(text, component, "instances", &instances.to_string())
        .with_context(|| format!("component `{component}` has no spread scaler"))
}

pub fn with_image(text: &str, component: &str, image: &str) -> Result<String> {
    with_property(text, component, "image", image)
}

/// The image of `component` in `text`.
pub fn image(text: &str, component: &str) -> Result<String> {
    let (start, end) = component_block(text, component)?;
    let block = &text[start..end];
    let at = block
        .find("image: ")
        .with_context(|| format!("component `{component}` has no image"))?;
    let rest = &block[at + "image: ".len()..];
    Ok(rest[..rest.find('\n').unwrap_or(rest.len())]
        .trim()
        .trim_matches('"')
        .to_string())
}

/// Every wasm component of `text` with the instances its spread scaler asks for.
pub fn component_instances(text: &str) -> Vec<(String, u32)> {
    text.split("\n    - name: ")
        .skip(1)
        .filter(|block| block.contains("\n      type: component\n"))
        .filter_map(|block| {
            let name = block.lines().next()?.trim().to_string();
            let at = block.find("instances: ")?;
            let count = block[at + "instances: ".len()..]
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()?;
            Some((name, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn instances_change_only_for_the_named_component() {
        let text = "spec:\n  components:\n    - name: gateway\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 20\n    - name: billing\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 4\n    - name: redis\n      type: capability\n";
        let out = super::with_instances(text, "billing", 0).unwrap();
        assert!(out.contains("instances: 20\n    - name: billing"));
        assert!(out.contains("            instances: 0\n    - name: redis"));
        assert!(super::with_instances(text, "redis", 1).is_err());
        assert!(super::with_instances(text, "nothing", 1).is_err());
    }

    #[test]
    fn images_and_counts_of_components() {
        let text = "spec:\n  components:\n    - name: gateway\n      type: component\n      properties:\n        image: file:///b/gateway.wasm\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 20\n    - name: redis\n      type: capability\n      properties:\n        image: file:///b/redis.par.gz\n      traits:\n        - type: daemonscaler\n          properties:\n            instances: 1\n";
        assert_eq!(
            super::component_instances(text),
            vec![("gateway".to_string(), 20)]
        );
        let swapped = super::with_image(text, "gateway", "file:///r/gateway-1.wasm").unwrap();
        assert_eq!(
            super::image(&swapped, "gateway").unwrap(),
            "file:///r/gateway-1.wasm"
        );
        assert_eq!(
            super::image(&swapped, "redis").unwrap(),
            "file:///b/redis.par.gz"
        );
    }

    use super::*;

    const SAMPLE: &str = "image: file://../build/gateway.wasm\n\
        image: file:///already/abs.wasm\n\
        image: \"file://../../build/redis.par.gz\"\n\
        address: 127.0.0.1:4004\n\
        BROKERS: 127.0.0.1:9092\n\
        POSTGRES_DATABASE: patient_management\n\
        POSTGRES_PORT: \"5432\"\n\
        URL: redis://127.0.0.1:6379/0\n\
        KEY_PREFIX: \"patient-management:\"\n";

    fn overrides() -> Overrides {
        Overrides {
            http_port: 5555,
            probe_port: 6666,
            broker_port: 7777,
            database: "pm_t1".into(),
            key_prefix: "t1:".into(),
            rate_limit: None,
            postgres_port: 15432,
            redis_port: 16379,
            zones: vec!["a".into()],
            services_host: "127.0.0.1".into(),
            listener_on_every_host: false,
        }
    }

    #[test]
    fn machines_get_a_listener_each_and_reach_the_stores_at_their_address() {
        let text = format!("{SAMPLE}        POSTGRES_HOST: 127.0.0.1\n{ONE_LISTENER}");
        let out = render(
            &text,
            Path::new("/repo/wadm"),
            &Overrides {
                services_host: "10.1.2.1".into(),
                listener_on_every_host: true,
                ..overrides()
            },
        )
        .unwrap();
        assert!(out.contains("address: 0.0.0.0:5555"), "{out}");
        assert!(out.contains(LISTENER_ON_EVERY_HOST) && !out.contains(ONE_LISTENER));
        assert!(out.contains("BROKERS: 10.1.2.1:7777"), "{out}");
        assert!(out.contains("POSTGRES_HOST: 10.1.2.1\n"), "{out}");
        assert!(out.contains("URL: redis://10.1.2.1:16379/0"), "{out}");
    }

    #[test]
    fn several_zones_spread_every_scaler_one_zone_changes_nothing() {
        let text = "      traits:\n        - type: spreadscaler\n          properties:\n            instances: 4\n        - type: link\n";
        assert_eq!(super::spread_across(text, &["a".into()]), text);
        let spread = super::spread_across(text, &["a".into(), "b".into()]);
        assert!(spread.contains(
            "            instances: 4\n            spread:\n              - name: zone-a\n                requirements:\n                  zone: a\n                weight: 50\n              - name: zone-b\n"
        ), "{spread}");
        assert!(spread.ends_with("        - type: link\n"));
    }

    #[test]
    fn renders_absolute_paths_ports_and_data_names() {
        let out = render(SAMPLE, Path::new("/repo/wadm"), &overrides()).unwrap();
        assert!(
            out.contains("image: file:///repo/build/gateway.wasm\n"),
            "{out}"
        );
        assert!(out.contains("file:///already/abs.wasm"));
        assert!(out.contains("\"file:///build/redis.par.gz\""), "{out}");
        assert!(out.contains("address: 127.0.0.1:5555"));
        assert!(out.contains("BROKERS: 127.0.0.1:7777"));
        assert!(out.contains("POSTGRES_DATABASE: pm_t1\n"));
        assert!(out.contains("KEY_PREFIX: \"t1:\""));
        assert!(out.contains("POSTGRES_PORT: \"15432\"\n"), "{out}");
        assert!(out.contains("URL: redis://127.0.0.1:16379/0\n"), "{out}");
    }

    #[test]
    fn a_bench_lattice_lifts_the_rate_limit() {
        let text =
            "address: 127.0.0.1:4004\nrate_limit_per_second: \"5\"\nrate_limit_burst: \"5\"\n";
        let out = render(
            text,
            Path::new("/r/wadm"),
            &Overrides {
                rate_limit: Some(900),
                ..overrides()
            },
        )
        .unwrap();
        assert!(
            out.contains("rate_limit_per_second: \"900\"")
                && out.contains("rate_limit_burst: \"900\""),
            "{out}"
        );
    }

    #[test]
    fn refuses_a_manifest_without_the_gateway_address() {
        assert!(render("image: x", Path::new("/repo/wadm"), &overrides()).is_err());
    }

    #[test]
    fn lists_artifacts_once_with_their_subdirectories() {
        let text = format!("{SAMPLE}image: file://../../build/probe/redis.par.gz\nimage: file://../build/gateway.wasm\n");
        let found: Vec<(String, String, String)> = artifacts(&text)
            .into_iter()
            .map(|a| (a.path, a.package, a.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("gateway.wasm".into(), "gateway".into(), "wasm".into()),
                ("probe/redis.par.gz".into(), "redis".into(), "par.gz".into()),
                ("redis.par.gz".into(), "redis".into(), "par.gz".into()),
            ]
        );
    }
}
