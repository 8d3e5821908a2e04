use anyhow::Context;
use common::config::config_path;
use common::{load_config, Readiness};
use query_api::metrics::Metrics;
use query_api::source::{ClickHouseSource, Source};
use query_api::{router, AppState, QueryConfig};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_tracing("query-api");
    let args: Vec<String> = std::env::args().collect();
    let config: QueryConfig = load_config(config_path(&args, "QUERY_").as_deref(), "QUERY_")?;
    config.validate().map_err(anyhow::Error::msg).context("invalid query-api configuration")?;
    let metrics = Metrics::new()?;
    let source: Arc<ClickHouseSource> = Arc::new(ClickHouseSource::following_generations(
        config.clickhouse.client(),
        &config.clickhouse.database,
        metrics.clone(),
    ));
    let readiness = Readiness::default();
    {
        let (source, readiness) = (source.clone(), readiness.clone());
        tokio::spawn(async move {
            loop {
                readiness.set(source.ping().await.is_ok());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    let listen = config.listen;
    let state = Arc::new(AppState::new(config, source, metrics));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, "query-api listening");
    axum::serve(listener, router(state, readiness)).with_graceful_shutdown(common::http::shutdown_signal()).await?;
    Ok(())
}
