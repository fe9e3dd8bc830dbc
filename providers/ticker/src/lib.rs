//! Ticker capability provider: components have no timers, so for each provider→component link
//! this calls the component's `pm:platform/ticker.tick` every `INTERVAL_MS` (default 1000).
//! Ticks never overlap for one link; a tick that fails or takes longer than `TIMEOUT_MS`
//! (default 30000) is logged and the next one comes at the next interval.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use provider_support::LinkKey;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use wasmcloud_provider_sdk::{get_connection, LinkConfig, LinkDeleteInfo, Provider};

pub mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "ticker-provider",
        path: "../../wit",
        generate_all,
    });
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Settings {
    pub fn from_config(config: &HashMap<String, String>) -> anyhow::Result<Self> {
        let millis = |key: &str, default: u64| -> anyhow::Result<Duration> {
            let value = match config.get(key).map(|v| v.trim()) {
                None | Some("") => default,
                Some(v) => v.parse().with_context(|| {
                    format!("{key}: `{v}` is not a whole number of milliseconds")
                })?,
            };
            if value == 0 {
                bail!("{key} must be above 0");
            }
            Ok(Duration::from_millis(value))
        };
        Ok(Self {
            interval: millis("INTERVAL_MS", 1000)?,
            timeout: millis("TIMEOUT_MS", 30_000)?,
        })
    }
}

/// A running ticker; dropping it stops the ticks.
struct Ticks(JoinHandle<()>);

impl Drop for Ticks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone, Default)]
pub struct TickerProvider {
    links: Arc<Mutex<HashMap<LinkKey, Ticks>>>,
}

pub async fn run() -> anyhow::Result<()> {
    // No exports to serve; the loop still answers `serving` for `cargo xtask provider restart`.
    provider_support::drain::run_provider(
        TickerProvider::default(),
        "ticker-provider",
        |_, _| async { Ok(Vec::new()) },
    )
    .await
}

async fn tick_forever(link: LinkKey, settings: Settings) {
    let mut interval = tokio::time::interval(settings.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let outcome = match get_connection().get_wrpc_client(&link.component).await {
            Ok(wrpc) => {
                let call = bindings::pm::platform::ticker::tick(&wrpc, None);
                match tokio::time::timeout(settings.timeout, call).await {
                    Ok(Ok(Ok(()))) => continue,
                    Ok(Ok(Err(e))) => format!("tick failed: {e}"),
                    Ok(Err(e)) => format!("component unreachable: {e:#}"),
                    Err(_) => format!("no answer within {:?}", settings.timeout),
                }
            }
            Err(e) => format!("no wRPC client: {e:#}"),
        };
        tracing::warn!(link = %link, error = %outcome, "tick not done; next one at the next interval");
    }
}

impl Provider for TickerProvider {
    async fn receive_link_config_as_source(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        provider_support::links::received(&link);
        let key = LinkKey::new(link.target_id, link.link_name);
        let settings = match Settings::from_config(link.config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(link = %key, error = %format!("{e:#}"), "rejected ticker link configuration");
                return Err(e);
            }
        };
        tracing::info!(link = %key, interval = ?settings.interval, "ticking");
        let ticks = Ticks(tokio::spawn(tick_forever(key.clone(), settings)));
        // Replacing a link stops its old ticks (dropping them aborts the task).
        self.links.lock().await.insert(key, ticks);
        Ok(())
    }

    async fn delete_link_as_source(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.links
            .lock()
            .await
            .remove(&LinkKey::new(info.get_target_id(), info.get_link_name()));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        self.links.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider_support::map_of;

    #[test]
    fn settings_have_defaults_and_refuse_nonsense() {
        let s = Settings::from_config(&map_of(&[])).unwrap();
        assert_eq!(s.interval, Duration::from_secs(1));
        let s = Settings::from_config(&map_of(&[("INTERVAL_MS", "250")])).unwrap();
        assert_eq!(s.interval, Duration::from_millis(250));
        assert!(Settings::from_config(&map_of(&[("INTERVAL_MS", "0")])).is_err());
        let err = Settings::from_config(&map_of(&[("TIMEOUT_MS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("TIMEOUT_MS"));
    }
}
