//! A link's Redis settings, from link config (secrets win, for a URL carrying a password).
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct LinkSettings {
    pub url: String,
    /// Prepended to every key, so several deployments or test runs share one Redis safely.
    pub key_prefix: String,
    /// Expiry applied to every value written through this link; `None` keeps values forever.
    pub ttl: Option<Duration>,
    /// How long a call waits on Redis before answering with an error.
    pub timeout: Duration,
    /// For a `rediss://` URL: the CA bundle the server's certificate is checked against (a
    /// managed Redis's CA); without it, the public roots.
    pub ca_file: Option<String>,
}

impl LinkSettings {
    pub fn from_link(
        config: &HashMap<String, String>,
        secrets: &HashMap<String, String>,
    ) -> Result<Self> {
        let get = |k: &str| {
            secrets
                .get(k)
                .or_else(|| config.get(k))
                .map(|v| v.trim().to_string())
        };
        let url = get("URL").unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string());
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bail!("URL must start with redis:// or rediss://");
        }
        let number = |k: &str, default: u64| -> Result<u64> {
            get(k).filter(|v| !v.is_empty()).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("{k}: `{v}` is not a whole number"))
            })
        };
        let ttl_seconds = number("TTL_SECONDS", 0)?;
        Ok(Self {
            url,
            key_prefix: get("KEY_PREFIX").unwrap_or_default(),
            ttl: (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds)),
            timeout: Duration::from_millis(number("TIMEOUT_MS", 1000)?),
            ca_file: get("CA_FILE").filter(|f| !f.is_empty()),
        })
    }

    /// The Redis key of `key` in `bucket`.
    pub fn key(&self, bucket: &str, key: &str) -> String {
        format!("{}{bucket}:{key}", self.key_prefix)
    }

    /// The URL without its password, for logs.
    pub fn describe(&self) -> String {
        match self.url.split_once('@') {
            Some((scheme_and_auth, host)) => {
                let scheme = scheme_and_auth.split("://").next().unwrap_or("redis");
                format!("{scheme}://***@{host}")
            }
            None => self.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use provider_support::map_of as map;

    #[test]
    fn keys_are_namespaced_by_prefix_and_bucket() {
        let s = LinkSettings::from_link(&map(&[("KEY_PREFIX", "t1:")]), &map(&[])).unwrap();
        assert_eq!(s.key("cache", "patient:1"), "t1:cache:patient:1");
        assert_eq!(s.ttl, None);
    }

    #[test]
    fn ttl_and_bad_values() {
        let s = LinkSettings::from_link(&map(&[("TTL_SECONDS", "600")]), &map(&[])).unwrap();
        assert_eq!(s.ttl, Some(Duration::from_secs(600)));
        let err = LinkSettings::from_link(&map(&[("TTL_SECONDS", "ten")]), &map(&[])).unwrap_err();
        assert!(err.to_string().contains("TTL_SECONDS"));
        assert!(LinkSettings::from_link(&map(&[("URL", "http://x")]), &map(&[])).is_err());
    }

    #[test]
    fn description_hides_the_password() {
        let s = LinkSettings::from_link(
            &map(&[]),
            &map(&[("URL", "redis://:hunter2@10.0.0.1:6379")]),
        )
        .unwrap();
        assert_eq!(s.describe(), "redis://***@10.0.0.1:6379");
    }
}
