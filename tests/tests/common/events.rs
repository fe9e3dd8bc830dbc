//! Reading the `patient` topic of the lattice under test, as a consumer of its own.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use patient_events::PatientEvent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

/// Every `PatientEvent` on the topic (from its start) for the patients in `ids`, polled until
/// `done` says the collection is complete or `timeout` passes; then whatever arrived.
pub fn patient_events(
    ids: &[String],
    timeout: Duration,
    done: impl Fn(&HashMap<String, Vec<PatientEvent>>) -> bool,
) -> HashMap<String, Vec<PatientEvent>> {
    let brokers = std::env::var("PM_KAFKA_BROKERS").expect("PM_KAFKA_BROKERS is not set");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", super::unique("e2e-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a Kafka consumer");
    consumer
        .subscribe(&["patient"])
        .expect("subscribe to patient");
    let mut seen: HashMap<String, Vec<PatientEvent>> = HashMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&seen) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(event) =
            <PatientEvent as prost::Message>::decode(message.payload().unwrap_or_default())
        else {
            continue;
        };
        if ids.contains(&event.patient_id) {
            // The record key is the patient id, so one patient's events share a partition.
            assert_eq!(
                message.key(),
                Some(event.patient_id.as_bytes()),
                "record key"
            );
            seen.entry(event.patient_id.clone())
                .or_default()
                .push(event);
        }
    }
    seen
}

/// Publishes `events` on the topic with record key `key`, in this order (one key, one
/// partition, an idempotent producer: the consumers see them in this order), and waits until
/// the broker has them all. How a test makes a consumer see records again, as after a restart
/// before its commit.
pub fn publish(key: &str, events: &[PatientEvent]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let brokers = std::env::var("PM_KAFKA_BROKERS").expect("PM_KAFKA_BROKERS is not set");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("a Kafka producer");
    for event in events {
        let payload = prost::Message::encode_to_vec(event);
        producer
            .send(BaseRecord::to("patient").key(key).payload(&payload))
            .map_err(|(e, _)| e)
            .expect("queue an event");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the broker took the events");
}

/// A consumer that names group `group` to ask about it, never joining it (no subscribe, no
/// commit), so the group's members are not disturbed.
fn outside_consumer(group: &str) -> BaseConsumer {
    let brokers = std::env::var("PM_KAFKA_BROKERS").expect("PM_KAFKA_BROKERS is not set");
    ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer")
}

/// The offsets consumer group `group` has committed on topic `patient`, per partition (absent:
/// nothing committed there). Read without joining the group, so its members are not disturbed.
pub fn committed_offsets(group: &str) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer = outside_consumer(group);
    let metadata = consumer
        .fetch_metadata(Some("patient"), Duration::from_secs(30))
        .expect("the topic's metadata");
    let mut partitions = TopicPartitionList::new();
    for topic in metadata.topics() {
        for partition in topic.partitions() {
            partitions.add_partition("patient", partition.id());
        }
    }
    consumer
        .committed_offsets(partitions, Duration::from_secs(30))
        .expect("the group's committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some((e.partition(), n)),
            _ => None,
        })
        .collect()
}

/// Why consumer group `group` is not settled, or None once it is: the broker reports it
/// `Stable` (every member holds its assignment, no rebalance under way) and its committed offset
/// on every partition of `patient` is the partition's end (it has consumed everything so far).
/// Read without joining the group.
pub fn unsettled(group: &str) -> Option<String> {
    let consumer = outside_consumer(group);
    let timeout = Duration::from_secs(10);
    let groups = match consumer.fetch_group_list(Some(group), timeout) {
        Ok(groups) => groups,
        Err(e) => return Some(format!("the broker did not describe the group: {e}")),
    };
    let Some(info) = groups.groups().iter().find(|g| g.name() == group) else {
        return Some("the broker does not know the group".into());
    };
    if info.state() != "Stable" {
        return Some(format!(
            "the group is {} with {} members",
            info.state(),
            info.members().len()
        ));
    }
    let committed = committed_offsets(group);
    let metadata = match consumer.fetch_metadata(Some("patient"), timeout) {
        Ok(metadata) => metadata,
        Err(e) => return Some(format!("no metadata for the topic: {e}")),
    };
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let id = partition.id();
        let (_, end) = match consumer.fetch_watermarks("patient", id, timeout) {
            Ok(marks) => marks,
            Err(e) => return Some(format!("no end offset for partition {id}: {e}")),
        };
        let at = committed.get(&id).copied().unwrap_or(0);
        if at < end {
            return Some(format!("partition {id} consumed to {at} of {end}"));
        }
    }
    None
}

/// Waits until consumer group `group` is settled (`unsettled`), printing each new reason it is
/// not yet; fails after `timeout` (the last reason printed says why).
pub fn wait_until_settled(group: &str, timeout: Duration) {
    let mut last = None;
    super::eventually(
        &format!("consumer group `{group}` to settle"),
        timeout,
        || match unsettled(group) {
            None => Some(()),
            Some(why) => {
                if last.as_ref() != Some(&why) {
                    eprintln!("waiting for consumer group `{group}`: {why}");
                }
                last = Some(why);
                None
            }
        },
    );
}
