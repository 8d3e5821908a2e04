//! `processor [run] [--config FILE]` consumes and writes; `processor migrate` only applies the
//! ClickHouse migrations (run also applies them at start).

use anyhow::Context;
use common::config::config_path;
use common::{load_config, Readiness};
use processor::metrics::Metrics;
use processor::migrate::migrate;
use processor::pipeline::Pipeline;
use processor::store::Store;
use processor::ProcessorConfig;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_tracing("processor");
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).filter(|a| !a.starts_with("--")).map(String::as_str).unwrap_or("run");
    let config: ProcessorConfig = load_config(config_path(&args, "PROCESSOR_").as_deref(), "PROCESSOR_")?;
    config.validate().map_err(anyhow::Error::msg).context("invalid processor configuration")?;
    let client = config.clickhouse.client();
    match command {
        "migrate" => {
            let applied = migrate(&client, &config.clickhouse.database).await?;
            println!("applied migrations: {applied:?}");
            Ok(())
        }
        "run" => run(config, client).await,
        other => anyhow::bail!("unknown command {other:?} (expected run or migrate)"),
    }
}

async fn run(config: ProcessorConfig, client: clickhouse::Client) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let readiness = Readiness::default();
    let ops = common::http::ops_routes(metrics.registry.clone(), readiness.clone());
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "processor ops endpoints listening");
    tokio::spawn(async move { axum::serve(listener, ops).await });

    // ClickHouse may come up after us: retry the migrations until it answers.
    let mut delay = Duration::from_millis(200);
    loop {
        match migrate(&client, &config.clickhouse.database).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for ClickHouse");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let store = Store::new(client, metrics.clone());
    let pipeline = Pipeline::start(config, store, metrics, readiness).await?;
    pipeline.run(common::http::shutdown_signal()).await?;
    Ok(())
}
