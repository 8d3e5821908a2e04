//! The read side: cohort tables from ClickHouse over HTTP (SPEC section 5), JSON or CSV, behind
//! read keys bound to communities.

pub mod config;
pub mod csv;
pub mod error;
pub mod metrics;
pub mod params;
pub mod routes;
pub mod source;

pub use config::QueryConfig;
pub use error::QueryError;
pub use routes::{router, AppState};
