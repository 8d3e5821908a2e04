#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("topic {0}: not found or has no partitions")]
    NoTopic(String),
    #[error("dead-letter topic: a record was not acknowledged ({0}); progress stays before it")]
    DeadLetter(String),
    #[error("partition ownership may have moved: no poll of the consumer group for {0} ms (limit {1} ms); exiting rather than writing for partitions another instance may own")]
    OwnershipLost(u64, u64),
    #[error("kafka: the consumer stopped for good ({0}): {1}")]
    KafkaFatal(String, String),
    #[error("{0}")]
    Generation(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
