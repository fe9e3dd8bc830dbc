//! Fixes to dependencies of the host launcher that their released versions lack, applied at
//! build time to a copy of the crate from crates.io (nothing upstream is kept in this repo).
//!
//! wrpc-transport-nats 0.29.0 (what wasmcloud-host 0.27.1 uses) routes every reply through one
//! task whose `select!` may handle an arrived message before the command that subscribes to it,
//! and then drops the message: the caller waits forever. On our 2 cores about one request in a
//! thousand hung that way under load. Upstream fixed it in 0.31 (commit 2d3c810b, "apply
//! subscription commands before routing messages"), which needs a newer async-nats than the host
//! can take. The fix is to poll commands first (`biased;`); we make that one edit.
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::process::run;
use crate::step;

pub const WRPC_TRANSPORT_NATS: &str = "0.29.0";
/// Names the edit; part of the directory name so a changed edit is a new directory.
const EDIT: &str = "commands-before-messages";

/// The `--config` argument that makes a cargo build use the fixed crate.
pub fn cargo_config() -> Result<String> {
    let dir = wrpc_transport_nats()?;
    Ok(format!(
        "patch.crates-io.wrpc-transport-nats.path={:?}",
        dir.to_string_lossy()
    ))
}

/// A copy of wrpc-transport-nats with the routing loop polling commands first, made once.
pub fn wrpc_transport_nats() -> Result<PathBuf> {
    let root = paths::cache().join("patches");
    let dir = root.join(format!("wrpc-transport-nats-{WRPC_TRANSPORT_NATS}-{EDIT}"));
    if dir.join(".patched").exists() {
        return Ok(dir);
    }
    step(&format!(
        "patching wrpc-transport-nats {WRPC_TRANSPORT_NATS} (replies lost to a subscribe race)"
    ));
    let original = registry_source(&root.join("fetch"))?;
    let staging = root.join(format!(".{EDIT}.partial"));
    let _ = fs::remove_dir_all(&staging);
    copy_dir(&original, &staging)?;
    let lib = staging.join("src/lib.rs");
    let source = fs::read_to_string(&lib)?;
    let message = "Some(msg) = sub.next() => handle_message(&mut subs, msg).await,";
    let command = "Some(cmd) = cmd_rx.recv() => handle_command(&mut subs, cmd),";
    let (Some(m), Some(c)) = (source.find(message), source.find(command)) else {
        bail!("wrpc-transport-nats {WRPC_TRANSPORT_NATS}: the routing loop is not where expected");
    };
    if c < m {
        bail!("wrpc-transport-nats {WRPC_TRANSPORT_NATS}: the routing loop already polls commands first");
    }
    let indent = " ".repeat(24);
    let old = format!("{message}\n{indent}{command}");
    let new = format!("biased;\n{indent}{command}\n{indent}{message}");
    if !source.contains(&old) {
        bail!("wrpc-transport-nats {WRPC_TRANSPORT_NATS}: unexpected layout of the routing loop");
    }
    fs::write(&lib, source.replacen(&old, &new, 1))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    fs::write(dir.join(".patched"), EDIT)?;
    Ok(dir)
}

/// Where cargo unpacked the released crate, fetched through a throwaway manifest.
fn registry_source(work: &std::path::Path) -> Result<PathBuf> {
    fs::create_dir_all(work.join("src"))?;
    fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-wrpc-transport-nats\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nwrpc-transport-nats = \"={WRPC_TRANSPORT_NATS}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(work.join("src/lib.rs"), "")?;
    let manifest = work.join("Cargo.toml");
    let metadata = run(Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest))
    .context("cargo metadata for wrpc-transport-nats")?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "wrpc-transport-nats" && p["version"] == WRPC_TRANSPORT_NATS)
        .context("wrpc-transport-nats is not in the fetched metadata")?;
    let path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    Ok(path
        .parent()
        .context("wrpc-transport-nats manifest has no directory")?
        .to_path_buf())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
