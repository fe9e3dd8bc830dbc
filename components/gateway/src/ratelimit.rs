//! Per-client rate limiting shared by every gateway instance: a token bucket per client kept in
//! Redis. The key-value provider takes the token atomically on Redis's clock
//! (`pm:platform/token-bucket`, GCRA in `providers/redis`), so concurrent gateways on any host
//! cannot both spend one token and never disagree about time.

/// `per_second` requests per second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

impl Limit {
    /// From the gateway's config values; missing or non-positive values take the defaults
    /// (SPEC.md: 5 per second, burst 5).
    pub fn from_config(value: impl Fn(&str) -> Option<String>) -> Self {
        let number = |key: &str, default: f64| {
            value(key)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(default)
        };
        Limit {
            per_second: number("rate_limit_per_second", 5.0),
            burst: number("rate_limit_burst", 5.0).max(1.0) as u32,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied; the client may retry after this many whole seconds (for `Retry-After`).
    Deny {
        retry_after_secs: u64,
    },
    /// The caller's session was ended (signed out, its user disabled or given a new password):
    /// its token is refused however valid its signature.
    Ended,
}

/// A signed-in caller's session, as the gateway read it from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The token's id (`jti`); empty for a token that has none.
    pub id: String,
    pub subject: String,
    pub issued_at: u64,
}

impl Decision {
    /// From the store's answer: `None` taken, `Some(ms)` wait that long. `Retry-After` has whole
    /// seconds, rounded up so a client that obeys it is served.
    pub fn from_wait_ms(wait_ms: Option<u64>) -> Self {
        match wait_ms {
            None => Decision::Allow,
            Some(ms) => Decision::Deny {
                retry_after_secs: ms.div_ceil(1000).max(1),
            },
        }
    }
}

/// Where buckets live; the gateway's is Redis through the key-value provider.
pub trait Buckets {
    /// Takes a token from `client`'s bucket.
    fn take(&self, client: &str, limit: Limit) -> Result<Decision, String>;
    /// `take` for a signed-in caller, after checking in the same round trip that `session`
    /// was not ended.
    fn admit(&self, client: &str, limit: Limit, session: &Session) -> Result<Decision, String>;
}

/// A bucket per client that never refills: enough to drive the router's 429 path in tests.
#[cfg(test)]
pub mod memory {
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Memory(Mutex<HashMap<String, u32>>, pub Mutex<Vec<String>>);

    impl Memory {
        /// Ends the session with token id `id`.
        pub fn end(&self, id: &str) {
            self.1.lock().unwrap().push(id.to_string());
        }
    }

    impl super::Buckets for Memory {
        fn admit(
            &self,
            client: &str,
            limit: super::Limit,
            session: &super::Session,
        ) -> Result<super::Decision, String> {
            if self.1.lock().unwrap().contains(&session.id) {
                return Ok(super::Decision::Ended);
            }
            self.take(client, limit)
        }

        fn take(&self, client: &str, limit: super::Limit) -> Result<super::Decision, String> {
            let mut spent = self.0.lock().unwrap();
            let spent = spent.entry(client.to_string()).or_default();
            if *spent >= limit.burst {
                return Ok(super::Decision::from_wait_ms(Some(1)));
            }
            *spent += 1;
            Ok(super::Decision::Allow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_config_with_sane_defaults() {
        let config = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            Limit::from_config(config(&[])),
            Limit {
                per_second: 5.0,
                burst: 5
            }
        );
        assert_eq!(
            Limit::from_config(config(&[
                ("rate_limit_per_second", "0.5"),
                ("rate_limit_burst", "20")
            ])),
            Limit {
                per_second: 0.5,
                burst: 20
            }
        );
        assert_eq!(
            Limit::from_config(config(&[
                ("rate_limit_per_second", "-1"),
                ("rate_limit_burst", "x")
            ])),
            Limit {
                per_second: 5.0,
                burst: 5
            }
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Decision::from_wait_ms(None), Decision::Allow);
        for (ms, secs) in [(0, 1), (1, 1), (1000, 1), (1001, 2)] {
            assert_eq!(
                Decision::from_wait_ms(Some(ms)),
                Decision::Deny {
                    retry_after_secs: secs
                }
            );
        }
    }
}
