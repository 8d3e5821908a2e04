use common::{ClickHouseConfig, KeyBinding};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    pub listen: SocketAddr,
    pub clickhouse: ClickHouseConfig,
    /// Read keys and the communities each may read (`"*"` = any community).
    pub read_keys: Vec<KeyBinding>,
    /// `Retry-After` seconds when ClickHouse does not answer.
    pub retry_after_secs: u64,
    /// `Cache-Control: private, max-age=N` on answers; dashboards revalidate with `ETag` after.
    pub cache_max_age_secs: u64,
    /// How long a computed metric answer is reused for every request of the same URL (0: off).
    pub response_cache_ms: u64,
    /// Most URLs kept in the response cache at once.
    pub response_cache_entries: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: "127.0.0.1:8083".parse().expect("address"),
            clickhouse: ClickHouseConfig::default(),
            read_keys: Vec::new(),
            retry_after_secs: 2,
            cache_max_age_secs: 5,
            response_cache_ms: 1000,
            response_cache_entries: 10_000,
        }
    }
}

impl QueryConfig {
    pub fn validate(&self) -> Result<(), String> {
        common::auth::validate_keys(&self.read_keys, "read_keys")
    }
}
