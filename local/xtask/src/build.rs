//! Builds what the manifests reference under `build/`: every `X.wasm` is the workspace package
//! `X` compiled for wasm32-wasip2, every `X.par.gz` the native package `X` packed as a provider
//! archive (from the providers' own workspace, `providers/`). The manifests decide what gets
//! built, so the two cannot disagree.
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::{run, run_visible};
use crate::tools::Tools;
use crate::{manifest, patches, paths, signing, step};

/// Manifests whose artifacts `up` and `test` build.
pub const MANIFESTS: [&str; 2] = [
    "wadm/patient-management.yaml",
    "tests/manifests/provider-probe.yaml",
];

pub fn artifacts(tools: &Tools) -> Result<()> {
    let mut wanted = Vec::new();
    for path in MANIFESTS {
        let text = fs::read_to_string(paths::repo().join(path))
            .with_context(|| format!("reading {path}"))?;
        wanted.extend(manifest::artifacts(&text));
    }
    wanted.sort();
    wanted.dedup();
    let of_kind = |kind: &str| -> Vec<manifest::Artifact> {
        wanted.iter().filter(|a| a.kind == kind).cloned().collect()
    };
    fs::create_dir_all(paths::build())?;
    components(tools, &of_kind("wasm"))?;
    providers(tools, &of_kind("par.gz"))
}

fn packages(artifacts: &[manifest::Artifact]) -> Vec<String> {
    let mut names: Vec<String> = artifacts.iter().map(|a| a.package.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// The components the hot-swap tests replace while they serve: the gateway (called in-process
/// by the host's HTTP server) and three reached over wRPC (patients and the console by the
/// gateway, analytics by the gateway and the Kafka provider).
pub const HOT_SWAPPED: [&str; 4] = ["gateway", "patients", "analytics", "console"];

/// Each of `HOT_SWAPPED` built with its `hot-swap-check` feature, as
/// `build/hot-swap/<name>.wasm`: the second builds the hot-swap tests swap in (the gateway's
/// `/health` and the others' `x-pm-build` header tell them apart). Cargo keeps each feature set's
/// output apart, so neither build makes the other compile again. Returns the directory.
pub fn hot_swap_builds(tools: &Tools) -> Result<std::path::PathBuf> {
    step("building the hot-swap-check variants");
    let names: Vec<String> = HOT_SWAPPED.iter().map(|n| n.to_string()).collect();
    let features: Vec<String> = HOT_SWAPPED
        .iter()
        .map(|n| format!("{n}/hot-swap-check"))
        .collect();
    let features: Vec<&str> = features.iter().map(String::as_str).collect();
    cargo_build(&names, Some("wasm32-wasip2"), &features)?;
    let dir = paths::build().join("hot-swap");
    fs::create_dir_all(&dir)?;
    for name in HOT_SWAPPED {
        sign_component(tools, name, &dir.join(format!("{name}.wasm")))?;
    }
    Ok(dir)
}

fn component_output(package: &str) -> std::path::PathBuf {
    paths::repo()
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

fn cargo_build(packages: &[String], target: Option<&str>, features: &[&str]) -> Result<()> {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(paths::repo())
        .args(["build", "--release"]);
    with_packages(cargo, packages, target, features)
}

/// `cargo <subcommand>` in the providers' workspace (`providers/`), locked, against its fixed
/// crates (patches.rs), with its output in the repository's `target/` like everything else.
pub fn providers_cargo(subcommand: &str) -> Result<Command> {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(paths::repo())
        .args([subcommand, "--locked"]);
    for config in patches::cargo_configs(patches::Workspace::Providers)? {
        cargo.args(["--config", &config]);
    }
    cargo
        .arg("--manifest-path")
        .arg(paths::repo().join("providers/Cargo.toml"))
        .env("CARGO_TARGET_DIR", paths::repo().join("target"));
    Ok(cargo)
}

fn with_packages(
    mut cargo: Command,
    packages: &[String],
    target: Option<&str>,
    features: &[&str],
) -> Result<()> {
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    if let Some(target) = target {
        cargo.args(["--target", target]);
    }
    for name in packages {
        cargo.args(["-p", name]);
    }
    run_visible(&mut cargo)
}

fn components(tools: &Tools, artifacts: &[manifest::Artifact]) -> Result<()> {
    let names = packages(artifacts);
    if names.is_empty() {
        return Ok(());
    }
    step(&format!(
        "building components for wasm32-wasip2: {}",
        names.join(", ")
    ));
    cargo_build(&names, Some("wasm32-wasip2"), &[])?;
    for artifact in artifacts {
        let destination = paths::build().join(&artifact.path);
        fs::create_dir_all(destination.parent().context("artifact path")?)?;
        sign_component(tools, &artifact.package, &destination)?;
    }
    Ok(())
}

/// Copies the component `package` cargo built to `destination`, signed with its identity
/// (signing.rs): the host fetches a component's secrets only for a signed component.
fn sign_component(tools: &Tools, package: &str, destination: &Path) -> Result<()> {
    let built = component_output(package);
    let (issuer, subject) = (
        signing::issuer()?,
        signing::subject(package, signing::Kind::Component)?,
    );
    // A signature carries the time it was made, so signing the same build again would give
    // another file (another digest in the OCI registry, a redeploy of what already runs).
    if [&built, &issuer.seed_file, &subject.seed_file]
        .into_iter()
        .all(|input| newer(destination, input))
    {
        return Ok(());
    }
    run(Command::new(&tools.wash)
        .args(["claims", "sign", "--disable-keygen", "--name", package])
        .args(["--ver", env!("CARGO_PKG_VERSION"), "--rev", "0"])
        .arg("--issuer")
        .arg(&issuer.seed_file)
        .arg("--subject")
        .arg(&subject.seed_file)
        .arg("--destination")
        .arg(destination)
        .arg(&built))
    .with_context(|| format!("signing {}", built.display()))?;
    Ok(())
}

fn providers(tools: &Tools, artifacts: &[manifest::Artifact]) -> Result<()> {
    let names = packages(artifacts);
    if names.is_empty() {
        return Ok(());
    }
    step(&format!("building providers: {}", names.join(", ")));
    let mut cargo = providers_cargo("build")?;
    cargo.arg("--release");
    with_packages(cargo, &names, None, &[])?;
    for artifact in artifacts {
        let name = &artifact.package;
        let binary = paths::repo().join("target/release").join(name);
        let archive = paths::build().join(&artifact.path);
        if newer(&archive, &binary) {
            continue;
        }
        fs::create_dir_all(archive.parent().context("artifact path")?)?;
        step(&format!(
            "packing {name} as the provider archive build/{}",
            artifact.path
        ));
        run_visible(
            Command::new(&tools.wash)
                .args([
                    "par",
                    "create",
                    "--vendor",
                    "patient-management",
                    "--compress",
                    // Without a version the host's provider_started event carries
                    // `"version": null`, which wadm 0.21 cannot decode: it then never saw a
                    // provider start, and a provider stopped soon after stayed down for a minute.
                    "--version",
                    env!("CARGO_PKG_VERSION"),
                    "--name",
                    name,
                    "--binary",
                ])
                .arg(&binary)
                .arg("--destination")
                .arg(&archive)
                // Signed with the provider's identity (signing.rs), which the secrets backend
                // knows it by.
                .arg("--disable-keygen")
                .arg("--issuer")
                .arg(&signing::issuer()?.seed_file)
                .arg("--subject")
                .arg(&signing::subject(name, signing::Kind::Provider)?.seed_file),
        )?;
    }
    Ok(())
}

/// True when `a` exists and was modified after `b`.
fn newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a > b)
}
