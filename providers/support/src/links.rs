//! Links the host lists for this provider but never handed to it.
//!
//! A link put that lands while a provider starts can be lost: the host publishes it before the
//! provider has subscribed, or builds the provider's start-up list just before adding it
//! (wasmcloud-otp#361, open upstream; wasmCloud 1.9's host has no acknowledgement). The host
//! still lists the link, so wadm reports the application deployed while every call on that link
//! fails. `watch` asks the host for its links a few times in the provider's first minutes; a
//! link missing twice in a row makes the provider exit, and the host starts it again with every
//! link it lists in the start-up data.
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use wasmcloud_provider_sdk::{load_host_data, LinkConfig};

/// What identifies a link to the host (its source, target, name and WIT package).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct LinkId {
    pub source_id: String,
    pub target: String,
    #[serde(default = "default_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
}

fn default_name() -> String {
    "default".into()
}

/// Pauses before each check, from the start: the start-up race is over within them. Every 5 s
/// for the first minute, so a missed link is confirmed (missing twice in a row) about 10 s after
/// the host lists it: measured with pauses of 5, 5, 10, 20 s, a postgres provider on a machine
/// that joined at deployment was confirmed 41 s after it started, and billing's calls routed to
/// it failed meanwhile (the machines test, in a fresh-clone run).
const CHECKS: [u64; 16] = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 20, 30, 60];

fn received_links() -> &'static Mutex<HashSet<LinkId>> {
    static RECEIVED: OnceLock<Mutex<HashSet<LinkId>>> = OnceLock::new();
    RECEIVED.get_or_init(Mutex::default)
}

fn remember(id: LinkId) {
    received_links()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id);
}

/// Records a link the host handed over (call it first in `receive_link_config_as_*`, also for
/// a link whose configuration is then refused: it was received).
pub fn received(link: &LinkConfig<'_>) {
    let (namespace, package, _) = link.wit_metadata;
    remember(LinkId {
        source_id: link.source_id.to_string(),
        target: link.target_id.to_string(),
        name: link.link_name.to_string(),
        wit_namespace: namespace.to_string(),
        wit_package: package.to_string(),
    });
}

/// The links of `listed` that involve `provider` (as source or target) and were not received.
pub fn missed(listed: &[LinkId], provider: &str, received: &HashSet<LinkId>) -> HashSet<LinkId> {
    listed
        .iter()
        .filter(|l| l.source_id == provider || l.target == provider)
        .filter(|l| !received.contains(l))
        .cloned()
        .collect()
}

#[derive(Deserialize)]
struct CtlResponse {
    success: bool,
    #[serde(default)]
    message: String,
    response: Option<Vec<LinkId>>,
}

/// Starts the checks in the background (call after `run_provider`).
pub fn watch() {
    tokio::spawn(async {
        if let Err(e) = check_links().await {
            tracing::warn!(error = %format!("{e:#}"), "cannot check for links the host did not hand over");
        }
    });
}

async fn check_links() -> anyhow::Result<()> {
    let host = load_host_data()?;
    // Everything in the start-up data was handed over, whether or not its handler accepted it.
    for ld in &host.link_definitions {
        remember(LinkId {
            source_id: ld.source_id.clone(),
            target: ld.target.clone(),
            name: ld.name.clone(),
            wit_namespace: ld.wit_namespace.clone(),
            wit_package: ld.wit_package.clone(),
        });
    }
    // The SDK's own connection, with the lattice credentials the host handed over: those may
    // ask the hosts for their links (`link.get`) and for no other control command.
    let nats = wasmcloud_provider_sdk::get_connection().nats.clone();
    let subject = format!("wasmbus.ctl.v1.{}.link.get", host.lattice_rpc_prefix);
    let mut suspects = HashSet::new();
    for pause in CHECKS {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        let reply = nats.request(subject.clone(), "".into()).await?;
        let answer: CtlResponse = serde_json::from_slice(&reply.payload)?;
        anyhow::ensure!(
            answer.success,
            "the host refused to list links: {}",
            answer.message
        );
        let received = received_links()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let missed = missed(
            &answer.response.unwrap_or_default(),
            &host.provider_key,
            &received,
        );
        // Missing twice in a row: not a put still on its way.
        let confirmed: Vec<&LinkId> = missed.intersection(&suspects).collect();
        if !confirmed.is_empty() {
            tracing::error!(links = ?confirmed, "the host lists links this provider never received; exiting so that the host starts it again with all of them");
            std::process::exit(1);
        }
        suspects = missed;
    }
    tracing::info!("every link the host lists for this provider was received");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(source: &str, target: &str, name: &str) -> LinkId {
        LinkId {
            source_id: source.into(),
            target: target.into(),
            name: name.into(),
            wit_namespace: "wasmcloud".into(),
            wit_package: "postgres".into(),
        }
    }

    #[test]
    fn only_unreceived_links_of_this_provider_are_missed() {
        let listed = [
            link("patients", "postgres", "default"),
            link("billing", "postgres", "default"),
            link("patients", "postgres", "second"),
            link("gateway", "auth", "default"),
            link("postgres", "patients", "default"),
        ];
        let received: HashSet<LinkId> = [link("patients", "postgres", "default")].into();
        let missed = missed(&listed, "postgres", &received);
        assert_eq!(
            missed,
            [
                link("billing", "postgres", "default"),
                link("patients", "postgres", "second"),
                link("postgres", "patients", "default"),
            ]
            .into()
        );
    }

    #[test]
    fn the_hosts_answer_parses() {
        let raw = r#"{"success":true,"message":"","response":[{"source_id":"a","target":"b","name":"default","wit_namespace":"wasi","wit_package":"keyvalue","interfaces":["store"],"source_config":[],"target_config":["c"]}]}"#;
        let answer: CtlResponse = serde_json::from_str(raw).unwrap();
        assert_eq!(answer.response.unwrap()[0].wit_package, "keyvalue");
    }
}
