use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub request_seconds: HistogramVec,
    pub clickhouse_query_seconds: HistogramVec,
    pub response_cache: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("query_request_duration_seconds", "HTTP request latency"),
            &["route", "status"],
        )?;
        let clickhouse_query_seconds = HistogramVec::new(
            HistogramOpts::new("query_clickhouse_query_duration_seconds", "ClickHouse query latency"),
            &["query"],
        )?;
        let response_cache = IntCounterVec::new(
            Opts::new(
                "query_response_cache_total",
                "Metric answers served from the response cache (hit) or computed (miss)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(response_cache.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(clickhouse_query_seconds.clone()))?;
        Ok(Metrics { registry, request_seconds, clickhouse_query_seconds, response_cache })
    }
}
