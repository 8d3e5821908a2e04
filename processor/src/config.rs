use common::{ClickHouseConfig, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub flush: FlushConfig,
    /// Metric parameters: a default and per-community overrides (time zone, windows, ...).
    pub metrics: engine::Configs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// Used for committing offsets (progress reporting, lag in tools); the truth is in ClickHouse.
    pub group_id: String,
    /// Where records that are not valid events go, with the reason and their source position.
    pub dead_letter_topic: String,
    pub properties: BTreeMap<String, Secret>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "engagement-events".into(),
            group_id: "engagement-processor".into(),
            dead_letter_topic: "engagement-events-dlq".into(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Records consumed before the engine's changes are written.
    pub max_records: usize,
    /// Longest time between writes while records arrive.
    pub interval_ms: u64,
    /// First retry delay after a failed write; doubles up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig { max_records: 100_000, interval_ms: 500, backoff_ms: 200, max_backoff_ms: 10_000 }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            listen: "127.0.0.1:8082".parse().expect("address"),
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            flush: FlushConfig::default(),
            metrics: engine::Configs::default(),
        }
    }
}

impl ProcessorConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.metrics.validate().map_err(|e| format!("metrics.{e}"))?;
        if self.flush.max_records == 0 {
            return Err("flush.max_records: must be at least 1".into());
        }
        if !schemas::validate::valid_community_id(&self.clickhouse.database) {
            return Err("clickhouse.database: must match ^[A-Za-z0-9_.-]{1,64}$".into());
        }
        Ok(())
    }
}
