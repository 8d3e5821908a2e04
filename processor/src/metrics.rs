use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounter,
    pub events_processed: IntCounter,
    pub duplicates: IntCounter,
    pub before_counts_from: IntCounter,
    pub invalid_records: IntCounterVec,
    pub consumer_lag: IntGauge,
    pub clickhouse_insert_seconds: HistogramVec,
    pub rows_written: IntCounterVec,
    pub flush_seconds: HistogramVec,
    pub write_failures: IntCounter,
    pub checkpoint_writes: IntCounterVec,
    pub checkpoint_bytes: IntGauge,
    pub partition_starts: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            records_consumed: IntCounter::new("processor_records_consumed_total", "Kafka records consumed")?,
            events_processed: IntCounter::new(
                "processor_events_processed_total",
                "Distinct events applied to the engine",
            )?,
            duplicates: IntCounter::new(
                "processor_duplicate_events_total",
                "Events dropped as duplicates of an event id",
            )?,
            before_counts_from: IntCounter::new(
                "processor_events_before_counts_from_total",
                "Valid events dated before the configuration's counts_from, not counted",
            )?,
            invalid_records: IntCounterVec::new(
                Opts::new(
                    "processor_invalid_records_total",
                    "Records on the topic that are not valid events, by reason",
                ),
                &["reason"],
            )?,
            consumer_lag: IntGauge::new("processor_consumer_lag_records", "Records in the topic not yet processed")?,
            clickhouse_insert_seconds: HistogramVec::new(
                HistogramOpts::new("processor_clickhouse_insert_duration_seconds", "ClickHouse insert latency"),
                &["table"],
            )?,
            rows_written: IntCounterVec::new(
                Opts::new("processor_rows_written_total", "Rows written, by table"),
                &["table"],
            )?,
            flush_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "processor_flush_duration_seconds",
                    "Time per step of a round: apply (decode and apply records), archive (waiting for archive rows sent during the round), engine (flush), write, snapshot",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
                &["step"],
            )?,
            write_failures: IntCounter::new(
                "processor_clickhouse_write_failures_total",
                "Failed ClickHouse writes (retried)",
            )?,
            checkpoint_writes: IntCounterVec::new(
                Opts::new("processor_checkpoint_writes_total", "Checkpoint writes, by result (ok, failed)"),
                &["result"],
            )?,
            checkpoint_bytes: IntGauge::new(
                "processor_checkpoint_size_bytes",
                "Size of the newest checkpoint written",
            )?,
            partition_starts: IntCounterVec::new(
                Opts::new(
                    "processor_partition_starts_total",
                    "Partitions taken up, by where their state came from (checkpoint, log)",
                ),
                &["from"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.records_consumed.clone()))?;
        m.registry.register(Box::new(m.events_processed.clone()))?;
        m.registry.register(Box::new(m.duplicates.clone()))?;
        m.registry.register(Box::new(m.before_counts_from.clone()))?;
        m.registry.register(Box::new(m.invalid_records.clone()))?;
        m.registry.register(Box::new(m.consumer_lag.clone()))?;
        m.registry.register(Box::new(m.clickhouse_insert_seconds.clone()))?;
        m.registry.register(Box::new(m.rows_written.clone()))?;
        m.registry.register(Box::new(m.flush_seconds.clone()))?;
        m.registry.register(Box::new(m.write_failures.clone()))?;
        m.registry.register(Box::new(m.checkpoint_writes.clone()))?;
        m.registry.register(Box::new(m.checkpoint_bytes.clone()))?;
        m.registry.register(Box::new(m.partition_starts.clone()))?;
        Ok(m)
    }
}
