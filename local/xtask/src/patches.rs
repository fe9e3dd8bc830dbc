//! Fixes to dependencies of the host launcher that their released versions lack, applied at
//! build time to a copy of the crate from crates.io (nothing upstream is kept in this repo).
//! Each edit checks that the code it changes is where it expects, so a new release fails loudly
//! instead of being patched wrongly.
//!
//! - wrpc-transport-nats 0.29.0 (what wasmcloud-host 0.27.1 uses) routes every reply through one
//!   task whose `select!` may handle an arrived message before the command that subscribes to it,
//!   and then drops the message: the caller waits forever. On our 2 cores about one request in a
//!   thousand hung that way under load. Upstream fixed it in 0.31 (commit 2d3c810b, "apply
//!   subscription commands before routing messages"), which needs a newer async-nats than the
//!   host can take. The fix is to poll commands first (`biased;`).
//! - wasmcloud-host 0.27.1's built-in HTTP server drops the connection when the component fails
//!   to answer (a trap: for example the gateway calling a component that has no running
//!   instance, as while it is scaled to 0 or replaced). SPEC.md wants a 503; the edit answers
//!   503 problem+json with `Retry-After` there instead.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::process::run;
use crate::step;

struct Patch {
    krate: &'static str,
    version: &'static str,
    /// Names the edit; part of the directory name so a changed edit is a new directory.
    edit: &'static str,
    why: &'static str,
    apply: fn(&Path) -> Result<()>,
}

const PATCHES: [Patch; 2] = [
    Patch {
        krate: "wrpc-transport-nats",
        version: "0.29.0",
        edit: "commands-before-messages",
        why: "replies lost to a subscribe race",
        apply: commands_before_messages,
    },
    Patch {
        krate: "wasmcloud-host",
        version: "0.27.1",
        edit: "http-503-on-component-failure",
        why: "a failed component answer is a 503, not a dropped connection",
        apply: unavailable_on_component_failure,
    },
];

/// The `--config` arguments that make a cargo build use the fixed crates.
pub fn cargo_configs() -> Result<Vec<String>> {
    PATCHES
        .iter()
        .map(|patch| {
            let dir = patched(patch)?;
            Ok(format!("patch.crates-io.{}.path={:?}", patch.krate, dir.to_string_lossy()))
        })
        .collect()
}

/// A copy of the crate with its edit applied, made once.
fn patched(patch: &Patch) -> Result<PathBuf> {
    let root = paths::cache().join("patches");
    let name = format!("{}-{}-{}", patch.krate, patch.version, patch.edit);
    let dir = root.join(&name);
    if dir.join(".patched").exists() {
        return Ok(dir);
    }
    step(&format!("patching {} {} ({})", patch.krate, patch.version, patch.why));
    let original = registry_source(&root.join("fetch"), patch)?;
    let staging = root.join(format!(".{name}.partial"));
    let _ = fs::remove_dir_all(&staging);
    copy_dir(&original, &staging)?;
    (patch.apply)(&staging).with_context(|| format!("{} {}", patch.krate, patch.version))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    fs::write(dir.join(".patched"), patch.edit)?;
    Ok(dir)
}

/// Replaces the one occurrence of `old` in `file` (below `crate_dir`) with `new`.
fn replace_once(crate_dir: &Path, file: &str, old: &str, new: &str) -> Result<()> {
    let path = crate_dir.join(file);
    let source = fs::read_to_string(&path)?;
    if source.matches(old).count() != 1 {
        bail!("{file}: the code to change is not where expected");
    }
    fs::write(&path, source.replacen(old, new, 1))?;
    Ok(())
}

fn commands_before_messages(crate_dir: &Path) -> Result<()> {
    let message = "Some(msg) = sub.next() => handle_message(&mut subs, msg).await,";
    let command = "Some(cmd) = cmd_rx.recv() => handle_command(&mut subs, cmd),";
    let indent = " ".repeat(24);
    replace_once(
        crate_dir,
        "src/lib.rs",
        &format!("{message}\n{indent}{command}"),
        &format!("biased;\n{indent}{command}\n{indent}{message}"),
    )
}

fn unavailable_on_component_failure(crate_dir: &Path) -> Result<()> {
    let file = "src/wasmbus/providers/http_server/address.rs";
    let indent = " ".repeat(16);
    replace_once(
        crate_dir,
        file,
        &format!("{indent}async move {{\n{indent}    let component = {{"),
        &format!("{indent}unavailable_on_error(async move {{\n{indent}    let component = {{"),
    )?;
    replace_once(
        crate_dir,
        file,
        &format!("{indent}.instrument(info_span!(\"handle\"))\n"),
        &format!("{indent}.instrument(info_span!(\"handle\")))\n"),
    )?;
    let path = crate_dir.join(file);
    let mut source = fs::read_to_string(&path)?;
    source.push_str(UNAVAILABLE_ON_ERROR);
    fs::write(&path, source)?;
    Ok(())
}

const UNAVAILABLE_ON_ERROR: &str = r####"

/// Added by patient-management's build (local/xtask/src/patches.rs): a component that fails to
/// answer gets the client a 503 problem+json instead of a dropped connection.
async fn unavailable_on_error(
    handled: impl core::future::Future<
        Output = anyhow::Result<http::Response<wasmtime_wasi_http::body::HyperOutgoingBody>>,
    >,
) -> anyhow::Result<http::Response<wasmtime_wasi_http::body::HyperOutgoingBody>> {
    let error = match handled.await {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    tracing::warn!(error = %format!("{error:#}"), "the component did not answer; replying 503");
    let problem: &'static [u8] = br#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the platform could not answer this request now; retry later"}"#;
    let body: wasmtime_wasi_http::body::HyperOutgoingBody =
        http_body_util::Full::new(bytes::Bytes::from_static(problem))
            .map_err(|never| match never {})
            .boxed();
    Ok(http::Response::builder()
        .status(http::StatusCode::SERVICE_UNAVAILABLE)
        .header(http::header::CONTENT_TYPE, "application/problem+json")
        .header(http::header::RETRY_AFTER, "1")
        .body(body)?)
}
"####;

/// Where cargo unpacked the released crate, fetched through a throwaway manifest.
fn registry_source(work: &Path, patch: &Patch) -> Result<PathBuf> {
    let (krate, version) = (patch.krate, patch.version);
    fs::create_dir_all(work.join("src"))?;
    fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-{krate}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{krate} = \"={version}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(work.join("src/lib.rs"), "")?;
    let metadata = run(Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(work.join("Cargo.toml")))
    .with_context(|| format!("cargo metadata for {krate}"))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == krate && p["version"] == version)
        .with_context(|| format!("{krate} is not in the fetched metadata"))?;
    let path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    Ok(path.parent().with_context(|| format!("{krate} manifest has no directory"))?.to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
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
