//! Delivery of subscribed topics to one component. One task per link reads the consumer
//! group's records in order and hands each to the component; the offset is committed only after
//! the component answered success, and a failure is retried (with backoff) before moving on, so
//! nothing is skipped and per-partition order holds. Between records the task watches for a
//! partition of the group that no member consumes (stall.rs) and then joins the group afresh.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use provider_support::LinkKey;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use wasmcloud_provider_sdk::get_connection;

use crate::bindings::wasmcloud::messaging::{handler, types::BrokerMessage};
use crate::settings::{Settings, Subscription};
use crate::{stall, subject, topics};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one handler call may take before it counts as failed and is redelivered. A lost
/// wRPC reply must not stall the partition forever (at least once: the handler may see the
/// message again, which consumers dedupe by event id).
const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the group's partitions outside this member's assignment are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

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
        // Made here so a link with settings rdkafka refuses fails as it is put.
        let consumer = new_consumer(&settings, &subscription)?;
        Ok(Self(tokio::spawn(run(
            link,
            settings,
            subscription,
            consumer,
        ))))
    }
}

fn new_consumer(settings: &Settings, subscription: &Subscription) -> KafkaResult<StreamConsumer> {
    settings
        .client()
        .set("group.id", &subscription.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
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
    let mut consumer = Arc::new(consumer);
    loop {
        if let Err(e) = consumer.subscribe(&topics) {
            tracing::error!(link = %link, error = %e, "cannot subscribe");
            return;
        }
        tracing::info!(link = %link, group = %subscription.group_id, topics = ?topics, "delivering");
        let stall = consume(&link, &settings, &subscription, &consumer).await;
        tracing::warn!(link = %link, group = %subscription.group_id, stall = %stall,
            "no member of the group consumes a partition; leaving the group and joining again");
        // Closing the consumer leaves the group; it waits for the broker, so not on this thread.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tokio::time::sleep(jitter()).await;
        consumer = loop {
            match new_consumer(&settings, &subscription) {
                Ok(consumer) => break Arc::new(consumer),
                Err(e) => {
                    tracing::warn!(link = %link, error = %e, "cannot make a consumer; retrying");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        };
    }
}

/// A pause of under 3 s that differs between members, so members that saw a stall at the same
/// check do not rejoin in step (each join would restart the others' rebalance).
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from((nanos ^ std::process::id()) % 3000))
}

/// Delivers records until a partition of the group outside this member's assignment stalls
/// (stall.rs); returns what stalled.
async fn consume(
    link: &LinkKey,
    settings: &Settings,
    subscription: &Subscription,
    consumer: &Arc<StreamConsumer>,
) -> String {
    let mut watch = stall::Watch::default();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // `recv` is cancellation safe: a record is never taken and then dropped here.
            record = consumer.recv() => match record {
                Ok(record) => deliver_and_commit(link, consumer, &record).await,
                Err(e) => {
                    tracing::warn!(link = %link, error = %e, "kafka receive failed; retrying");
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            },
            _ = check.tick() => {
                let (checked, topics, timeout) =
                    (Arc::clone(consumer), subscription.topics.clone(), settings.timeout);
                let outside =
                    tokio::task::spawn_blocking(move || outside_assignment(&checked, &topics, timeout))
                        .await;
                match outside {
                    Ok(Ok(partitions)) => {
                        if let Some(stall) = watch.observe(&partitions, Instant::now()) {
                            return stall;
                        }
                    }
                    // The broker away: the check waits for it like everything else.
                    Ok(Err(e)) => tracing::debug!(link = %link, error = %e, "cannot check the group's partitions"),
                    Err(e) => tracing::warn!(link = %link, error = %e, "the group check failed"),
                }
            }
        }
    }
}

async fn deliver_and_commit(
    link: &LinkKey,
    consumer: &StreamConsumer,
    record: &BorrowedMessage<'_>,
) {
    let message = BrokerMessage {
        subject: subject::format(record.topic(), record.key()),
        body: record.payload().unwrap_or_default().to_vec().into(),
        reply_to: None,
    };
    deliver_until_accepted(link, &message, record.partition(), record.offset()).await;
    if let Err(e) = consumer.commit_message(record, CommitMode::Async) {
        // Not fatal: the record is delivered again after a restart (at least once).
        tracing::warn!(link = %link, error = %e, "offset commit failed");
    }
}

/// The group's committed offset and the end of every partition of `topics` that is not in this
/// consumer's assignment. Blocking (it asks the broker).
fn outside_assignment(
    consumer: &StreamConsumer,
    topics: &[String],
    timeout: Duration,
) -> KafkaResult<Vec<stall::Partition>> {
    let mine = consumer.assignment()?;
    let mut outside = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            if mine.find_partition(topic, partition.id()).is_none() {
                outside.add_partition(topic, partition.id());
            }
        }
    }
    if outside.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(outside, timeout)?;
    committed
        .elements()
        .iter()
        .map(|e| {
            let (start, end) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
            Ok(stall::Partition {
                topic: e.topic().to_string(),
                partition: e.partition(),
                committed: match e.offset() {
                    Offset::Offset(n) => n,
                    _ => start,
                },
                end,
            })
        })
        .collect()
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
