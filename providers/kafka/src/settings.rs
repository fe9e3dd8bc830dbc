//! Kafka settings, from provider config and secrets with per-link overrides.
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::ClientConfig;

use crate::security::Security;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub brokers: String,
    /// Plain text, TLS and/or SASL, as the brokers ask.
    pub security: Security,
    /// How long a publish may take before the component gets an error.
    pub timeout: Duration,
    /// Partitions for topics the provider creates.
    pub partitions: i32,
    /// How long the producer holds a message to batch it with later ones (librdkafka's
    /// `linger.ms`). Components publish one message per call and wait for its acknowledgement,
    /// so librdkafka's own default (5 ms) would be added to every publish; under load, messages
    /// that arrive while a batch is in flight are still sent together.
    pub linger: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub group_id: String,
}

fn lookup<'a>(maps: &[&'a HashMap<String, String>], key: &str) -> Option<&'a str> {
    maps.iter()
        .find_map(|m| m.get(key))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Config and secrets, each searched in order (the link's before the provider's).
pub struct Values<'a> {
    config: Vec<&'a HashMap<String, String>>,
    secrets: Vec<&'a HashMap<String, String>>,
}

impl<'a> Values<'a> {
    pub fn new(
        config: &[&'a HashMap<String, String>],
        secrets: &[&'a HashMap<String, String>],
    ) -> Self {
        Self {
            config: config.to_vec(),
            secrets: secrets.to_vec(),
        }
    }

    pub fn config(&self, key: &str) -> Option<&'a str> {
        lookup(&self.config, key)
    }

    pub fn secret(&self, key: &str) -> Option<&'a str> {
        lookup(&self.secrets, key)
    }

    /// A secret wins over config of the same name.
    pub fn config_or_secret(&self, key: &str) -> Option<&'a str> {
        self.secret(key).or_else(|| self.config(key))
    }
}

impl Settings {
    /// From `values`: the link's config and secrets win over the provider's (the provider-wide
    /// config and secrets from the manifest).
    pub fn resolve(values: &Values<'_>) -> Result<Self> {
        let number = |key: &str, default: u64| -> Result<u64> {
            values.config(key).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{key}: `{v}` is not a number"))
            })
        };
        let partitions = number("PARTITIONS", 3)?;
        if partitions == 0 || partitions > 1000 {
            bail!("PARTITIONS must be between 1 and 1000");
        }
        Ok(Self {
            brokers: values
                .config("BROKERS")
                .unwrap_or("127.0.0.1:9092")
                .to_string(),
            security: Security::resolve(values)?,
            timeout: Duration::from_millis(number("TIMEOUT_MS", 1500)?),
            partitions: partitions as i32,
            linger: Duration::from_millis(number("LINGER_MS", 0)?),
        })
    }

    /// A client config reaching the brokers as these settings say; every producer, consumer
    /// and admin client starts from it.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        self.security.apply(&mut config);
        config
    }
}

impl Subscription {
    /// `TOPICS` (comma separated) and `GROUP_ID` (default: the component's id, so each
    /// component is its own consumer group).
    pub fn from_link(link: &HashMap<String, String>, component: &str) -> Result<Self> {
        let topics: Vec<String> = lookup(&[link], "TOPICS")
            .context("TOPICS is required on a link that delivers messages")?
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        for topic in &topics {
            crate::subject::parse(topic).map_err(anyhow::Error::msg)?;
        }
        Ok(Self {
            topics,
            group_id: lookup(&[link], "GROUP_ID").unwrap_or(component).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use provider_support::map_of as map;

    fn resolve(link: &[(&str, &str)], provider: &[(&str, &str)]) -> Result<Settings> {
        let (link, provider) = (map(link), map(provider));
        Settings::resolve(&Values::new(&[&link, &provider], &[]))
    }

    #[test]
    fn link_overrides_provider() {
        let s = resolve(
            &[("BROKERS", "a:1")],
            &[("BROKERS", "b:2"), ("PARTITIONS", "6")],
        )
        .unwrap();
        assert_eq!((s.brokers.as_str(), s.partitions), ("a:1", 6));
        assert_eq!(s.linger, Duration::ZERO, "no batching delay unless asked");
        let s = resolve(&[("LINGER_MS", "5")], &[]).unwrap();
        assert_eq!(s.linger, Duration::from_millis(5));
        assert!(resolve(&[("LINGER_MS", "soon")], &[]).is_err());
        assert!(resolve(&[("PARTITIONS", "0")], &[]).is_err());
    }

    #[test]
    fn a_link_secret_wins_over_the_providers() {
        let (link, provider) = (
            map(&[("SASL_USERNAME", "link")]),
            map(&[("SASL_USERNAME", "provider")]),
        );
        let values = Values::new(&[], &[&link, &provider]);
        assert_eq!(values.config_or_secret("SASL_USERNAME"), Some("link"));
        assert_eq!(values.config("SASL_USERNAME"), None);
    }

    #[test]
    fn subscription_needs_valid_topics() {
        let s = Subscription::from_link(&map(&[("TOPICS", "patient, audit")]), "comp-1").unwrap();
        assert_eq!(s.topics, vec!["patient", "audit"]);
        assert_eq!(s.group_id, "comp-1");
        assert!(Subscription::from_link(&map(&[]), "c").is_err());
        assert!(Subscription::from_link(&map(&[("TOPICS", "a b")]), "c").is_err());
    }
}
