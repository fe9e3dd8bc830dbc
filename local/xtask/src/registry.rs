//! The lattice's OCI registry (issue 19, item 4): where a host on any machine pulls the
//! components and provider archives it runs, as wasmCloud deployments ship them. One per stack,
//! started by `up --registry`: Debian's `docker-registry` (the CNCF distribution registry),
//! serving the lattice's TLS certificate and answering only the lattice's registry user
//! (htpasswd, bcrypt; its password is made once and kept in the secret store, mode 600).
//!
//! `up --registry` pushes every artifact of `build/` there (`wash push`) and deploys a manifest
//! that names each by tag and digest, so what a host runs is exactly what was pushed. Without
//! `--registry` the manifest keeps its `file://` paths (one machine).
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::net;
use crate::process::{run, run_with_input, Daemon};
use crate::security::{kept_private, random_hex, write_private};
use crate::stack::Stack;
use crate::step;
use crate::tools::Tools;

/// The registry's user: the hosts pull and xtask pushes as it.
pub const USER: &str = "lattice";
/// Where the platform's artifacts live in the registry: `<registry>/patient-management/<name>`.
const REPOSITORY: &str = "patient-management";

impl Stack {
    pub(crate) fn registry(&self) -> Daemon {
        Daemon::new(&self.dir, "registry")
    }

    /// Where the registry listens (a port chosen once per stack and kept).
    pub(crate) fn registry_addr(&self) -> Result<SocketAddr> {
        Ok(SocketAddr::new(
            self.own_ip(),
            self.kept_port("registry.port")?,
        ))
    }

    /// The file holding the registry user's password (mode 600): hosts read it there.
    pub(crate) fn registry_password_file(&self) -> Result<std::path::PathBuf> {
        let path = self.secret_store_dir()?.join("registry.password");
        kept_private(&path, || random_hex(16))?;
        Ok(path)
    }

    /// The registry user's password, made once per stack.
    pub(crate) fn registry_password(&self) -> Result<String> {
        kept_private(&self.registry_password_file()?, || random_hex(16))
    }

    /// Starts the registry if it is not running and waits until it answers as the user.
    pub(crate) fn ensure_registry(&self) -> Result<()> {
        let daemon = self.registry();
        let addr = self.registry_addr()?;
        if daemon.running_pid().is_some() {
            step(&format!("OCI registry already running on {addr}"));
            return Ok(());
        }
        let program = crate::services::ensure_registry_programs()?;
        let secrets = self
            .secrets()
            .context("the registry serves the lattice's certificate: our own NATS made it")?;
        let store = self.secret_store_dir()?;
        let htpasswd = store.join("registry.htpasswd");
        write_private(&htpasswd, &bcrypt_entry(USER, &self.registry_password()?)?)?;
        // The config holds the registry's own secret (it signs upload state), so it is private.
        let config = store.join("registry.yml");
        let http_secret = kept_private(&store.join("registry-http.secret"), || random_hex(16))?;
        write_private(
            &config,
            &format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n\
                 http:\n  addr: {addr}\n  secret: {http_secret}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: pm-{lattice}\n    path: {htpasswd}\n",
                data = self.dir.join("registry-data").display(),
                cert = secrets.server_cert().display(),
                key = secrets.server_key().display(),
                lattice = self.config.lattice,
                htpasswd = htpasswd.display(),
            ),
        )?;
        step(&format!(
            "starting the OCI registry on {addr} (TLS, user `{USER}`)"
        ));
        daemon.spawn(Command::new(&program).arg("serve").arg(&config))?;
        self.wait_alive(
            &daemon,
            "the OCI registry to answer",
            Duration::from_secs(30),
            || Ok(net::listening(addr, Duration::from_millis(200))),
        )
    }

    /// Pushes `path` as `name` and returns its reference in the registry,
    /// `<repo>:<tag>@<digest>`. The tag is the version and the file's own hash, so another build
    /// never takes a tag in use.
    pub(crate) fn push_artifact(&self, tools: &Tools, name: &str, path: &Path) -> Result<String> {
        use sha2::Digest;
        let addr = self.registry_addr()?;
        let password = self.registry_password()?;
        let secrets = self.secrets().context("the lattice's CA")?;
        let hash = sha2::Sha256::digest(fs::read(path)?);
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let target = format!(
            "{addr}/{REPOSITORY}/{name}:{}-{short}",
            env!("CARGO_PKG_VERSION")
        );
        // A push stamps the time into the artifact's manifest, so pushing the same file again
        // would give another digest and redeploy what already runs: a push is recorded beside
        // the registry's data and not repeated.
        let record = self.dir.join("registry-data").join("pushed.json");
        let mut pushed: BTreeMap<String, String> = fs::read_to_string(&record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if let Some(reference) = pushed.get(&target) {
            return Ok(reference.clone());
        }
        // The password by environment, not argv; wash trusts the lattice's CA through
        // SSL_CERT_FILE (its registry client reads the roots from there).
        let out = run(Command::new(&tools.wash)
            .arg("push")
            .arg(&target)
            .arg(path)
            .args(["-o", "json"])
            .env("WASH_REG_USER", USER)
            .env("WASH_REG_PASSWORD", &password)
            .env("SSL_CERT_FILE", secrets.ca()))
        .with_context(|| format!("pushing {} to {target}", path.display()))?;
        let answer: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("wash push printed {out}"))?;
        let digest = answer["digest"]
            .as_str()
            .with_context(|| format!("wash push named no digest: {out}"))?;
        let reference = format!("{target}@{digest}");
        pushed.insert(target, reference.clone());
        fs::write(&record, serde_json::to_string_pretty(&pushed)?)?;
        Ok(reference)
    }

    /// Pushes every artifact the manifest at `text` names by `file://` path, and returns the
    /// manifest with each named by its reference in the registry.
    pub(crate) fn pushed(&self, tools: &Tools, text: &str) -> Result<String> {
        let mut references = BTreeMap::new();
        for line in text.lines() {
            let Some(url) = line.trim().strip_prefix("image: ").map(str::trim) else {
                continue;
            };
            let Some(path) = url.strip_prefix("file://") else {
                continue;
            };
            if !references.contains_key(url) {
                let path = Path::new(path);
                let reference = self.push_artifact(tools, &artifact_name(path)?, path)?;
                references.insert(url.to_string(), reference);
            }
        }
        step(&format!(
            "{} artifacts pushed to the OCI registry on {}",
            references.len(),
            self.registry_addr()?
        ));
        let mut text = text.to_string();
        for (url, reference) in &references {
            text = text.replace(&format!("image: {url}\n"), &format!("image: {reference}\n"));
        }
        if text.contains("image: file://") {
            bail!("the manifest still names a file after the push: {text}");
        }
        Ok(text)
    }
}

/// An artifact's name in the registry: its file name without extensions
/// (`gateway.wasm` → `gateway`, `postgres-provider.par.gz` → `postgres-provider`).
fn artifact_name(path: &Path) -> Result<String> {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok(file.split('.').next().unwrap_or(file).to_string())
}

/// One htpasswd line for `user` with a bcrypt hash of `password`, made by `htpasswd` (Debian's
/// apache2-utils) from the password on stdin, never in argv.
fn bcrypt_entry(user: &str, password: &str) -> Result<String> {
    let line = run_with_input(
        Command::new("htpasswd").args(["-B", "-i", "-n", user]),
        password.as_bytes(),
    )
    .context("htpasswd (apache2-utils) makes the registry's password file")?;
    Ok(line.trim().to_string() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_named_without_extensions() {
        for (file, name) in [
            ("/x/build/gateway.wasm", "gateway"),
            ("/x/build/postgres-provider.par.gz", "postgres-provider"),
        ] {
            assert_eq!(artifact_name(Path::new(file)).unwrap(), name);
        }
    }
}
