//! Redis capability provider. Serves `wrpc:keyvalue/{store,atomics,batch}@0.2.0-draft` (what
//! the host forwards a component's `wasi:keyvalue` imports as), `pm:platform/kv-cas` and
//! `pm:platform/token-bucket`.
//! One connection manager per link; it reconnects by itself after Redis comes back, and every
//! call is bounded by the link's timeout so a dead Redis yields an error, never a hang.
mod settings;
mod store;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use provider_support::{secret_strings, LinkKey};
use tokio::sync::RwLock;
use wasmcloud_provider_sdk::{Context, LinkConfig, LinkDeleteInfo, Provider};

use bindings::exports::pm::platform::token_bucket::{Admission, Decision, Limit, Session};
use bindings::exports::wrpc::keyvalue::store::{Error, KeyResponse};
use settings::LinkSettings;
use store::Store;

pub mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "redis-provider",
        path: "../../wit",
        generate_all,
    });
}

#[derive(Clone, Default)]
pub struct RedisProvider {
    links: Arc<RwLock<HashMap<LinkKey, Arc<Store>>>>,
}

impl RedisProvider {
    async fn store(&self, cx: Option<Context>) -> Result<Arc<Store>, Error> {
        let key = LinkKey::from_context(cx.as_ref())
            .ok_or_else(|| Error::Other("call without a component identity".into()))?;
        self.links.read().await.get(&key).cloned().ok_or_else(|| {
            Error::Other(format!(
                "no usable key-value link for {key}; see the provider log"
            ))
        })
    }
}

pub async fn run() -> anyhow::Result<()> {
    provider_support::drain::run_provider(
        RedisProvider::default(),
        "redis-provider",
        bindings::serve,
    )
    .await
}

impl Provider for RedisProvider {
    async fn receive_link_config_as_target(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        provider_support::links::received(&link);
        let key = LinkKey::new(link.source_id, link.link_name);
        let settings = LinkSettings::from_link(link.config, &secret_strings(link.secrets));
        // One link per interface (store/atomics, kv-cas) with the same config: keep the store.
        if let Ok(settings) = &settings {
            if self
                .links
                .read()
                .await
                .get(&key)
                .is_some_and(|s| &s.settings == settings)
            {
                return Ok(());
            }
        }
        let store = match settings.and_then(Store::new) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(link = %key, error = %format!("{e:#}"), "rejected key-value link configuration");
                return Err(e);
            }
        };
        self.links.write().await.insert(key.clone(), store.clone());
        tokio::spawn(async move {
            match store.ping().await {
                Ok(()) => {
                    tracing::info!(link = %key, redis = %store.settings.describe(), "key-value link ready")
                }
                Err(e) => tracing::error!(
                    link = %key,
                    redis = %store.settings.describe(),
                    error = ?e,
                    "key-value link cannot reach Redis yet; calls answer with an error until it can"
                ),
            }
        });
        Ok(())
    }

    async fn delete_link_as_target(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.links
            .write()
            .await
            .remove(&LinkKey::new(info.get_source_id(), info.get_link_name()));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        // The calls in progress may still need what is closed below.
        provider_support::drain::finish_calls().await;
        self.links.write().await.clear();
        Ok(())
    }
}

/// Runs `op` on the caller's store; the outer `Ok` means "answered" (wRPC-level success).
macro_rules! with_store {
    ($self:ident, $cx:ident, |$store:ident| $op:expr) => {
        Ok(match $self.store($cx).await {
            Ok($store) => $op.await,
            Err(e) => Err(e),
        })
    };
}

impl bindings::exports::wrpc::keyvalue::store::Handler<Option<Context>> for RedisProvider {
    async fn get(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
    ) -> anyhow::Result<Result<Option<Bytes>, Error>> {
        with_store!(self, cx, |s| s.get(&bucket, &key))
    }

    async fn set(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
        value: Bytes,
    ) -> anyhow::Result<Result<(), Error>> {
        with_store!(self, cx, |s| s.set(&bucket, &key, &value))
    }

    async fn delete(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
    ) -> anyhow::Result<Result<(), Error>> {
        with_store!(self, cx, |s| s.delete(&bucket, &[key]))
    }

    async fn exists(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
    ) -> anyhow::Result<Result<bool, Error>> {
        with_store!(self, cx, |s| s.exists(&bucket, &key))
    }

    async fn list_keys(
        &self,
        cx: Option<Context>,
        bucket: String,
        cursor: Option<u64>,
    ) -> anyhow::Result<Result<KeyResponse, Error>> {
        with_store!(self, cx, |s| s.list_keys(&bucket, cursor))
    }
}

impl bindings::exports::wrpc::keyvalue::atomics::Handler<Option<Context>> for RedisProvider {
    async fn increment(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
        delta: u64,
    ) -> anyhow::Result<Result<u64, Error>> {
        with_store!(self, cx, |s| s.increment(&bucket, &key, delta))
    }
}

impl bindings::exports::wrpc::keyvalue::batch::Handler<Option<Context>> for RedisProvider {
    async fn get_many(
        &self,
        cx: Option<Context>,
        bucket: String,
        keys: Vec<String>,
    ) -> anyhow::Result<Result<Vec<Option<(String, Bytes)>>, Error>> {
        with_store!(self, cx, |s| s.get_many(&bucket, keys))
    }

    async fn set_many(
        &self,
        cx: Option<Context>,
        bucket: String,
        items: Vec<(String, Bytes)>,
    ) -> anyhow::Result<Result<(), Error>> {
        with_store!(self, cx, |s| s.set_many(&bucket, &items))
    }

    async fn delete_many(
        &self,
        cx: Option<Context>,
        bucket: String,
        keys: Vec<String>,
    ) -> anyhow::Result<Result<(), Error>> {
        with_store!(self, cx, |s| s.delete(&bucket, &keys))
    }
}

/// Our own interfaces answer errors as plain strings.
fn message(e: Error) -> String {
    match e {
        Error::Other(m) => m,
        other => format!("{other:?}"),
    }
}

impl bindings::exports::pm::platform::kv_cas::Handler<Option<Context>> for RedisProvider {
    async fn compare_and_swap(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
        expected: Option<Bytes>,
        new: Bytes,
    ) -> anyhow::Result<Result<bool, String>> {
        let answer: Result<Result<bool, Error>, anyhow::Error> = with_store!(self, cx, |s| s
            .compare_and_swap(&bucket, &key, expected.as_deref(), &new));
        answer.map(|r| r.map_err(message))
    }
}

impl bindings::exports::pm::platform::token_bucket::Handler<Option<Context>> for RedisProvider {
    async fn take(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
        limit: Limit,
    ) -> anyhow::Result<Result<Decision, String>> {
        let answer: Result<Result<Option<u64>, Error>, anyhow::Error> = with_store!(
            self,
            cx,
            |s| s.take_token(&bucket, &key, limit.per_second, limit.burst, None)
        );
        answer.map(|r| {
            r.map(|wait| wait.map_or(Decision::Allow, Decision::Deny))
                .map_err(message)
        })
    }
    async fn admit(
        &self,
        cx: Option<Context>,
        bucket: String,
        key: String,
        limit: Limit,
        sessions_bucket: String,
        session: Session,
    ) -> anyhow::Result<Result<Admission, String>> {
        let session = store::Session {
            id: session.id,
            subject: session.subject,
            issued_at: session.issued_at,
        };
        let answer: Result<Result<store::Admission, Error>, anyhow::Error> =
            with_store!(self, cx, |s| s.admit(
                &bucket,
                &key,
                limit.per_second,
                limit.burst,
                Some((&sessions_bucket, &session)),
                None
            ));
        answer.map(|r| {
            r.map(|admission| match admission {
                store::Admission::Taken => Admission::Allow,
                store::Admission::Wait(ms) => Admission::Deny(ms),
                store::Admission::Ended => Admission::Ended,
            })
            .map_err(message)
        })
    }
}
