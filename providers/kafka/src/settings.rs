//! Kafka settings, from provider config with per-link overrides.
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub brokers: String,
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

impl Settings {
    /// `link` wins over `provider` (the provider-wide config from the manifest).
    pub fn resolve(
        link: &HashMap<String, String>,
        provider: &HashMap<String, String>,
    ) -> Result<Self> {
        let maps = [link, provider];
        let number = |key: &str, default: u64| -> Result<u64> {
            lookup(&maps, key).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{key}: `{v}` is not a number"))
            })
        };
        let partitions = number("PARTITIONS", 3)?;
        if partitions == 0 || partitions > 1000 {
            bail!("PARTITIONS must be between 1 and 1000");
        }
        Ok(Self {
            brokers: lookup(&maps, "BROKERS")
                .unwrap_or("127.0.0.1:9092")
                .to_string(),
            timeout: Duration::from_millis(number("TIMEOUT_MS", 1500)?),
            partitions: partitions as i32,
            linger: Duration::from_millis(number("LINGER_MS", 0)?),
        })
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

    #[test]
    fn link_overrides_provider() {
        let s = Settings::resolve(
            &map(&[("BROKERS", "a:1")]),
            &map(&[("BROKERS", "b:2"), ("PARTITIONS", "6")]),
        )
        .unwrap();
        assert_eq!((s.brokers.as_str(), s.partitions), ("a:1", 6));
        assert_eq!(s.linger, Duration::ZERO, "no batching delay unless asked");
        let s = Settings::resolve(&map(&[("LINGER_MS", "5")]), &map(&[])).unwrap();
        assert_eq!(s.linger, Duration::from_millis(5));
        assert!(Settings::resolve(&map(&[("LINGER_MS", "soon")]), &map(&[])).is_err());
        assert!(Settings::resolve(&map(&[("PARTITIONS", "0")]), &map(&[])).is_err());
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
