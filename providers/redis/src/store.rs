//! One link's view of Redis: keys under `<prefix><bucket>:`, values written with the link's TTL.
use std::future::Future;

use anyhow::{Context, Result};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

use crate::bindings::exports::wrpc::keyvalue::store::{Error, KeyResponse};
use crate::settings::LinkSettings;

/// Atomic compare-and-swap: ARGV[1] = "1" when a current value is expected (ARGV[2]),
/// ARGV[3] = new value, ARGV[4] = TTL in ms (0: none).
const CAS_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then matches = (current == ARGV[2]) else matches = (current == false) end
if not matches then return 0 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
"#;

/// GCRA, the token bucket kept as one number per key: the "theoretical arrival time" (ms) at
/// which the bucket would be full again. ARGV[1] = ms per token, ARGV[2] = burst, ARGV[3] = now
/// in ms or "" for the server's clock (tests pin it). Returns {1, 0} when a token was taken,
/// {0, ms until one is available} otherwise. The key expires once the bucket is full again, so
/// idle clients cost nothing. Running in Redis makes take-and-update atomic and orders every
/// caller on one clock.
///
/// With a session (ARGV[4] = the token's issued-at, seconds; "" for none), it first checks that
/// the session was not ended, in the same round trip: KEYS[2] exists when the token was signed
/// out, KEYS[3] holds the time before which every token of its subject was ended. Returns
/// {2, 0} for an ended session, and takes no token for it.
const TOKEN_BUCKET_SCRIPT: &str = r#"
if ARGV[4] ~= '' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {2, 0} end
  local before = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
  if tonumber(ARGV[4]) < before then return {2, 0} end
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local allowed_from = tat - interval * (burst - 1)
if now < allowed_from then
  return {0, math.ceil(allowed_from - now)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return {1, 0}
"#;

pub struct Store {
    pub settings: LinkSettings,
    client: redis::Client,
    /// Made on first use: a Redis that is down at link time must not fail the link.
    connection: OnceCell<ConnectionManager>,
    cas: redis::Script,
    token_bucket: redis::Script,
    breaker: Breaker,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("redis unavailable: {e}"))
}

/// How a call failed: Redis could not be reached or did not answer (opens the breaker), or
/// anything else, an error Redis answered or a connection that dropped (the breaker closes).
enum Failure {
    Unreachable(Error),
    Refused(Error),
}

/// A circuit breaker by time: after a call found Redis unreachable, calls fail at once until
/// `open_until`; the first call after that is let through as a trial (and pushes `open_until`
/// on, so the calls beside it still fail at once), and its outcome closes or reopens it.
#[derive(Default)]
struct Breaker {
    open_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Breaker {
    /// `Some(wait)` when calls must fail now; `None` lets this call through.
    fn closed_for(&self, trial: std::time::Duration) -> Option<std::time::Duration> {
        let mut open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = (*open_until)?;
        let now = std::time::Instant::now();
        if now < until {
            return Some(until - now);
        }
        // This call is the trial; others wait for its outcome as long as it may take.
        *open_until = Some(now + trial);
        None
    }

    fn open(&self, for_: std::time::Duration) {
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now() + for_);
    }

    fn close(&self) {
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Store {
    pub fn new(settings: LinkSettings) -> Result<Self> {
        let client = match &settings.ca_file {
            // TLS (`rediss://`) checked against the link's own CA instead of the public roots.
            Some(ca) => redis::Client::build_with_tls(
                settings.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(
                        std::fs::read(ca).with_context(|| format!("reading CA_FILE {ca}"))?,
                    ),
                },
            )?,
            None => redis::Client::open(settings.url.as_str())?,
        };
        Ok(Self {
            settings,
            client,
            connection: OnceCell::new(),
            breaker: Breaker::default(),
            cas: redis::Script::new(CAS_SCRIPT),
            token_bucket: redis::Script::new(TOKEN_BUCKET_SCRIPT),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.settings.timeout)
            .set_response_timeout(self.settings.timeout)
            .set_number_of_retries(1);
        let manager = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(unavailable)?;
        Ok(manager.clone())
    }

    /// Runs one Redis operation bounded by the link timeout. While the breaker is open (Redis
    /// was unreachable or silent a moment ago) it fails at once instead of waiting out the
    /// timeout again: a request that asks Redis several things, or many requests at once, are
    /// not each held for the timeout while Redis is down.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if let Some(wait) = self.breaker.closed_for(self.settings.timeout) {
            return Err(unavailable(format!(
                "not answering a moment ago; next try in {} ms",
                wait.as_millis()
            )));
        }
        let work = async {
            let connection = self.connection().await.map_err(Failure::Unreachable)?;
            op(connection).await.map_err(|e| {
                // Silent or refusing connections: Redis is not there, so calls stop asking for
                // a while. A connection that dropped (Redis restarted, say) is reconnected by the
                // manager, and the next call may well succeed: no reason to stop asking.
                if e.is_timeout() || e.is_connection_refusal() {
                    Failure::Unreachable(unavailable(e))
                } else {
                    Failure::Refused(unavailable(e))
                }
            })
        };
        let outcome = tokio::time::timeout(self.settings.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Unreachable(unavailable(format!(
                    "no answer within {:?}",
                    self.settings.timeout
                ))))
            });
        match outcome {
            Ok(value) => {
                self.breaker.close();
                Ok(value)
            }
            Err(Failure::Refused(e)) => {
                self.breaker.close();
                Err(e)
            }
            Err(Failure::Unreachable(e)) => {
                self.breaker.open(self.settings.timeout);
                Err(e)
            }
        }
    }

    pub async fn ping(&self) -> Result<(), Error> {
        self.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, Error> {
        let key = self.settings.key(bucket, key);
        let value: Option<Vec<u8>> = self.call(|mut c| async move { c.get(key).await }).await?;
        Ok(value.map(Bytes::from))
    }

    pub async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        self.set_many(bucket, &[(key.to_string(), Bytes::copy_from_slice(value))])
            .await
    }

    pub async fn set_many(&self, bucket: &str, items: &[(String, Bytes)]) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in items {
            let key = self.settings.key(bucket, key);
            match self.settings.ttl {
                Some(ttl) => pipe
                    .pset_ex(key, value.as_ref(), ttl.as_millis() as u64)
                    .ignore(),
                None => pipe.set(key, value.as_ref()).ignore(),
            };
        }
        self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    pub async fn delete(&self, bucket: &str, keys: &[String]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.settings.key(bucket, k)).collect();
        self.call(|mut c| async move { c.del::<_, ()>(keys).await })
            .await
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        let key = self.settings.key(bucket, key);
        self.call(|mut c| async move { c.exists(key).await }).await
    }

    pub async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, Error> {
        let key = self.settings.key(bucket, key);
        let delta = i64::try_from(delta).map_err(|_| Error::Other("delta is too large".into()))?;
        let value: i64 = self
            .call(|mut c| async move { c.incr(key, delta).await })
            .await?;
        u64::try_from(value).map_err(|_| Error::Other(format!("counter went negative ({value})")))
    }

    pub async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Bytes)>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| self.settings.key(bucket, k)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .call(|mut c| async move { redis::cmd("MGET").arg(full).query_async(&mut c).await })
            .await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, Bytes::from(v))))
            .collect())
    }

    pub async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyResponse, Error> {
        let prefix = self.settings.key(bucket, "");
        let pattern = format!("{}*", escape_glob(&prefix));
        let (next, keys): (u64, Vec<String>) = self
            .call(|mut c| async move {
                redis::cmd("SCAN")
                    .arg(cursor.unwrap_or(0))
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(200)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(KeyResponse {
            keys: keys
                .into_iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                .collect(),
            cursor: (next != 0).then_some(next),
        })
    }

    pub async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, Error> {
        let key = self.settings.key(bucket, key);
        let ttl_ms = self.settings.ttl.map_or(0, |t| t.as_millis() as u64);
        let mut invocation = self.cas.key(key);
        invocation
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl_ms);
        let swapped: i32 = self
            .call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(swapped == 1)
    }
}

impl Store {
    /// Takes a token from bucket `key`; `Ok(None)` when taken, `Ok(Some(ms))` when the caller
    /// must wait that long. `now_ms` pins the clock (tests); `None` uses the server's.
    pub async fn take_token(
        &self,
        bucket: &str,
        key: &str,
        per_second: f64,
        burst: u32,
        now_ms: Option<u64>,
    ) -> Result<Option<u64>, Error> {
        match self
            .admit(bucket, key, per_second, burst, None, now_ms)
            .await?
        {
            Admission::Ended => Err(Error::Other("no session was asked about".into())),
            Admission::Taken => Ok(None),
            Admission::Wait(ms) => Ok(Some(ms)),
        }
    }

    /// `take_token` for a signed-in caller: refused at once when `session` was ended (signed
    /// out, its user disabled or its password changed), as its ends are kept in `sessions`'s
    /// bucket: `ended:<id>` and `ended-before:<subject>`.
    pub async fn admit(
        &self,
        bucket: &str,
        key: &str,
        per_second: f64,
        burst: u32,
        session: Option<(&str, &Session)>,
        now_ms: Option<u64>,
    ) -> Result<Admission, Error> {
        if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
            return Err(Error::Other(format!(
                "a token bucket needs a positive rate and burst (got {per_second}/s, burst {burst})"
            )));
        }
        let key = self.settings.key(bucket, key);
        let mut invocation = self.token_bucket.key(key);
        if let Some((sessions, session)) = session {
            invocation
                .key(
                    self.settings
                        .key(sessions, &format!("ended:{}", session.id)),
                )
                .key(
                    self.settings
                        .key(sessions, &format!("ended-before:{}", session.subject)),
                );
        }
        invocation
            .arg(1000.0 / per_second)
            .arg(burst)
            .arg(now_ms.map(|n| n.to_string()).unwrap_or_default())
            .arg(
                session
                    .map(|(_, s)| s.issued_at.to_string())
                    .unwrap_or_default(),
            );
        let (taken, wait_ms): (i64, i64) = self
            .call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(match taken {
            1 => Admission::Taken,
            2 => Admission::Ended,
            _ => Admission::Wait(wait_ms.max(0) as u64),
        })
    }
}

/// A signed-in caller's session, as the gateway read it from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The token's id (`jti`).
    pub id: String,
    pub subject: String,
    /// When the token was issued, seconds since the Unix epoch.
    pub issued_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Taken,
    /// No token: one is available again after this many milliseconds.
    Wait(u64),
    /// The session was ended.
    Ended,
}

/// Escapes Redis glob metacharacters so a prefix matches literally.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Against the machine's Redis (127.0.0.1:6379 or `PM_TEST_REDIS_URL`), keys under a prefix of
/// this process so parallel runs never meet.
#[cfg(test)]
mod tests {
    use super::*;
    use provider_support::testing::{certificate, free_port, wait_listening, Server};

    #[test]
    fn the_breaker_fails_calls_at_once_then_lets_one_trial_through() {
        let breaker = Breaker::default();
        let long = std::time::Duration::from_secs(60);
        assert_eq!(breaker.closed_for(long), None, "closed until a failure");
        breaker.open(long);
        assert!(breaker.closed_for(long).is_some(), "open: fail at once");
        breaker.open(std::time::Duration::ZERO);
        assert_eq!(
            breaker.closed_for(long),
            None,
            "the first call after is the trial"
        );
        assert!(
            breaker.closed_for(long).is_some(),
            "calls beside the trial still fail at once"
        );
        breaker.close();
        assert_eq!(
            breaker.closed_for(long),
            None,
            "a trial that worked closes it"
        );
    }

    #[tokio::test]
    async fn a_redis_that_is_not_there_fails_the_next_calls_at_once() {
        // A port nothing listens on: the first call finds it unreachable, the next fails without
        // trying again.
        let config = std::collections::HashMap::from([(
            "URL".to_string(),
            "redis://127.0.0.1:1/0".to_string(),
        )]);
        let store =
            Store::new(LinkSettings::from_link(&config, &Default::default()).unwrap()).unwrap();
        assert!(store.get("b", "k").await.is_err());
        let error = store.get("b", "k").await.unwrap_err();
        assert!(format!("{error:?}").contains("next try in"), "{error:?}");
    }

    /// A `rediss://` link reaches a Redis that speaks only TLS when its CA file holds the
    /// server's CA, and not when it holds another (as with a managed Redis: values only).
    #[tokio::test]
    async fn a_tls_redis_is_reached_with_its_ca_and_refused_with_another() {
        let dir = std::env::temp_dir().join(format!("pm-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = certificate(&dir, "server");
        let (other, _) = certificate(&dir, "other");
        let port = free_port();
        let server = Server::start(
            std::process::Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--tls-port",
                    &port.to_string(),
                ])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&cert)
                .args([
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]),
        );
        wait_listening(port, "the TLS Redis", std::time::Duration::from_secs(10)).await;
        let with_ca = |ca: &std::path::Path| {
            let config = std::collections::HashMap::from([
                ("URL".to_string(), format!("rediss://localhost:{port}/0")),
                ("CA_FILE".to_string(), ca.display().to_string()),
            ]);
            Store::new(LinkSettings::from_link(&config, &Default::default()).unwrap()).unwrap()
        };
        let trusted = with_ca(&cert);
        let written = trusted.set("b", "k", b"v").await;
        let read = trusted.get("b", "k").await;
        let refused = with_ca(&other).get("b", "k").await;
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(written.is_ok(), "{written:?}");
        assert_eq!(read.unwrap().as_deref(), Some(&b"v"[..]));
        assert!(
            refused.is_err(),
            "a server whose CA the link does not hold was trusted"
        );
    }

    fn store(name: &str) -> Store {
        let url = std::env::var("PM_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let config = std::collections::HashMap::from([
            ("URL".to_string(), url),
            (
                "KEY_PREFIX".to_string(),
                format!("pm-unit-{}-{name}:", std::process::id()),
            ),
        ]);
        Store::new(LinkSettings::from_link(&config, &Default::default()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn an_ended_session_is_refused_before_any_token_is_taken() {
        let s = store("sessions");
        let session = |id: &str, issued_at| Session {
            id: id.into(),
            subject: "nurse@clinic.test".into(),
            issued_at,
        };
        let admit = |session: Session| {
            let s = &s;
            async move {
                s.admit(
                    "b",
                    "c",
                    5.0,
                    1,
                    Some(("sessions", &session)),
                    Some(1_000_000),
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(admit(session("t1", 100)).await, Admission::Taken);
        s.set("sessions", "ended:t1", b"1").await.unwrap();
        assert_eq!(
            admit(session("t1", 100)).await,
            Admission::Ended,
            "signed out"
        );
        s.set("sessions", "ended-before:nurse@clinic.test", b"200")
            .await
            .unwrap();
        assert_eq!(
            admit(session("t2", 199)).await,
            Admission::Ended,
            "issued before the end"
        );
        // Issued at the end or after: the bucket decides (its one token went to the first call).
        assert_eq!(admit(session("t3", 200)).await, Admission::Wait(200));
    }
    #[tokio::test]
    async fn a_burst_passes_then_one_token_per_interval() {
        let s = store("burst");
        let take = |now| s.take_token("b", "c", 5.0, 5, Some(now));
        for _ in 0..5 {
            assert_eq!(take(1_000_000).await.unwrap(), None);
        }
        assert_eq!(take(1_000_000).await.unwrap(), Some(200));
        assert_eq!(take(1_000_100).await.unwrap(), Some(100));
        assert_eq!(
            take(1_000_200).await.unwrap(),
            None,
            "one token back after 200 ms"
        );
        assert!(take(1_000_200).await.unwrap().is_some());
        assert_eq!(
            s.take_token("b", "other", 5.0, 5, Some(1_000_000))
                .await
                .unwrap(),
            None,
            "every key has its own bucket"
        );
    }

    #[tokio::test]
    async fn the_seeds_ten_requests_100ms_apart_see_a_refusal() {
        let s = store("seed");
        let mut refused = 0;
        for i in 0..10 {
            if s.take_token("b", "c", 5.0, 5, Some(5_000_000 + i * 100))
                .await
                .unwrap()
                .is_some()
            {
                refused += 1;
            }
        }
        // The burst of 5 plus one token back per 200 ms covers the first nine; the tenth, at
        // 900 ms, finds the bucket empty.
        assert_eq!(refused, 1);
    }

    #[tokio::test]
    async fn concurrent_callers_never_overspend_on_the_server_clock() {
        let s = std::sync::Arc::new(store("concurrent"));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.take_token("b", "shared", 0.001, 5, None).await })
            })
            .collect();
        let mut taken = 0;
        for task in tasks {
            if task.await.unwrap().unwrap().is_none() {
                taken += 1;
            }
        }
        assert_eq!(
            taken, 5,
            "a rate of one per 1000 s refills nothing during the test"
        );
    }

    #[tokio::test]
    async fn a_full_bucket_leaves_no_key_behind() {
        let s = store("expiry");
        assert_eq!(s.take_token("b", "c", 1000.0, 1, None).await.unwrap(), None);
        // The key lives until the bucket is full again: one token at 1000/s is 1 ms.
        let key = s.settings.key("b", "c");
        let mut c = s.connection().await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!((0..=2).contains(&ttl) || ttl == -2, "ttl {ttl}");
    }

    #[tokio::test]
    async fn a_nonsense_limit_is_an_error_not_a_pass() {
        let s = store("nonsense");
        assert!(s.take_token("b", "c", 0.0, 5, None).await.is_err());
        assert!(s.take_token("b", "c", 5.0, 0, None).await.is_err());
    }
}
