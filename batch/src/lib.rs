//! Batch work for data engineers: every metric table recomputed from the raw events with polars
//! (an implementation independent of the streaming engine), and `reconcile`, which compares it
//! cell by cell with what ClickHouse holds.

pub mod archive;
pub mod compute;
pub mod frame;
pub mod parquet;
pub mod stored;
pub mod tables;

use engine::CommunityConfig;
use schemas::Event;
pub use tables::{diff, Cell, Difference, Tables};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("reading the stored tables: {0}")]
    Stored(String),
    #[error("archive: {0}")]
    Archive(String),
}

/// Every table of `community` recomputed from `events` (duplicates and other communities'
/// events allowed); empty when the community has no event.
pub fn recompute(events: &[Event], community: &str, config: &CommunityConfig) -> Result<Tables, BatchError> {
    match frame::scoped_frame(events, community, config)? {
        Some((df, bounds)) => compute::compute(df, bounds, config),
        None => Ok(Tables::default()),
    }
}
