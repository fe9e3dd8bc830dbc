//! Rotating the lattice's keys and passwords while it serves (issue 18, item 5; the operator's
//! side is docs/operations.md, "Rotating keys and passwords").
//!
//! **The JWT signing key**, in two phases, so that no host refuses a token at any moment:
//! 1. every gateway and auth instance also accepts the next key (`jwt_secret_next`);
//! 2. auth signs with it, and everyone still accepts the previous one (`jwt_secret_previous`):
//!    tokens issued before the rotation stay valid until they expire.
//!
//! A component reads its secrets when it starts, and wadm does not restart it when a secret's
//! value changes. So after each phase every host that runs the component is asked to scale it
//! to the count it has (`refresh_secrets`): the host fetches its secrets again (any scale of a
//! component with secrets does, in wasmcloud-host 0.27.1), starts new instances with them and
//! stops the old ones once the new serve, the old finishing their calls (the host path a hot swap
//! takes; see patches.rs).
//!
//! **The data stores' passwords.** Each service has two Postgres login roles that take turns
//! (store_roles.rs): the one not in use gets a new password and may log in, the providers move to
//! it, then the old one may no longer log in. Redis' user takes a second password, and the old
//! one is removed once no provider uses it. Providers read their link secrets when they start, so
//! they restart host by host (`restart_provider`, which loses no call).
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::secret_store::Secret;
use crate::security::{random_hex, write_private};
use crate::stack::{running, Stack};
use crate::store_roles::{psql, redis_cli, SERVICES};
use crate::tools::Tools;
use crate::{manifest, nats_client, net, step};

/// The components that hold the JWT keys.
const KEY_HOLDERS: [&str; 2] = ["auth", "gateway"];

/// Where a JWT key is kept: the current one signs; the others are accepted during a rotation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JwtSlot {
    Current,
    Previous,
    Next,
}

impl JwtSlot {
    fn file(self) -> &'static str {
        match self {
            JwtSlot::Current => "jwt.secret",
            JwtSlot::Previous => "jwt-previous.secret",
            JwtSlot::Next => "jwt-next.secret",
        }
    }

    pub fn secret(self) -> Secret {
        match self {
            JwtSlot::Current => Secret::JwtKey,
            JwtSlot::Previous => Secret::JwtKeyPrevious,
            JwtSlot::Next => Secret::JwtKeyNext,
        }
    }
}

/// wadm's name for a config or secret of the application (`compute_component_id` in wadm):
/// `<app>-<name>`, each lower-cased with everything but ASCII letters and digits as `_`.
fn wadm_name(app: &str, name: &str) -> String {
    let clean = |s: &str| {
        s.to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    };
    format!("{}-{}", clean(app), clean(name))
}

/// The config names wadm gives a component's instances, in its order: its configs (those
/// written out in the manifest get wadm's name), then its secrets (`SECRET_<app>-<name>`).
fn component_config_names(manifest: &serde_json::Value, component: &str) -> Result<Vec<String>> {
    let app = manifest["metadata"]["name"]
        .as_str()
        .context("a manifest without a name")?;
    let spec = manifest["spec"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == component)
        .with_context(|| format!("`{component}` is not a component of {app}"))?;
    let list = |key: &str| {
        spec["properties"][key]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut names = Vec::new();
    for config in list("config") {
        let name = config["name"].as_str().context("a config without a name")?;
        names.push(if config["properties"].is_object() {
            wadm_name(app, name)
        } else {
            name.to_string()
        });
    }
    for secret in list("secrets") {
        let name = secret["name"].as_str().context("a secret without a name")?;
        names.push(format!("SECRET_{}", wadm_name(app, name)));
    }
    Ok(names)
}

impl Stack {
    fn jwt_file(&self, slot: JwtSlot) -> PathBuf {
        self.dir.join(slot.file())
    }

    /// A JWT key of the lattice. The current one is made once per stack (32 random bytes, mode
    /// 600) and kept, so tokens stay valid across restarts; outside a rotation the others are it.
    pub(crate) fn jwt_key(&self, slot: JwtSlot) -> Result<String> {
        let current =
            crate::security::kept_private(&self.jwt_file(JwtSlot::Current), || random_hex(32))?;
        Ok(match slot {
            JwtSlot::Current => current,
            other => fs::read_to_string(self.jwt_file(other))
                .map(|kept| kept.trim().to_string())
                .unwrap_or(current),
        })
    }

    /// The JWT keys as the secrets backend holds them.
    pub(crate) fn jwt_secrets(&self) -> Result<Vec<(Secret, String)>> {
        [JwtSlot::Current, JwtSlot::Previous, JwtSlot::Next]
            .into_iter()
            .map(|slot| Ok((slot.secret(), self.jwt_key(slot)?)))
            .collect()
    }

    /// Stores the JWT keys as the files now hold them and has every holder fetch them again.
    fn hand_out_jwt_keys(&self, tools: &Tools) -> Result<()> {
        self.store_platform_secrets(tools, &self.jwt_secrets()?)?;
        for component in KEY_HOLDERS {
            self.refresh_secrets(component)?;
        }
        Ok(())
    }

    /// Replaces the JWT signing key while the platform serves (see the module's comment).
    pub fn rotate_jwt_key(&self, tools: &Tools) -> Result<()> {
        let started = Instant::now();
        let old = self.jwt_key(JwtSlot::Current)?;
        let new = random_hex(32)?;
        step("rotating the JWT key, phase 1: every gateway and auth also accepts the new key");
        write_private(&self.jwt_file(JwtSlot::Next), &new)?;
        self.hand_out_jwt_keys(tools)?;
        step("rotating the JWT key, phase 2: auth signs with the new key; the old one stays accepted");
        // In this order, so that a run stopped half-way leaves a state `up` can serve from.
        write_private(&self.jwt_file(JwtSlot::Previous), &old)?;
        write_private(&self.jwt_file(JwtSlot::Current), &new)?;
        fs::remove_file(self.jwt_file(JwtSlot::Next))?;
        self.hand_out_jwt_keys(tools)?;
        step(&format!(
            "JWT key rotated in {:.1} s: tokens signed with the previous key stay valid until they expire",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Replaces the password of every service's Postgres login and of the Redis user while the
    /// platform serves (see the module's comment).
    pub fn rotate_store_passwords(&self, tools: &Tools) -> Result<()> {
        let started = Instant::now();
        let database = &self.config.database;
        step("rotating the Postgres passwords: each service's other login role gets a new one");
        let mut retiring = Vec::new();
        for service in SERVICES {
            let old = self.active_login(service)?;
            let new = old.other();
            let role = self.login_role(service, new);
            let password = self.new_store_password(&Self::database_password_name(service, new))?;
            psql(
                database,
                &format!("ALTER ROLE {role} WITH LOGIN PASSWORD '{password}';"),
            )?;
            self.set_active_login(service, new)?;
            retiring.push((service, old));
        }
        step("rotating the Redis password: the platform's user takes a second one");
        let user = self.redis_user();
        let old_redis = self.redis_password()?;
        let new_redis = self.new_store_password("redis")?;
        redis_cli(&["ACL", "SETUSER", &user], Some(&format!(">{new_redis}")))?;
        self.store_platform_secrets(tools, &self.store_secrets()?)?;

        for provider in ["postgres", "redis"] {
            self.restart_provider(tools, provider)?;
        }

        let old_roles: Vec<String> = retiring
            .iter()
            .map(|(service, login)| self.login_role(service, *login))
            .collect();
        let quoted = old_roles
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(", ");
        // Every provider restarted, so no session of an old role should be left; one that is
        // means a provider still uses it, and taking its login away would fail its next connect.
        net::wait_for(
            "the old login roles' sessions to end",
            Duration::from_secs(30),
            || {
                let left = psql(
                    "postgres",
                    &format!("SELECT count(*) FROM pg_stat_activity WHERE usename IN ({quoted});"),
                )?;
                if left != "0" {
                    bail!("{left} sessions of the old login roles are still open");
                }
                Ok(true)
            },
        )?;
        for role in &old_roles {
            psql(
                database,
                &format!("ALTER ROLE {role} WITH NOLOGIN PASSWORD NULL;"),
            )?;
        }
        for (service, login) in &retiring {
            let _ = fs::remove_file(
                self.password_file(&Self::database_password_name(service, *login))?,
            );
        }
        redis_cli(&["ACL", "SETUSER", &user], Some(&format!("<{old_redis}")))?;
        step(&format!(
            "store passwords rotated in {:.1} s: the old Postgres login roles may no longer log in, Redis refuses the old password",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Makes every host that runs `component` fetch its secrets again: each is asked to scale it
    /// to the count it runs, with the configs, secrets and annotations wadm gave it (so wadm
    /// sees nothing new), and answers with a `component_scaled` event once the new instances
    /// serve, or `component_scale_failed` (a secret it could not fetch: the old instances keep
    /// serving).
    fn refresh_secrets(&self, component: &str) -> Result<()> {
        let lattice = &self.config.lattice;
        let app = manifest::APP_NAME;
        let answer = self
            .nats_request(&format!("wadm.api.{lattice}.model.get.{app}"))?
            .context("wadm did not answer")?;
        let answer: serde_json::Value = serde_json::from_str(&answer)?;
        let config = component_config_names(&answer["manifest"], component)
            .with_context(|| format!("wadm's manifest of {app}: {}", answer["message"]))?;
        let ctl = format!("wasmbus.ctl.v1.{lattice}");
        let mut nats = nats_client::Connection::open(self.nats_addr(), &self.operator_auth())?;
        nats.watch(&format!("wasmbus.evt.{lattice}.>"))?;
        let mut waiting = Vec::new();
        for host in self.inventories()? {
            let host_id = host["host_id"].as_str().unwrap_or_default().to_string();
            for entry in running(&host, component) {
                let command = serde_json::json!({
                    "component_ref": entry["image_ref"],
                    "component_id": entry["id"],
                    "annotations": entry["annotations"],
                    "count": entry["max_instances"],
                    "host_id": host_id,
                    "config": config,
                    "allow_update": false,
                });
                let answer = nats
                    .request_with(
                        &format!("{ctl}.component.scale.{host_id}"),
                        command.to_string().as_bytes(),
                        nats_client::ANSWER_TIMEOUT,
                    )?
                    .with_context(|| format!("host {host_id:.8} did not answer"))?;
                let answer: serde_json::Value = serde_json::from_str(&answer)?;
                if answer["success"] != true {
                    bail!(
                        "host {host_id:.8} refused to restart {component}: {}",
                        answer["message"]
                    );
                }
                let id = entry["id"].as_str().unwrap_or_default().to_string();
                waiting.push((host_id.clone(), id));
            }
        }
        if waiting.is_empty() {
            bail!("no host runs {component}");
        }
        let hosts = waiting.len();
        let deadline = Instant::now() + REFRESH_TIMEOUT;
        while !waiting.is_empty() {
            let event = nats.next_event(deadline)?.with_context(|| {
                format!(
                    "no host said it restarted {component} with its secrets within {REFRESH_TIMEOUT:?}: {waiting:?}"
                )
            })?;
            let event: serde_json::Value = serde_json::from_str(&event)?;
            let data = &event["data"];
            let about = |(host, id): &(String, String)| {
                data["host_id"] == host.as_str() && data["component_id"] == id.as_str()
            };
            let kind = event["type"].as_str().unwrap_or_default();
            if kind.ends_with(".component_scale_failed") && waiting.iter().any(about) {
                bail!(
                    "host {:.8} could not restart {component}: {}",
                    data["host_id"].as_str().unwrap_or_default(),
                    data["error"]
                );
            }
            if kind.ends_with(".component_scaled") {
                waiting.retain(|w| !about(w));
            }
        }
        step(&format!(
            "{component}: {hosts} host(s) restarted it with its secrets as they are now"
        ));
        Ok(())
    }
}

/// How long a host may take to restart a component with fresh secrets.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_are_wadms() {
        let manifest = serde_json::json!({
            "metadata": {"name": "patient-management"},
            "spec": {"components": [{
                "name": "gateway",
                "properties": {
                    "config": [
                        {"name": "gateway-settings", "properties": {"a": "1"}},
                        {"name": "lattice-tls"}
                    ],
                    "secrets": [{"name": "jwt_secret", "properties": {"key": "jwt-key"}}]
                }
            }]}
        });
        assert_eq!(
            component_config_names(&manifest, "gateway").unwrap(),
            [
                "patient_management-gateway_settings",
                "lattice-tls",
                "SECRET_patient_management-jwt_secret"
            ]
        );
        assert!(component_config_names(&manifest, "auth").is_err());
    }
}
