//! Kafka capability provider (rdkafka). Components publish through
//! `wasmcloud:messaging/consumer`; for each provider→component link with `TOPICS`, a consumer
//! in its own group delivers records to the component's `wasmcloud:messaging/handler`, in
//! partition order, committing an offset only after the handler returned success (at least
//! once). A failed delivery is retried with backoff until it succeeds.
mod deliver;
mod security;
mod settings;
mod stall;
mod subject;
mod topics;

#[cfg(test)]
mod secure_broker_tests;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use provider_support::{secret_strings, LinkKey};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{Mutex, RwLock};
use wasmcloud_provider_sdk::{Context, LinkConfig, LinkDeleteInfo, Provider, ProviderInitConfig};

use bindings::wasmcloud::messaging::types::BrokerMessage;
use settings::{Settings, Subscription, Values};

pub mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "kafka-provider",
        path: "../../wit",
        generate_all,
    });
}

#[derive(Clone, Default)]
pub struct KafkaProvider {
    /// The provider-wide config and secrets from the manifest; a link's own win over them.
    provider_values: Arc<RwLock<ProviderValues>>,
    /// Publishing settings and producer per component link.
    publishers: Arc<RwLock<HashMap<LinkKey, Arc<Publisher>>>>,
    /// Running deliveries per provider→component link; dropping one stops its consumer.
    deliveries: Arc<Mutex<HashMap<LinkKey, deliver::Delivery>>>,
}

#[derive(Default)]
struct ProviderValues {
    config: HashMap<String, String>,
    secrets: HashMap<String, String>,
}

struct Publisher {
    settings: Settings,
    producer: FutureProducer,
    topics: topics::Ensured,
}

pub async fn run() -> anyhow::Result<()> {
    provider_support::drain::run_provider(
        KafkaProvider::default(),
        "kafka-provider",
        bindings::serve,
    )
    .await
}

impl Provider for KafkaProvider {
    async fn init(&self, config: impl ProviderInitConfig) -> anyhow::Result<()> {
        *self.provider_values.write().await = ProviderValues {
            config: config.get_config().clone(),
            secrets: secret_strings(config.get_secrets()),
        };
        Ok(())
    }

    /// A component links to us to publish.
    async fn receive_link_config_as_target(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        provider_support::links::received(&link);
        let key = LinkKey::new(link.source_id, link.link_name);
        let publisher = self.settings(&link).await.and_then(Publisher::new);
        match publisher {
            Ok(p) => {
                tracing::info!(
                    link = %key,
                    brokers = %p.settings.brokers,
                    security = %p.settings.security,
                    "publishing link ready"
                );
                self.publishers.write().await.insert(key, Arc::new(p));
                Ok(())
            }
            Err(e) => {
                tracing::error!(link = %key, error = %format!("{e:#}"), "rejected Kafka publishing link");
                Err(e)
            }
        }
    }

    /// We link to a component to deliver the topics named in the link's config.
    async fn receive_link_config_as_source(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        provider_support::links::received(&link);
        let key = LinkKey::new(link.target_id, link.link_name);
        let resolved = self
            .settings(&link)
            .await
            .and_then(|s| Ok((s, Subscription::from_link(link.config, link.target_id)?)));
        let (settings, subscription) = match resolved {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(link = %key, error = %format!("{e:#}"), "rejected Kafka delivery link");
                return Err(e);
            }
        };
        let delivery = deliver::Delivery::start(key.clone(), settings, subscription)?;
        // Replacing a link stops the old consumer first (dropping it aborts its task).
        self.deliveries.lock().await.insert(key, delivery);
        Ok(())
    }

    async fn delete_link_as_target(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.publishers
            .write()
            .await
            .remove(&LinkKey::new(info.get_source_id(), info.get_link_name()));
        Ok(())
    }

    async fn delete_link_as_source(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.deliveries
            .lock()
            .await
            .remove(&LinkKey::new(info.get_target_id(), info.get_link_name()));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        // The calls in progress may still need what is closed below.
        provider_support::drain::finish_calls().await;
        self.deliveries.lock().await.clear();
        self.publishers.write().await.clear();
        Ok(())
    }
}

impl KafkaProvider {
    /// A link's settings: its own config and secrets over the provider's.
    async fn settings(&self, link: &LinkConfig<'_>) -> anyhow::Result<Settings> {
        let link_secrets = secret_strings(link.secrets);
        let provider = self.provider_values.read().await;
        Settings::resolve(&Values::new(
            &[link.config, &provider.config],
            &[&link_secrets, &provider.secrets],
        ))
    }
}

impl bindings::exports::wasmcloud::messaging::consumer::Handler<Option<Context>> for KafkaProvider {
    async fn request(
        &self,
        _cx: Option<Context>,
        _subject: String,
        _body: Bytes,
        _timeout_ms: u32,
    ) -> anyhow::Result<Result<BrokerMessage, String>> {
        Ok(Err(
            "request/reply is not supported on Kafka; use publish".into()
        ))
    }

    async fn publish(
        &self,
        cx: Option<Context>,
        msg: BrokerMessage,
    ) -> anyhow::Result<Result<(), String>> {
        let Some(key) = LinkKey::from_context(cx.as_ref()) else {
            return Ok(Err("call without a component identity".into()));
        };
        let Some(publisher) = self.publishers.read().await.get(&key).cloned() else {
            return Ok(Err(format!(
                "no usable Kafka link for {key}; see the provider log"
            )));
        };
        Ok(publisher.publish(&msg).await)
    }
}

impl Publisher {
    fn new(settings: Settings) -> anyhow::Result<Self> {
        let producer: FutureProducer = settings
            .client()
            .set(
                "message.timeout.ms",
                settings.timeout.as_millis().to_string(),
            )
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set("enable.idempotence", "false")
            .create()?;
        Ok(Self {
            settings,
            producer,
            topics: topics::Ensured::default(),
        })
    }

    async fn publish(&self, msg: &BrokerMessage) -> Result<(), String> {
        let subject = subject::parse(&msg.subject)?;
        self.topics.ensure(&self.settings, subject.topic).await?;
        let mut record = FutureRecord::to(subject.topic).payload(msg.body.as_ref());
        if let Some(key) = subject.key {
            record = record.key(key);
        }
        let send = self.producer.send(record, self.settings.timeout);
        let outcome = match tokio::time::timeout(
            self.settings.timeout + std::time::Duration::from_millis(200),
            send,
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(format!("kafka unavailable: {e}")),
            Err(_) => Err(format!(
                "kafka unavailable: no acknowledgement within {:?}",
                self.settings.timeout
            )),
        };
        if outcome.is_err() {
            // A broker that came back may have lost the topic (the local broker keeps topics in
            // memory): make sure of it again on the next publish instead of failing forever.
            self.topics.forget(subject.topic).await;
        }
        outcome
    }
}
