//! Tracing setup: human-readable logs by default, JSON with `LOG_FORMAT=json`; filter from
//! `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init_tracing(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    if result.is_ok() {
        tracing::info!(service, "tracing initialised");
    }
}
