use anyhow::Context;
use common::config::config_path;
use common::{load_config, Readiness};
use ingest::kafka::{ensure_topic, KafkaSink};
use ingest::metrics::Metrics;
use ingest::{router, AppState, IngestConfig};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_tracing("ingest");
    let args: Vec<String> = std::env::args().collect();
    let config: IngestConfig = load_config(config_path(&args, "INGEST_").as_deref(), "INGEST_")?;
    config.validate().map_err(anyhow::Error::msg).context("invalid ingest configuration")?;
    if let Some(p) = config.kafka.create_topic_partitions {
        ensure_topic(&config.kafka, p).await.context("creating the topic")?;
    }
    let sink = KafkaSink::new(&config.kafka).context("creating the Kafka producer")?;
    sink.spawn_health_check();
    let sink: Arc<KafkaSink> = Arc::new(sink);
    let readiness = Readiness::default();
    {
        let (sink, readiness) = (sink.clone(), readiness.clone());
        tokio::spawn(async move {
            loop {
                readiness.set(ingest::sink::EventSink::healthy(sink.as_ref()));
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
    }
    let metrics = Metrics::new()?;
    let listen = config.listen;
    let state = Arc::new(AppState::new(config, sink, metrics));
    let app = router(state, readiness);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, "ingest listening");
    axum::serve(listener, app).with_graceful_shutdown(common::http::shutdown_signal()).await?;
    Ok(())
}
