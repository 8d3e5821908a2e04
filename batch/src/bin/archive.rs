//! `archive`: the raw-event archive for data engineers.
//!
//!   archive export --out DIR [--config processor.toml] [--community ID]...
//!       events_raw → Parquet, one file per community and month (UTC) under DIR
//!   archive import --ingest URL --key WRITE_KEY [--batch N] [--concurrency C] PATH...
//!       Parquet files (or directories of them) and NDJSON files (`.ndjson`, `.jsonl`, `.gz`)
//!       → POST /v1/events: the same validation as any producer, then Kafka; progress on stderr
//!
//! Export then import into an empty pipeline reproduces the same archive (tested end to end).

use anyhow::{bail, Context};
use batch::archive;
use batch::parquet;
use common::config::config_path;
use futures::StreamExt;
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

/// How many events one input file holds, counted before posting so that progress has an ETA.
fn count_events(path: &Path) -> anyhow::Result<u64> {
    if path.extension().is_some_and(|x| x == "parquet") {
        return Ok(parquet::row_count(path)? as u64);
    }
    let mut n = 0;
    for line in BufReader::new(open_ndjson(path)?).lines() {
        n += !line.with_context(|| path.display().to_string())?.trim().is_empty() as u64;
    }
    Ok(n)
}

fn open_ndjson(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    Ok(if path.extension().is_some_and(|x| x == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// One request's worth of NDJSON and how many events it holds.
struct Body {
    ndjson: String,
    events: u64,
}

/// Reads the inputs in order and hands NDJSON bodies of `batch` events to `tx`. It runs on its own
/// thread, and the channel is bounded: a file is never held whole, only the bodies in flight.
fn read_bodies(files: &[PathBuf], batch: usize, tx: &tokio::sync::mpsc::Sender<Body>) -> anyhow::Result<()> {
    let mut body = Body { ndjson: String::new(), events: 0 };
    let push = |line: &str, body: &mut Body| -> anyhow::Result<()> {
        body.ndjson.push_str(line);
        body.ndjson.push('\n');
        body.events += 1;
        if body.events as usize >= batch {
            let full = std::mem::replace(body, Body { ndjson: String::new(), events: 0 });
            tx.blocking_send(full).context("the posting side stopped")?;
        }
        Ok(())
    };
    for path in files {
        if path.extension().is_some_and(|x| x == "parquet") {
            for e in parquet::read_file(path)? {
                push(&e.to_event()?.to_json().to_string(), &mut body)?;
            }
            continue;
        }
        for line in BufReader::new(open_ndjson(path)?).lines() {
            let line = line.with_context(|| path.display().to_string())?;
            if !line.trim().is_empty() {
                push(&line, &mut body)?;
            }
        }
    }
    if body.events > 0 {
        tx.blocking_send(body).context("the posting side stopped")?;
    }
    Ok(())
}

/// What ingest answered for one body.
struct Posted {
    events: u64,
    accepted: u64,
    rejected: u64,
    errors: Vec<String>,
}

/// Posts one body, waiting out `429`/`503` as `Retry-After` says.
async fn post(client: &reqwest::Client, url: &str, key: &str, body: Body) -> anyhow::Result<Posted> {
    // Shared, not copied, by each attempt.
    let ndjson = bytes::Bytes::from(body.ndjson);
    loop {
        let resp = client
            .post(url)
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(ndjson.clone())
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
        return Ok(Posted {
            events: body.events,
            accepted: v["accepted"].as_u64().unwrap_or(0),
            rejected: v["rejected"].as_u64().unwrap_or(0),
            errors: v["errors"].as_array().into_iter().flatten().take(10).map(|e| e.to_string()).collect(),
        });
    }
}

async fn import(args: &[String]) -> anyhow::Result<()> {
    let ingest = one(args, "--ingest")?;
    let key = one(args, "--key")?;
    let number = |name: &str, default: usize| -> anyhow::Result<usize> {
        let v = values(args, name).pop().map(|b| b.parse::<usize>()).transpose();
        match v.with_context(|| format!("{name}: must be a whole number"))? {
            Some(0) => bail!("{name}: must be at least 1"),
            v => Ok(v.unwrap_or(default)),
        }
    };
    let batch = number("--batch", 1000)?;
    let concurrency = number("--concurrency", 4)?;
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
    let files: Vec<PathBuf> =
        inputs.iter().flat_map(|p| if p.is_dir() { parquet::files(p) } else { vec![p.clone()] }).collect();
    let mut total = 0;
    for f in &files {
        total += count_events(f)?;
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let url = format!("{}/v1/events", ingest.trim_end_matches('/'));
    let (tx, rx) = tokio::sync::mpsc::channel::<Body>(concurrency * 2);
    let reader = tokio::task::spawn_blocking(move || read_bodies(&files, batch, &tx));
    // Bodies are posted `concurrency` at a time, in any order: every metric is independent of the
    // order events arrive in, and a repeated event_id is counted once.
    let posted = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        .map(|body| post(&client, &url, &key, body))
        .buffer_unordered(concurrency);
    let mut posted = std::pin::pin!(posted);
    let mut progress = Progress::new(total);
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut first_errors = Vec::new();
    while let Some(p) = posted.next().await {
        let p = p?;
        accepted += p.accepted;
        rejected += p.rejected;
        first_errors.extend(p.errors.into_iter().take(10usize.saturating_sub(first_errors.len())));
        progress.add(p.events);
    }
    reader.await??;
    let secs = progress.started.elapsed().as_secs_f64();
    println!(
        "imported {accepted} events, rejected {rejected} (same rules as POST /v1/events) in {secs:.1} s ({:.0} events/s)",
        (accepted + rejected) as f64 / secs.max(1e-3)
    );
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
