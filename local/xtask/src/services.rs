//! The machine's data services the platform and its tests use: PostgreSQL on 127.0.0.1:5432 and
//! Redis on 127.0.0.1:6379. Project machines run both already; elsewhere they are started (or
//! installed from Debian's packages, then started) here, on loopback only.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::net::{self, loopback};
use crate::process::{run, run_visible};
use crate::step;

pub const POSTGRES_PORT: u16 = 5432;
pub const REDIS_PORT: u16 = 6379;

fn listening(port: u16) -> bool {
    net::listening(loopback(port), Duration::from_millis(500))
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    step(&format!(
        "installing {} from Debian's packages",
        packages.join(", ")
    ));
    run(Command::new("apt-get").arg("update").arg("-qq"))
        .context("apt-get update failed (are you root?)")?;
    run_visible(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Installs from Debian's packages whichever of `programs` (program, package) is missing.
pub fn ensure_programs(programs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// The OCI registry's programs (`up --registry`): Debian's CNCF distribution registry, and
/// `htpasswd` for its password file. Returns the registry's path.
pub fn ensure_registry_programs() -> Result<std::path::PathBuf> {
    ensure_programs(&[
        ("docker-registry", "docker-registry"),
        ("htpasswd", "apache2-utils"),
    ])?;
    Ok("/usr/bin/docker-registry".into())
}

pub fn ensure_all() -> Result<()> {
    ensure_postgres()?;
    ensure_redis()
}

fn ensure_postgres() -> Result<()> {
    if listening(POSTGRES_PORT) {
        return Ok(());
    }
    if !Path::new("/etc/postgresql").exists() {
        apt_install(&["postgresql"])?;
        trust_loopback()?;
    }
    step("starting PostgreSQL on 127.0.0.1:5432");
    for version in std::fs::read_dir("/etc/postgresql")?.flatten() {
        let version = version.file_name().to_string_lossy().into_owned();
        run(Command::new("pg_ctlcluster").args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "start",
        ]))?;
    }
    net::wait_for(
        "PostgreSQL to accept connections",
        Duration::from_secs(30),
        || Ok(listening(POSTGRES_PORT)),
    )
}

/// A cluster this command just installed lets local connections in without a password, as the
/// project machines do; the platform's link config carries no database password for local runs.
fn trust_loopback() -> Result<()> {
    for version in std::fs::read_dir("/etc/postgresql")?.flatten() {
        let hba = version.path().join("main/pg_hba.conf");
        let text = std::fs::read_to_string(&hba)?;
        let trusted =
            format!("host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n{text}");
        std::fs::write(&hba, trusted)?;
    }
    Ok(())
}

fn ensure_redis() -> Result<()> {
    if listening(REDIS_PORT) {
        return Ok(());
    }
    if !installed("redis-server") {
        apt_install(&["redis-server"])?;
    }
    step("starting Redis on 127.0.0.1:6379");
    let status = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .status()?;
    if !status.success() {
        bail!("redis-server failed to start ({status})");
    }
    net::wait_for(
        "Redis to accept connections",
        Duration::from_secs(30),
        || Ok(listening(REDIS_PORT)),
    )
}
