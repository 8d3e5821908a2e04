//! The Kafka producer: idempotent, `acks=all`, records keyed by `(community_id, member_id)` with
//! the Java client's murmur2 partitioner, so any producer of the same keys agrees on partitions.

use crate::config::KafkaConfig;
use crate::sink::{EventSink, SendFuture, SinkError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use schemas::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    healthy: Arc<AtomicBool>,
}

pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v.expose());
    }
    c
}

impl KafkaSink {
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let producer: FutureProducer = client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "500000")
            .create()?;
        Ok(KafkaSink { producer, topic: cfg.topic.clone(), healthy: Arc::new(AtomicBool::new(false)) })
    }

    /// Watches the broker: readiness follows whether metadata for the topic can be fetched.
    pub fn spawn_health_check(&self) {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let healthy = self.healthy.clone();
        tokio::spawn(async move {
            loop {
                let p = producer.clone();
                let t = topic.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    p.client()
                        .fetch_metadata(Some(&t), Duration::from_secs(2))
                        .map(|m| {
                            m.topics()
                                .iter()
                                .any(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty())
                        })
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                if ok != healthy.swap(ok, Ordering::Relaxed) {
                    tracing::info!(broker_reachable = ok, "kafka health changed");
                }
                tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })).await;
            }
        });
    }
}

impl EventSink for KafkaSink {
    fn send<'a>(&'a self, events: &'a [Event]) -> SendFuture<'a> {
        Box::pin(async move {
            let mut pending = Vec::with_capacity(events.len());
            for ev in events {
                let key = ev.partition_key();
                let payload = ev.to_json_bytes();
                let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
                match self.producer.send_result(record) {
                    Ok(f) => pending.push(f),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Records already queued still go out; the client retries the whole batch
                        // and duplicates are dropped by event id downstream.
                        return Err(SinkError::QueueFull);
                    }
                    Err((e, _)) => return Err(SinkError::Unavailable(e.to_string())),
                }
            }
            let mut failure = None;
            for f in pending {
                match f.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => failure = Some(e.to_string()),
                    Err(_) => failure = Some("delivery cancelled".into()),
                }
            }
            match failure {
                None => {
                    self.healthy.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Some(e) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    Err(SinkError::Unavailable(e))
                }
            }
        })
    }

    fn queue_depth(&self) -> i64 {
        self.producer.in_flight_count() as i64
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Creates `topic` with `partitions` partitions unless it exists (development setups).
pub async fn ensure_topic(cfg: &KafkaConfig, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let topic = NewTopic::new(&cfg.topic, partitions, TopicReplication::Fixed(1));
    let results =
        admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic = %cfg.topic, partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(topic = %t, "topic creation failed"))
            }
        }
    }
    Ok(())
}
