//! `processor [run] [--config FILE]` consumes and writes; `processor migrate` only applies the
//! ClickHouse migrations (run also applies them at start). For table generations (see
//! docs/operations.md, "Replay"): `processor replay --generation N` rebuilds every derived table
//! from the log into generation N and exits once it has caught up (`--from TIME`: counting only
//! events from then, `counts_from`); `processor switch N` makes the
//! query API serve generation N; `processor serving` prints the generation served;
//! `processor drop-generation N` drops one that is not served.

use anyhow::{bail, Context};
use common::config::config_path;
use common::{load_config, Readiness};
use processor::generations;
use processor::metrics::Metrics;
use processor::migrate::migrate;
use processor::pipeline::Pipeline;
use processor::store::Store;
use processor::ProcessorConfig;
use std::time::Duration;

/// mimalloc instead of glibc's malloc: the engine threads allocate and free many small objects
/// (rows, contributions, record copies) at once, and glibc's malloc and free took about a third
/// of the processor's time in a replay profile (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads.
    let purge_delay_ms = processor::allocator::keep_freed_memory();
    let no_huge_pages = processor::allocator::no_huge_pages();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(purge_delay_ms, no_huge_pages))
}

async fn serve(purge_delay_ms: i64, no_huge_pages: bool) -> anyhow::Result<()> {
    common::telemetry::init_tracing("processor");
    tracing::debug!(purge_delay_ms, "allocator: memory freed is kept for reuse (-1) or returned after this delay");
    tracing::debug!(no_huge_pages, "allocator: transparent huge pages off (MIMALLOC_ALLOW_THP unset or 0)");
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).filter(|a| !a.starts_with("--")).map(String::as_str).unwrap_or("run");
    let mut config: ProcessorConfig = load_config(config_path(&args, "PROCESSOR_").as_deref(), "PROCESSOR_")?;
    config.validate().map_err(anyhow::Error::msg).context("invalid processor configuration")?;
    let base = config.clickhouse.database.clone();
    let base_client = config.clickhouse.client();
    match command {
        "migrate" => {
            generations::ensure_serving_table(&base_client, &base).await?;
            let config = config.for_generation();
            let applied = migrate(&config.clickhouse.client(), &config.clickhouse.database).await?;
            println!("applied migrations: {applied:?}");
            Ok(())
        }
        "run" => run(config.for_generation(), &base, Mode::Run).await.map(|_| ()),
        "replay" => {
            let generation: u32 = flag(&args, "--generation")
                .context("usage: processor replay --generation N [--from TIME] [--config FILE]")?
                .parse()
                .context("--generation: must be a whole number")?;
            if let Some(from) = flag(&args, "--from") {
                if config.counts_from.as_deref().is_some_and(|c| c != from) {
                    bail!("--from {from}: the configuration's counts_from says otherwise; give one of them");
                }
                config.counts_from = Some(from.to_owned());
                config.validate().map_err(anyhow::Error::msg).context("--from")?;
            }
            generations::ensure_serving_table(&base_client, &base).await?;
            let resuming = generations::check_replay_target(&base_client, &base, generation).await?;
            let archive_source = generations::archive_source(&base_client, &base).await?;
            config.generation = generation;
            let config = config.for_generation().for_replay();
            eprintln!(
                "{} generation {generation} into database {} (consumer group {}, checkpoints in {})",
                if resuming { "resuming the replay of" } else { "replaying the log into" },
                config.clickhouse.database,
                config.kafka.group_id,
                config.checkpoint.dir.display()
            );
            let counts_from = match &config.counts_from {
                Some(t) => format!(" and counts_from = {t:?}"),
                None => String::new(),
            };
            if run(config, &base, Mode::Replay { archive_source }).await? {
                eprintln!(
                    "generation {generation} is built. Run processors with generation = {generation}{counts_from} to \
                     keep it current, then `processor switch {generation}`."
                );
            }
            Ok(())
        }
        "switch" => {
            let generation = positional(&args).context("usage: processor switch N")?;
            generations::ensure_serving_table(&base_client, &base).await?;
            let previous = generations::switch(&base_client, &base, generation).await?;
            println!("serving generation {generation} (was {previous})");
            Ok(())
        }
        "serving" => {
            generations::ensure_serving_table(&base_client, &base).await?;
            println!("{}", generations::serving(&base_client, &base).await?);
            Ok(())
        }
        "drop-generation" => {
            let generation = positional(&args).context("usage: processor drop-generation N")?;
            generations::drop_generation(&base_client, &base, generation).await?;
            let mut dir = config.clone();
            dir.generation = generation;
            let dir = dir.for_generation().checkpoint.dir;
            let _ = std::fs::remove_dir_all(&dir);
            println!("dropped generation {generation} and its checkpoints ({})", dir.display());
            Ok(())
        }
        other => bail!("unknown command {other:?} (expected run, migrate, replay, switch, serving or drop-generation)"),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].as_str())
}

/// The number after the command (`processor switch 2`).
fn positional(args: &[String]) -> anyhow::Result<u32> {
    let n = args.get(2).filter(|a| !a.starts_with("--")).context("missing generation number")?;
    n.parse().with_context(|| format!("generation {n:?}: must be a whole number"))
}

/// How `run` runs the pipeline.
enum Mode {
    /// Until a shutdown signal.
    Run,
    /// Until it has caught up with the topic's end as of its start, copying the archive from
    /// `archive_source` if any (`Pipeline::replay`).
    Replay { archive_source: Option<String> },
}

/// Runs the pipeline of `config`'s generation: returns whether a replay caught up (true) or was
/// stopped by a shutdown signal (false); a run returns true when it stops.
async fn run(config: ProcessorConfig, base: &str, mode: Mode) -> anyhow::Result<bool> {
    let client = config.clickhouse.client();
    let metrics = Metrics::new()?;
    let readiness = Readiness::default();
    let ops = common::http::ops_routes(metrics.registry.clone(), readiness.clone());
    // A replay runs beside the live processors: its ops port is optional.
    match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => {
            tracing::info!(listen = %config.listen, "processor ops endpoints listening");
            tokio::spawn(async move { axum::serve(listener, ops).await });
        }
        Err(e) if matches!(mode, Mode::Replay { .. }) => {
            tracing::info!(listen = %config.listen, error = %e, "no ops endpoints for this replay")
        }
        Err(e) => return Err(e).with_context(|| format!("binding {}", config.listen)),
    }

    // ClickHouse may come up after us: retry the migrations until it answers.
    let mut delay = Duration::from_millis(200);
    loop {
        let migrated = match generations::ensure_serving_table(&client, base).await {
            Ok(()) => migrate(&client, &config.clickhouse.database).await,
            Err(e) => Err(e),
        };
        match migrated {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for ClickHouse");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    generations::check_counts_from(&client, base, config.generation, config.counts_from_ms()).await?;
    let store = Store::new(client, metrics.clone());
    let pipeline = Pipeline::start(config, store, metrics, readiness).await?;
    match mode {
        Mode::Replay { archive_source } => Ok(pipeline.replay(archive_source, common::http::shutdown_signal()).await?),
        Mode::Run => {
            pipeline.run(common::http::shutdown_signal()).await?;
            Ok(true)
        }
    }
}
