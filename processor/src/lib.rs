//! The stream processor: consumes the event topic, feeds the pure engine (one per partition),
//! writes changed rows to ClickHouse, and only then records Kafka progress.

pub mod allocator;
pub mod archive_sends;
pub mod assignment;
pub mod backoff;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod generations;
pub mod metrics;
pub mod migrate;
pub mod parallel;
pub mod pieces;
pub mod pipeline;
pub mod progress;
pub mod rowbinary;
pub mod rows;
pub mod store;

pub use config::ProcessorConfig;
pub use error::ProcessorError;
