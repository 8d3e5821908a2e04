//! `archive`: the raw-event archive for data engineers.
//!
//!   archive export --out DIR [--config processor.toml] [--community ID]...
//!       events_raw → Parquet, one file per community and month (UTC) under DIR
//!   archive import --ingest URL --key WRITE_KEY [--batch N] PATH...
//!       Parquet files (or directories of them) and NDJSON files (`.ndjson`, `.jsonl`, `.gz`)
//!       → POST /v1/events: the same validation as any producer, then Kafka; progress on stderr
//!
//! Export then import into an empty pipeline reproduces the same archive (tested end to end).

use anyhow::{bail, Context};
use batch::archive::{self, ArchivedEvent};
use batch::parquet;
use common::config::config_path;
use processor::ProcessorConfig;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn values(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn one(args: &[String], name: &str) -> anyhow::Result<String> {
    values(args, name).pop().with_context(|| format!("{name} is required (see --help)"))
}

/// Events/s and ETA, redrawn on a terminal, a line every 5 s otherwise.
struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            started: now,
            last: now - Duration::from_secs(60),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.last.elapsed() >= Duration::from_millis(if self.tty { 200 } else { 5000 }) || self.done == self.total {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let rate = self.done as f64 / secs;
            let eta = if rate > 0.0 { (self.total.saturating_sub(self.done)) as f64 / rate } else { 0.0 };
            let pct = 100.0 * self.done as f64 / self.total.max(1) as f64;
            let width = 30;
            let filled = (pct / 100.0 * width as f64) as usize;
            let line = format!(
                "[{}{}] {}/{} events ({pct:.1}%), {rate:.0} events/s, ETA {eta:.0} s",
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            if self.tty {
                eprint!("\r{line}");
                if self.done == self.total {
                    eprintln!();
                }
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        }
    }
}

async fn export(args: &[String]) -> anyhow::Result<()> {
    let out = PathBuf::from(one(args, "--out")?);
    let cfg: ProcessorConfig = common::load_config(config_path(args, "PROCESSOR_").as_deref(), "PROCESSOR_")?;
    let client = cfg.clickhouse.client();
    let mut communities = values(args, "--community");
    if communities.is_empty() {
        communities = archive::clickhouse_communities(&client).await?;
    }
    let started = Instant::now();
    let mut total = 0;
    for c in &communities {
        let rows = archive::clickhouse_rows(&client, c).await?;
        total += rows.len();
        for (path, n) in parquet::write_partitioned(&rows, &out)? {
            println!("{n:>9} events  {}", path.display());
        }
    }
    println!(
        "exported {total} events of {} communities in {:.1} s",
        communities.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The NDJSON lines of one input file.
fn lines_of(path: &Path) -> anyhow::Result<Vec<String>> {
    if path.extension().is_some_and(|x| x == "parquet") {
        return parquet::read_file(path)?
            .iter()
            .map(|e: &ArchivedEvent| Ok(e.to_event()?.to_json().to_string()))
            .collect();
    }
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|x| x == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for line in BufReader::new(reader).lines() {
        let line = line.with_context(|| path.display().to_string())?;
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    Ok(out)
}

async fn import(args: &[String]) -> anyhow::Result<()> {
    let ingest = one(args, "--ingest")?;
    let key = one(args, "--key")?;
    let batch: usize = values(args, "--batch").pop().map(|b| b.parse()).transpose()?.unwrap_or(1000);
    // Every argument after the subcommand that is neither an option nor an option's value.
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut rest = args.iter().skip(2);
    while let Some(a) = rest.next() {
        if a.starts_with("--") {
            rest.next();
        } else {
            inputs.push(PathBuf::from(a));
        }
    }
    if inputs.is_empty() {
        bail!("no input files (see --help)");
    }
    let mut lines = Vec::new();
    for p in &inputs {
        let files = if p.is_dir() { parquet::files(p) } else { vec![p.clone()] };
        for f in files {
            lines.extend(lines_of(&f)?);
        }
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", ingest.trim_end_matches('/'));
    let mut progress = Progress::new(lines.len() as u64);
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut first_errors = Vec::new();
    for chunk in lines.chunks(batch) {
        let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        loop {
            let resp = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await?;
            let status = resp.status().as_u16();
            if status == 429 || status == 503 {
                let wait = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let v: serde_json::Value = resp.json().await?;
            if status != 200 {
                bail!("ingest answered {status}: {v}");
            }
            accepted += v["accepted"].as_u64().unwrap_or(0);
            rejected += v["rejected"].as_u64().unwrap_or(0);
            for e in v["errors"].as_array().into_iter().flatten() {
                if first_errors.len() < 10 {
                    first_errors.push(e.to_string());
                }
            }
            break;
        }
        progress.add(chunk.len() as u64);
    }
    println!("imported {accepted} events, rejected {rejected} (same rules as POST /v1/events)");
    for e in first_errors {
        println!("  rejected: {e}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("export") => export(&args).await,
        Some("import") => import(&args).await,
        _ => {
            println!(
                "{}",
                include_str!("archive.rs")
                    .lines()
                    .skip(2)
                    .take(7)
                    .map(|l| l.trim_start_matches("//!"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            return std::process::ExitCode::from(if args.iter().any(|a| a == "--help" || a == "-h") { 0 } else { 2 });
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("archive: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
