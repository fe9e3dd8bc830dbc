//! Topics are created on first use (the broker may not auto-create them), once per process.
use std::collections::HashSet;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Mutex;

use crate::settings::Settings;

#[derive(Default)]
pub struct Ensured(Mutex<HashSet<String>>);

impl Ensured {
    pub async fn ensure(&self, settings: &Settings, topic: &str) -> Result<(), String> {
        let mut known = self.0.lock().await;
        if known.contains(topic) {
            return Ok(());
        }
        create(settings, &[topic.to_string()]).await?;
        known.insert(topic.to_string());
        Ok(())
    }

    pub async fn forget(&self, topic: &str) {
        self.0.lock().await.remove(topic);
    }
}

pub async fn create(settings: &Settings, topics: &[String]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client()
        .create()
        .map_err(|e| format!("kafka admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, settings.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(settings.timeout))
        .request_timeout(Some(settings.timeout));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|e| format!("kafka unavailable: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(format!("kafka could not create topic {topic}: {code}"))
            }
        }
    }
    Ok(())
}
