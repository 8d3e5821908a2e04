#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
