use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub accepted: IntCounter,
    /// By reason: the field that broke a rule (`member_id`, `ts`, ...) or `malformed`, `too_large`.
    pub rejected: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub produce_seconds: Histogram,
    pub producer_queue_depth: IntGauge,
    pub in_flight_events: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let accepted = IntCounter::new("ingest_events_accepted_total", "Events acknowledged by Kafka")?;
        let rejected =
            IntCounterVec::new(Opts::new("ingest_events_rejected_total", "Events rejected, by reason"), &["reason"])?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("ingest_request_duration_seconds", "HTTP request latency"),
            &["route", "status"],
        )?;
        let produce_seconds = Histogram::with_opts(HistogramOpts::new(
            "ingest_produce_duration_seconds",
            "Time from handing a batch to the producer to the last acknowledgement",
        ))?;
        let producer_queue_depth =
            IntGauge::new("ingest_producer_queue_depth", "Records in the producer not yet acknowledged")?;
        let in_flight_events = IntGauge::new("ingest_in_flight_events", "Accepted events waiting for Kafka acks")?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        registry.register(Box::new(producer_queue_depth.clone()))?;
        registry.register(Box::new(in_flight_events.clone()))?;
        Ok(Metrics {
            registry,
            accepted,
            rejected,
            request_seconds,
            produce_seconds,
            producer_queue_depth,
            in_flight_events,
        })
    }
}
