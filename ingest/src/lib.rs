//! The ingest service: `POST /v1/events` (SPEC section 5). Validates each event, and answers
//! 200 only once every accepted event is acknowledged by all in-sync Kafka replicas.

pub mod body;
pub mod config;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod routes;
pub mod sink;

pub use config::IngestConfig;
pub use error::IngestError;
pub use routes::{router, AppState};
