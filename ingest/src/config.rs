pub use common::KeyBinding;
use common::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    /// Write keys and the communities each may write (`"*"` = any community).
    pub write_keys: Vec<KeyBinding>,
    pub limits: RequestLimits,
    /// Events accepted but not yet acknowledged by Kafka, across all requests; past it, 429.
    pub max_in_flight_events: usize,
    /// `Retry-After` seconds on 429 and 503.
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_event_bytes: usize,
    pub max_future_hours: i64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 10 * 1024 * 1024,
            max_events: 10_000,
            max_event_bytes: 32 * 1024,
            max_future_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// How long the producer retries a record before the request fails with 503.
    pub message_timeout_ms: u64,
    /// Create the topic with this many partitions at startup if it does not exist (development;
    /// in production the topic is created by whoever runs the cluster).
    pub create_topic_partitions: Option<i32>,
    /// Extra librdkafka properties (`security.protocol`, `sasl.username`, ...). Values are never logged.
    pub properties: BTreeMap<String, Secret>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "engagement-events".into(),
            message_timeout_ms: 10_000,
            create_topic_partitions: None,
            properties: BTreeMap::new(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: "127.0.0.1:8081".parse().expect("address"),
            kafka: KafkaConfig::default(),
            write_keys: Vec::new(),
            limits: RequestLimits::default(),
            max_in_flight_events: 200_000,
            retry_after_secs: 2,
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.write_keys.is_empty() {
            return Err("write_keys: at least one key is required".into());
        }
        for (i, k) in self.write_keys.iter().enumerate() {
            if k.key.expose().len() < 8 {
                return Err(format!("write_keys[{i}].key: must be at least 8 characters"));
            }
            if k.communities.is_empty() {
                return Err(format!("write_keys[{i}].communities: must name at least one community or \"*\""));
            }
        }
        if self.max_in_flight_events < self.limits.max_events {
            return Err("max_in_flight_events: must be at least limits.max_events".into());
        }
        Ok(())
    }
}
