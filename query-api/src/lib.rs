//! The read side: cohort tables from ClickHouse over HTTP (SPEC section 5), JSON or CSV, behind
//! read keys bound to communities.

pub mod caching;
pub mod config;
pub mod csv;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod params;
pub mod response_cache;
pub mod routes;
pub mod source;

pub use config::QueryConfig;
pub use error::QueryError;
pub use routes::{router, AppState};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");
