//! One link's view of Redis: keys under `<prefix><bucket>:`, values written with the link's TTL.
use std::future::Future;

use anyhow::Result;
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

pub struct Store {
    pub settings: LinkSettings,
    client: redis::Client,
    /// Made on first use: a Redis that is down at link time must not fail the link.
    connection: OnceCell<ConnectionManager>,
    cas: redis::Script,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("redis unavailable: {e}"))
}

impl Store {
    pub fn new(settings: LinkSettings) -> Result<Self> {
        let client = redis::Client::open(settings.url.as_str())?;
        Ok(Self {
            settings,
            client,
            connection: OnceCell::new(),
            cas: redis::Script::new(CAS_SCRIPT),
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

    /// Runs one Redis operation bounded by the link timeout.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let connection = self.connection().await?;
            op(connection).await.map_err(unavailable)
        };
        tokio::time::timeout(self.settings.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format!(
                    "no answer within {:?}",
                    self.settings.timeout
                )))
            })
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
