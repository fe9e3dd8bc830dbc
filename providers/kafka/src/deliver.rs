//! Delivery of subscribed topics to one component. One task per link reads the consumer
//! group's records in order and hands each to the component; the offset is committed only after
//! the component answered success, and a failure is retried (with backoff) before moving on, so
//! nothing is skipped and per-partition order holds.
use std::time::Duration;

use provider_support::LinkKey;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::task::JoinHandle;
use wasmcloud_provider_sdk::get_connection;

use crate::bindings::wasmcloud::messaging::{handler, types::BrokerMessage};
use crate::settings::{Settings, Subscription};
use crate::{subject, topics};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one handler call may take before it counts as failed and is redelivered. A lost
/// wRPC reply must not stall the partition forever (at least once: the handler may see the
/// message again, which consumers dedupe by event id).
const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running delivery; dropping it stops the consumer.
pub struct Delivery(JoinHandle<()>);

impl Drop for Delivery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Delivery {
    pub fn start(
        link: LinkKey,
        settings: Settings,
        subscription: Subscription,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = settings
            .client()
            .set("group.id", &subscription.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        Ok(Self(tokio::spawn(run(
            link,
            settings,
            subscription,
            consumer,
        ))))
    }
}

async fn run(
    link: LinkKey,
    settings: Settings,
    subscription: Subscription,
    consumer: StreamConsumer,
) {
    // Topics must exist before subscribing; keep trying while the broker is away.
    let mut backoff = MIN_BACKOFF;
    while let Err(e) = topics::create(&settings, &subscription.topics).await {
        tracing::warn!(link = %link, error = %e, "cannot create topics yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    let topics: Vec<&str> = subscription.topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(link = %link, error = %e, "cannot subscribe");
        return;
    }
    tracing::info!(link = %link, group = %subscription.group_id, topics = ?topics, "delivering");
    loop {
        let record = match consumer.recv().await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(link = %link, error = %e, "kafka receive failed; retrying");
                tokio::time::sleep(MIN_BACKOFF).await;
                continue;
            }
        };
        let message = BrokerMessage {
            subject: subject::format(record.topic(), record.key()),
            body: record.payload().unwrap_or_default().to_vec().into(),
            reply_to: None,
        };
        deliver_until_accepted(&link, &message, record.partition(), record.offset()).await;
        if let Err(e) = consumer.commit_message(&record, CommitMode::Async) {
            // Not fatal: the record is delivered again after a restart (at least once).
            tracing::warn!(link = %link, error = %e, "offset commit failed");
        }
    }
}

async fn deliver_until_accepted(
    link: &LinkKey,
    message: &BrokerMessage,
    partition: i32,
    offset: i64,
) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 1u32;
    loop {
        let outcome = match get_connection().get_wrpc_client(&link.component).await {
            Ok(wrpc) => {
                let call = handler::handle_message(&wrpc, None, message);
                match tokio::time::timeout(HANDLER_TIMEOUT, call).await {
                    Ok(Ok(Ok(()))) => return,
                    Ok(Ok(Err(e))) => format!("handler refused: {e}"),
                    Ok(Err(e)) => format!("handler unreachable: {e:#}"),
                    Err(_) => format!("handler gave no answer within {HANDLER_TIMEOUT:?}"),
                }
            }
            Err(e) => format!("no wRPC client: {e:#}"),
        };
        tracing::warn!(link = %link, subject = %message.subject, partition, offset, attempt, error = %outcome, "delivery failed; redelivering");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}
