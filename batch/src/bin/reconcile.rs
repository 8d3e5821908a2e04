//! `reconcile`: recomputes every metric table from the archived raw events with polars and prints
//! each cell where ClickHouse differs. Exit status 0: no difference; 1: differences; 2: error.
//!
//!   reconcile [--config processor.toml] [--community ID]... [--parquet DIR] [--max-lines N]
//!
//! The raw events come from ClickHouse's archive (`events_raw`), or with `--parquet` from an
//! `archive export` directory (or any Parquet files with the archive's columns).
//! ClickHouse and the metric parameters come from the processor's configuration (file, then
//! `PROCESSOR_*` variables), so both sides use the same time zones and windows.

use anyhow::Context;
use batch::archive;
use common::config::config_path;
use processor::ProcessorConfig;
use query_api::metrics::Metrics;
use query_api::source::ClickHouseSource;
use std::process::ExitCode;
use std::time::Instant;

fn values(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

async fn run(args: &[String]) -> anyhow::Result<bool> {
    let cfg: ProcessorConfig = common::load_config(config_path(args, "PROCESSOR_").as_deref(), "PROCESSOR_")?;
    let max_lines: usize = values(args, "--max-lines").first().map(|s| s.parse()).transpose()?.unwrap_or(50);
    let client = cfg.clickhouse.client();
    let source = ClickHouseSource::new(client.clone(), Metrics::new()?);
    let parquet_rows = match values(args, "--parquet").pop() {
        Some(dir) => {
            let files = batch::parquet::files(std::path::Path::new(&dir));
            anyhow::ensure!(!files.is_empty(), "--parquet {dir}: no .parquet file there");
            let mut rows = Vec::new();
            for f in files {
                rows.extend(batch::parquet::read_file(&f)?);
            }
            Some(rows)
        }
        None => None,
    };
    let mut communities = values(args, "--community");
    if communities.is_empty() {
        communities = match &parquet_rows {
            Some(rows) => rows
                .iter()
                .map(|r| r.community_id.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => archive::clickhouse_communities(&client).await.context("listing the archived communities")?,
        };
    }
    let mut clean = true;
    for community in &communities {
        let started = Instant::now();
        let events = match &parquet_rows {
            Some(rows) => rows
                .iter()
                .filter(|r| &r.community_id == community)
                .map(|r| r.to_event())
                .collect::<Result<Vec<_>, _>>()?,
            None => archive::clickhouse_events(&client, community).await?,
        };
        let config = cfg.metrics.get(community).clone();
        let n = events.len();
        let batch = tokio::task::spawn_blocking({
            let community = community.clone();
            move || batch::recompute(&events, &community, &config)
        })
        .await??;
        let stored = batch::stored::stored_tables(&source, community).await?;
        let differences = batch::diff(&stored, &batch);
        println!(
            "{community}: {n} events, {} cells recomputed, {} stored, {} differences ({:.1} s)",
            batch.len(),
            stored.len(),
            differences.len(),
            started.elapsed().as_secs_f64()
        );
        for d in differences.iter().take(max_lines) {
            println!("  {d}");
        }
        if differences.len() > max_lines {
            println!("  ... and {} more (--max-lines)", differences.len() - max_lines);
        }
        clean &= differences.is_empty();
    }
    Ok(clean)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("reconcile [--config processor.toml] [--community ID]... [--parquet DIR] [--max-lines N]");
        return ExitCode::SUCCESS;
    }
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("reconcile: {e:#}");
            ExitCode::from(2)
        }
    }
}
