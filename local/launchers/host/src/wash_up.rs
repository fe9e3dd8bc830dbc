//! `wash up --host-path <pm-host>`: the environment wash gives the host it starts, read by this
//! launcher. wash configures wasmCloud's own `wasmcloud` binary through `WASMCLOUD_*` variables
//! (wash-cli 0.39 `config.rs`, `configure_host_env`; the operator's own environment is inherited
//! too); the launcher's own settings are `PM_*` variables and flags. So an operator who knows
//! wasmCloud can start a host of this lattice the way they always do (docs/deploy.md).
//!
//! Only settings that change which lattice the host joins and how are taken: the NATS address
//! and TLS, the two users' credentials, the CA, the labels, the secrets topic, the registry's
//! credentials, structured logs. wash always sets its own defaults for the execution limit
//! (10 minutes) and the RPC timeout, which cannot be told apart from a choice, so the launcher
//! keeps the lattice's (`PM_MAX_EXECUTION_MS`, `PM_RPC_TIMEOUT_MS`). A `PM_*` variable that is set
//! wins over its `WASMCLOUD_*` counterpart.
use std::collections::HashMap;

/// The `PM_*` variables to set from the `WASMCLOUD_*` ones in `vars`, leaving every `PM_*`
/// variable that is already set alone.
pub fn adopt(vars: &HashMap<String, String>) -> Vec<(String, String)> {
    let get = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
    let mut adopted = Vec::new();
    let host = get("WASMCLOUD_CTL_HOST").or_else(|| get("WASMCLOUD_NATS_HOST"));
    let port = get("WASMCLOUD_CTL_PORT").or_else(|| get("WASMCLOUD_NATS_PORT"));
    if host.is_some() || port.is_some() {
        let tls = get("WASMCLOUD_CTL_TLS").is_some_and(|v| v == "true" || v == "1");
        adopted.push((
            "PM_NATS_URL",
            format!(
                "{}://{}:{}",
                if tls { "tls" } else { "nats" },
                host.as_deref().unwrap_or("127.0.0.1"),
                port.as_deref().unwrap_or("4222")
            ),
        ));
    }
    // wasmCloud 1.x takes the CAs to trust as a comma-separated list; this host trusts one.
    if let Some(ca) = get("WASMCLOUD_TLS_CA_PATH")
        .and_then(|paths| paths.split(',').next().map(str::to_string))
        .or_else(|| get("WASMCLOUD_CTL_TLS_CA_FILE"))
    {
        adopted.push(("PM_TLS_CA_FILE", ca));
    }
    for (from, to) in [
        ("WASMCLOUD_CTL_JWT", "PM_CTL_JWT"),
        ("WASMCLOUD_CTL_SEED", "PM_CTL_SEED"),
        ("WASMCLOUD_RPC_JWT", "PM_RPC_JWT"),
        ("WASMCLOUD_RPC_SEED", "PM_RPC_SEED"),
        ("WASMCLOUD_SECRETS_TOPIC", "PM_SECRETS_TOPIC"),
        ("WASMCLOUD_OCI_REGISTRY", "PM_OCI_REGISTRY"),
        ("WASMCLOUD_OCI_REGISTRY_USER", "PM_OCI_USER"),
        ("WASMCLOUD_OCI_REGISTRY_PASSWORD", "PM_OCI_PASSWORD"),
        (
            "WASMCLOUD_STRUCTURED_LOGGING_ENABLED",
            "PM_STRUCTURED_LOGGING",
        ),
    ] {
        if let Some(value) = get(from) {
            adopted.push((to, value));
        }
    }
    // `--label k=v` becomes `WASMCLOUD_LABEL_k=v`; sorted, so the result does not depend on the
    // order the environment is read in.
    let mut labels: Vec<String> = vars
        .iter()
        .filter_map(|(key, value)| {
            Some(format!("{}={value}", key.strip_prefix("WASMCLOUD_LABEL_")?))
        })
        .collect();
    labels.sort();
    if !labels.is_empty() {
        adopted.push(("PM_HOST_LABELS", labels.join(",")));
    }
    adopted
        .into_iter()
        .filter(|(name, _)| !vars.contains_key(*name))
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}
