//! What every service shares: configuration loading (defaults, then file, then environment),
//! tracing setup, the `/healthz` `/readyz` `/metrics` routes, and the SPEC's JSON error shape.

pub mod auth;
pub mod clickhouse_config;
pub mod config;
pub mod http;
pub mod secret;
pub mod telemetry;

pub use auth::KeyBinding;
pub use clickhouse_config::{BodyCompression, ClickHouseConfig};
pub use config::{load_config, ConfigError};
pub use http::{ApiError, Readiness};
pub use secret::Secret;
