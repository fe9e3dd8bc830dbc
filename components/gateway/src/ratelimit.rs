//! Per-client rate limiting shared by every gateway instance: GCRA, which is the token bucket
//! kept as one number per client (the "theoretical arrival time" of the next request), stored
//! in the key-value store and updated with compare-and-swap so concurrent gateways on any host
//! cannot both spend the same token.

/// `per_second` requests per second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied; the client may retry after this many whole seconds (for `Retry-After`).
    Deny {
        retry_after_secs: u64,
    },
}

/// Where buckets live; the gateway's is Redis through the key-value provider.
pub trait BucketStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Sets `key` to `new` only if it currently holds `expected` (`None`: absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, String>;
}

/// One GCRA step: from the stored arrival time (ms), allow or deny at `now_ms`, and the new
/// arrival time to store when allowed.
pub fn step(limit: Limit, now_ms: u64, stored_tat_ms: Option<u64>) -> (Decision, Option<u64>) {
    let interval = 1000.0 / limit.per_second;
    let tolerance = interval * f64::from(limit.burst.saturating_sub(1));
    let tat = stored_tat_ms.unwrap_or(now_ms).max(now_ms) as f64;
    let allowed_from = tat - tolerance;
    if (now_ms as f64) < allowed_from {
        let wait_ms = allowed_from - now_ms as f64;
        return (
            Decision::Deny {
                retry_after_secs: (wait_ms / 1000.0).ceil().max(1.0) as u64,
            },
            None,
        );
    }
    (Decision::Allow, Some((tat + interval).round() as u64))
}

/// Decides for `client`, retrying the compare-and-swap when another gateway got there first.
pub fn check(
    store: &dyn BucketStore,
    limit: Limit,
    client: &str,
    now_ms: u64,
) -> Result<Decision, String> {
    let key = format!("ratelimit:{client}");
    for _ in 0..16 {
        let current = store.get(&key)?;
        let stored = current
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok());
        match step(limit, now_ms, stored) {
            (Decision::Allow, Some(next)) => {
                if store.compare_and_swap(&key, current.as_deref(), next.to_string().as_bytes())? {
                    return Ok(Decision::Allow);
                }
            }
            (decision, _) => return Ok(decision),
        }
    }
    Err(format!("rate-limit bucket {key} is too contended"))
}

/// An in-memory store with the same compare-and-swap semantics, for tests.
#[cfg(test)]
pub mod memory {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    pub struct Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>);

    impl super::BucketStore for Memory {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&[u8]>,
            new: &[u8],
        ) -> Result<bool, String> {
            let mut map = self.0.lock().unwrap();
            if map.get(key).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            map.insert(key.to_string(), new.to_vec());
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::Memory;
    use super::*;

    const SEED: Limit = Limit {
        per_second: 5.0,
        burst: 5,
    };

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let store = Memory::default();
        let allowed = (0..10)
            .filter(|_| check(&store, SEED, "c", 1_000_000).unwrap() == Decision::Allow)
            .count();
        assert_eq!(allowed, 5, "burst of 5 at one instant");
        assert_eq!(
            check(&store, SEED, "c", 1_000_000).unwrap(),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        // One token comes back every 200 ms.
        assert_eq!(
            check(&store, SEED, "c", 1_000_200).unwrap(),
            Decision::Allow
        );
        assert_ne!(
            check(&store, SEED, "c", 1_000_200).unwrap(),
            Decision::Allow
        );
        // Clients have their own buckets.
        assert_eq!(
            check(&store, SEED, "other", 1_000_000).unwrap(),
            Decision::Allow
        );
    }

    #[test]
    fn the_seeds_test_ten_requests_100ms_apart_sees_a_429() {
        let store = Memory::default();
        let denied = (0..10)
            .filter(|i| check(&store, SEED, "c", 5_000_000 + i * 100).unwrap() != Decision::Allow)
            .count();
        assert!(denied >= 1);
    }

    #[test]
    fn concurrent_gateways_never_overspend() {
        let store = Memory::default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..5)
                        .filter(|_| {
                            check(&store, SEED, "shared", 9_000_000).unwrap() == Decision::Allow
                        })
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 5);
    }
}
