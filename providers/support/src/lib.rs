//! Shared by the platform's capability providers.
pub mod drain;
pub mod lattice_ca;
pub mod links;
pub mod testing;

use std::collections::HashMap;
use std::fmt;

use wasmcloud_provider_sdk::core::secrets::SecretValue;
use wasmcloud_provider_sdk::Context;

/// JSON log lines on stderr (the host collects provider output), level from `PM_LOG`/`RUST_LOG`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// One link as a provider sees it: which component, under which link name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkKey {
    pub component: String,
    pub link_name: String,
}

impl LinkKey {
    pub fn new(component: &str, link_name: &str) -> Self {
        Self {
            component: component.to_string(),
            link_name: link_name.to_string(),
        }
    }

    /// The calling component's link, from the wRPC invocation context the host sets.
    pub fn from_context(context: Option<&Context>) -> Option<Self> {
        let context = context?;
        Some(Self::new(
            context.component.as_deref()?,
            context.link_name(),
        ))
    }
}

impl fmt::Display for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (link `{}`)", self.component, self.link_name)
    }
}

/// Secrets that are strings; binary secrets are not used by these providers.
pub fn secret_strings(secrets: &HashMap<String, SecretValue>) -> HashMap<String, String> {
    secrets
        .iter()
        .filter_map(|(k, v)| v.as_string().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// A config map from literal pairs (tests and examples).
pub fn map_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
