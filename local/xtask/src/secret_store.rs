//! The lattice's secrets: wasmCloud's NATS KV secrets backend (`secrets-nats-kv`), one per
//! stack. It keeps each secret encrypted (its encryption xkey) in a JetStream bucket, and gives a
//! secret out only to a signed component or provider whose identity is mapped to it (signing.rs),
//! sealed for the host that asked. The manifest names the secrets (`secrets:` under a component
//! or a link target, through the `nats-kv` policy); no secret value is in it, in a named config
//! (`wash config get` shows none), in the repository or in a log.
//!
//! Which artifact reads which secret is `readers` below: the least each one needs.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::nats_client;
use crate::process::{run, Daemon};
use crate::security::{kept_private, User};
use crate::signing::{self, Kind};
use crate::stack::Stack;
use crate::step;
use crate::tools::Tools;

/// The backend's name: its subjects are `wasmcloud.secrets.v1alpha1.nats-kv.*`, and the
/// manifest's secret policy names it.
pub const BACKEND: &str = "nats-kv";
pub const SUBJECT: &str = "wasmcloud.secrets.v1alpha1.nats-kv";

/// A secret the platform needs, by its key in the backend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Secret {
    /// The lattice's token signing key (auth signs, the gateway checks).
    JwtKey,
    /// The key before the last rotation: its tokens stay valid until they expire.
    JwtKeyPrevious,
    /// The key a rotation is about to sign with: checked before anyone signs with it.
    JwtKeyNext,
    /// The seed admin's password (auth creates the admin with it).
    SeedAdminPassword,
    /// The password of a service's Postgres login role in use (store_roles.rs).
    DatabasePassword(&'static str),
    /// Which of the service's two login roles is in use: it changes with the password.
    DatabaseUser(&'static str),
    /// Redis' URL with the platform's user and password.
    RedisUrl,
}

impl Secret {
    pub fn key(self) -> String {
        match self {
            Secret::JwtKey => "jwt-key".into(),
            Secret::JwtKeyPrevious => "jwt-key-previous".into(),
            Secret::JwtKeyNext => "jwt-key-next".into(),
            Secret::SeedAdminPassword => "seed-admin-password".into(),
            Secret::DatabasePassword(service) => format!("{service}-db-password"),
            Secret::DatabaseUser(service) => format!("{service}-db-user"),
            Secret::RedisUrl => "redis-url".into(),
        }
    }
}

/// Who may read what: each artifact (by name and kind) and its secrets, the least it needs.
fn readers() -> Vec<(&'static str, Kind, Vec<Secret>)> {
    let signing_keys = vec![Secret::JwtKey, Secret::JwtKeyPrevious, Secret::JwtKeyNext];
    vec![
        ("gateway", Kind::Component, signing_keys.clone()),
        (
            "auth",
            Kind::Component,
            [signing_keys, vec![Secret::SeedAdminPassword]].concat(),
        ),
        (
            "postgres-provider",
            Kind::Provider,
            crate::store_roles::SERVICES
                .into_iter()
                .flat_map(|s| [Secret::DatabaseUser(s), Secret::DatabasePassword(s)])
                .collect(),
        ),
        ("redis-provider", Kind::Provider, vec![Secret::RedisUrl]),
    ]
}

/// The backend's two keys: `transit` opens what clients seal for it, `encryption` seals what it
/// stores.
struct BackendKeys {
    transit: String,
    encryption: String,
}

impl Stack {
    pub(crate) fn secrets_backend(&self) -> Daemon {
        Daemon::new(&self.dir, "secrets-backend")
    }

    /// Where the backend's keys are kept (mode 700, files 600).
    pub(crate) fn secret_store_dir(&self) -> Result<PathBuf> {
        let dir = self.dir.join("secret-store");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }

    /// The backend's xkeys, made once per stack (`wash keys gen curve`).
    fn backend_keys(&self, tools: &Tools) -> Result<BackendKeys> {
        let dir = self.secret_store_dir()?;
        let seed = |name: &str| {
            kept_private(&dir.join(format!("{name}.xk")), || {
                let out =
                    run(Command::new(&tools.wash).args(["keys", "gen", "curve", "-o", "json"]))?;
                let key: serde_json::Value = serde_json::from_str(out.trim())?;
                key["seed"]
                    .as_str()
                    .map(str::to_string)
                    .context("`wash keys gen curve` printed no seed")
            })
        };
        Ok(BackendKeys {
            transit: seed("transit")?,
            encryption: seed("encryption")?,
        })
    }

    /// A `secrets-nats-kv` command reaching this lattice's NATS as `user`.
    fn secrets_backend_command(&self, tools: &Tools, user: User) -> Command {
        let mut command = Command::new(&tools.secrets_backend);
        if let Some(secrets) = self.secrets() {
            // async-nats trusts the roots in SSL_CERT_FILE: the lattice CA.
            command
                .env("NATS_CREDSFILE", secrets.creds(user))
                .env("SSL_CERT_FILE", secrets.ca());
        }
        command
    }

    /// Starts the backend (before the hosts, which fetch secrets from it as they start what the
    /// manifest asks for) and waits until it answers.
    pub(crate) fn ensure_secrets_backend(&self, tools: &Tools) -> Result<()> {
        let daemon = self.secrets_backend();
        if daemon.running_pid().is_some() {
            step("secrets backend already running");
            return Ok(());
        }
        let keys = self.backend_keys(tools)?;
        step(&format!(
            "starting the secrets backend (secrets-nats-kv {})",
            crate::tools::SECRETS_BACKEND_VERSION
        ));
        daemon.spawn(
            self.secrets_backend_command(tools, User::SecretsBackend)
                .args(["run", "--name", BACKEND, "--nats-address"])
                .arg(self.nats_url())
                .env("TRANSIT_XKEY_SEED", &keys.transit)
                .env("ENCRYPTION_XKEY_SEED", &keys.encryption),
        )?;
        self.wait_alive(
            &daemon,
            "the secrets backend to answer",
            Duration::from_secs(30),
            || {
                Ok(self
                    .nats_request(&format!("{SUBJECT}.server_xkey"))?
                    .is_some())
            },
        )
    }

    /// Stores the platform's secrets in the backend and lets each artifact read its own
    /// (`SECRETS`). Safe to repeat: a put stores a new version, a mapping is a set.
    pub(crate) fn store_platform_secrets(
        &self,
        tools: &Tools,
        values: &[(Secret, String)],
    ) -> Result<()> {
        self.store_secret_values(
            tools,
            values
                .iter()
                .map(|(secret, value)| (secret.key(), value.as_str())),
        )?;
        let grants: Vec<(&str, Kind, Vec<String>)> = readers()
            .into_iter()
            .map(|(artifact, kind, secrets)| {
                (
                    artifact,
                    kind,
                    secrets.into_iter().map(Secret::key).collect(),
                )
            })
            .collect();
        self.let_read(&grants)?;
        step("secrets stored in the secrets backend");
        Ok(())
    }

    /// An operator's own secret (a managed store's account: docs/deploy.md), under `key`, for
    /// `artifact` alone to read (a provider's name ends in `-provider`). Keys the platform keeps
    /// itself are refused: the next `up` would overwrite them.
    pub fn put_operator_secret(
        &self,
        tools: &Tools,
        key: &str,
        artifact: &str,
        value: &str,
    ) -> Result<()> {
        if platform_keys().iter().any(|k| k == key) {
            bail!("`{key}` is kept by `up` itself, which would overwrite it: store yours under a key of your own and name that key in the manifest");
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("a secret's key is letters, digits, `-` and `_`, not `{key}`");
        }
        if value.is_empty() {
            bail!("no value on standard input for the secret `{key}`");
        }
        let kind = if artifact.ends_with("-provider") {
            Kind::Provider
        } else {
            Kind::Component
        };
        if !signing::exists(artifact, kind) {
            bail!("no signing key for `{artifact}` on this machine: name a component (gateway, patients, ...) or a provider (postgres-provider, redis-provider, kafka-provider) built here");
        }
        self.store_secret_values(tools, [(key.to_string(), value)])?;
        self.let_read(&[(artifact, kind, vec![key.to_string()])])?;
        step(&format!(
            "stored the secret `{key}` for {artifact} alone to read"
        ));
        Ok(())
    }

    /// Stores a new version of each (key, value).
    fn store_secret_values<'a>(
        &self,
        tools: &Tools,
        values: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<()> {
        let keys = self.backend_keys(tools)?;
        for (key, value) in values {
            // The value goes by environment, not argv, where `ps` would show it.
            run(self
                .secrets_backend_command(tools, User::Operator)
                .args(["put", &key, "--nats-address"])
                .arg(self.nats_url())
                .env("TRANSIT_XKEY_SEED", &keys.transit)
                .env("SECRET_STRING_VALUE", value))
            .with_context(|| format!("storing the secret {key}"))?;
        }
        Ok(())
    }

    /// Lets each signed artifact read its secrets by name (added to what it may read already),
    /// over one connection.
    fn let_read(&self, grants: &[(&str, Kind, Vec<String>)]) -> Result<()> {
        let mut nats = nats_client::Connection::open(self.nats_addr(), &self.operator_auth())?;
        for (artifact, kind, names) in grants {
            let identity = signing::subject(artifact, *kind)?.public;
            let answer = nats
                .request_with(
                    &format!("{SUBJECT}.add_mapping.{identity}"),
                    serde_json::to_string(names)?.as_bytes(),
                    nats_client::ANSWER_TIMEOUT,
                )?
                .context("the secrets backend did not answer")?;
            if answer != "ok" {
                bail!("the secrets backend refused to let {artifact} read {names:?}: {answer}");
            }
        }
        Ok(())
    }
}

/// Every key the platform stores itself.
fn platform_keys() -> Vec<String> {
    readers()
        .into_iter()
        .flat_map(|(_, _, secrets)| secrets)
        .map(Secret::key)
        .collect()
}

/// A file only its owner may read (mode 600): where a secret may be.
fn private(metadata: &fs::Metadata) -> bool {
    metadata.permissions().mode() & 0o077 == 0
}

/// Every file under `dir` (not following links).
fn files_under(dir: &std::path::Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files_under(&entry.path(), found);
        } else if kind.is_file() {
            found.push(entry.path());
        }
    }
}

impl Stack {
    /// What the leak search reads: this stack's directory, what its joined machines wrote
    /// (`build/joined/<lattice>-*`) and the rest of `build/`, but not other lattices' kept
    /// directories: each run searched its own, and reading every kept run again made each
    /// search longer than the last (3.6 GB after ten runs kept for their logs).
    fn searched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        files_under(&self.dir, &mut files);
        let ours = format!("{}-", self.config.lattice);
        let build = crate::paths::build();
        for entry in fs::read_dir(&build).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_name().to_str() {
                Some("stacks") => {}
                Some("joined") => {
                    for joined in fs::read_dir(&path).into_iter().flatten().flatten() {
                        if joined.file_name().to_string_lossy().starts_with(&ours) {
                            files_under(&joined.path(), &mut files);
                        }
                    }
                }
                _ if path.is_dir() => files_under(&path, &mut files),
                _ => files.push(path),
            }
        }
        files
    }

    /// Searches every place a secret value must never be for the platform's secrets and the
    /// backend's keys: every file of the stack that is not private (every process's log, the
    /// rendered manifests, the JetStream store on disk, which holds the named configs and wadm's
    /// manifests, the broker's data) and everything under `build/`. Returns what it searched;
    /// fails naming each file that holds a value.
    pub(crate) fn search_for_leaked_secrets(&self, tools: &Tools) -> Result<String> {
        let keys = self.backend_keys(tools)?;
        let mut values = vec![
            (
                "the seed admin password".to_string(),
                self.config.seed_admin_password.clone(),
            ),
            ("the backend's transit key".to_string(), keys.transit),
            ("the backend's encryption key".to_string(), keys.encryption),
        ];
        for (secret, value) in self.jwt_secrets()?.into_iter().chain(self.store_secrets()?) {
            // A role's name is no secret (it is in every log line of Postgres).
            if !matches!(secret, Secret::DatabaseUser(_)) {
                values.push((format!("the secret {}", secret.key()), value));
            }
        }
        // The URL above holds it; alone it could be printed too.
        values.push(("Redis' password".to_string(), self.redis_password()?));
        if self.config.registry {
            values.push((
                "the registry's password".to_string(),
                self.registry_password()?,
            ));
        }
        let (mut searched, mut bytes, mut leaks) = (0, 0u64, Vec::new());
        for file in self.searched_files() {
            let Ok(metadata) = fs::metadata(&file) else {
                continue;
            };
            if private(&metadata) {
                continue;
            }
            let Ok(contents) = fs::read(&file) else {
                continue;
            };
            searched += 1;
            bytes += contents.len() as u64;
            for (what, value) in &values {
                if memchr::memmem::find(&contents, value.as_bytes()).is_some() {
                    leaks.push(format!("{what} in {}", file.display()));
                }
            }
        }
        if !leaks.is_empty() {
            bail!(
                "secret values found outside the secret files:\n  {}",
                leaks.join("\n  ")
            );
        }
        Ok(format!(
            "searched {searched} files ({:.1} MB: logs, manifests, the JetStream store, build/) \
             for {} secret values: none found",
            bytes as f64 / 1e6,
            values.len()
        ))
    }
}
