//! Load run of the read side: starts a whole stack on loopback (the e2e harness), loads a
//! generated community spanning 55 weeks (52 weekly cohorts: joins stop at 95% of the span) through the ingest API, then has C
//! concurrent clients request `GET /v1/communities/{c}/retention?granularity=week` for a fixed
//! time and reports requests/s and latency percentiles. A second run sends `If-None-Match` with
//! the tag of the answer, as a polling dashboard does (304s).
//!
//!   cargo build --release -p processor -p ingest -p query-api -p benches --bins && target/release/load-query [--members N] [--clients C] [--seconds S]
//!
//! The stack's directory (`.scratch/e2e/`: logs, ClickHouse data) is removed when the run ends;
//! `E2E_KEEP=1` keeps it, e.g. to read the services' logs after a failed run.

use anyhow::{bail, Result};
use e2e_tests::{Stack, READ_KEY, WRITE_KEY};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone()).unwrap_or_else(|| default.to_owned())
}

async fn load(client: &reqwest::Client, stack: &Stack, community: &str, members: usize) -> Result<usize> {
    let spec = generator::Spec { community_id: community.into(), members, groups: 4, days: 385, ..Default::default() };
    let events = generator::generate(&spec);
    for chunk in events.chunks(1000) {
        let body: String = chunk.iter().map(|e| e.to_json().to_string() + "\n").collect();
        let resp = client
            .post(format!("{}/v1/events", stack.ingest_url))
            .bearer_auth(WRITE_KEY)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("ingest answered {}", resp.status());
        }
    }
    let fresh = format!("{}/v1/communities/{community}/freshness", stack.query_url);
    let started = Instant::now();
    loop {
        let v: serde_json::Value = client.get(&fresh).bearer_auth(READ_KEY).send().await?.json().await?;
        if v["events_processed"].as_u64() == Some(events.len() as u64) {
            return Ok(events.len());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not processed after 600 s: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    statuses: std::collections::BTreeMap<u16, u64>,
}

async fn run(client: &reqwest::Client, url: &str, clients: usize, seconds: u64, etag: Option<String>) -> Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, etag) = (client.clone(), url.to_owned(), etag.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = client.get(&url).bearer_auth(READ_KEY);
                if let Some(tag) = &etag {
                    req = req.header("if-none-match", tag);
                }
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let _ = resp.bytes().await?;
                lat.push(t.elapsed());
                *statuses.entry(status).or_insert(0u64) += 1;
            }
            Ok::<_, anyhow::Error>((lat, statuses))
        }));
    }
    let mut out = Run { latencies: Vec::new(), elapsed: Duration::ZERO, statuses: Default::default() };
    for t in tasks {
        let (lat, statuses) = t.await??;
        out.latencies.extend(lat);
        for (s, n) in statuses {
            *out.statuses.entry(s).or_insert(0) += n;
        }
    }
    out.elapsed = started.elapsed();
    out.latencies.sort();
    Ok(out)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let members: usize = arg(&args, "--members", "20000").parse()?;
    let clients: usize = arg(&args, "--clients", "50").parse()?;
    let seconds: u64 = arg(&args, "--seconds", "20").parse()?;
    let stack = tokio::task::spawn_blocking(|| benches::load_stack("load-query", &[])).await??;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(clients).build()?;
    let community = "bench";
    let events = load(&client, &stack, community, members).await?;
    let url = format!("{}/v1/communities/{community}/retention?granularity=week", stack.query_url);
    let first = client.get(&url).bearer_auth(READ_KEY).send().await?;
    let etag = first.headers().get("etag").map(|v| v.to_str().unwrap_or_default().to_owned());
    let body: serde_json::Value = first.json().await?;
    let cohorts = body["cohorts"].as_array().map(|a| a.len()).unwrap_or(0);
    let cells: usize =
        body["cohorts"].as_array().into_iter().flatten().map(|c| c["values"].as_array().map_or(0, |v| v.len())).sum();
    println!("community: {members} members, {events} events, {cohorts} weekly cohorts, {cells} retention cells");
    println!("| requests | clients | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms | statuses |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, tag) in [("full answer (200)", None), ("If-None-Match (304)", etag)] {
        let r = run(&client, &url, clients, seconds, tag).await?;
        let n = r.latencies.len();
        println!(
            "| {name} | {clients} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:?} |",
            r.elapsed.as_secs_f64(),
            n as f64 / r.elapsed.as_secs_f64(),
            pct(&r.latencies, 0.50),
            pct(&r.latencies, 0.90),
            pct(&r.latencies, 0.99),
            pct(&r.latencies, 1.0),
            r.statuses
        );
    }
    Ok(())
}
