//! Load run: import at scale and restart with a large state. Starts a whole stack on loopback
//! (the e2e harness), writes `--communities` generated communities of `--members` members each as
//! one NDJSON file, imports it with `archive import` (through ingest and Kafka, as a backfill
//! would) and times the import and the processor catching up. Then it restarts the processor
//! twice with the whole state in its checkpoints, a clean stop (SIGTERM) and a crash (SIGKILL),
//! each time with a probe community posted while the processor was down, and reports how long
//! the processor took from its start to having taken up its partitions and to having counted and
//! written the probe.
//!
//!   cargo build --release -p processor -p ingest -p query-api -p benches -p batch --bins \
//!     && target/release/load-restart [--communities 10] [--members 100000] [--concurrency 4] \
//!          [--partitions all | --instance-id ID]
//!
//! `--partitions` gives the processor its partitions by configuration (`kafka.partitions`)
//! instead of through the consumer group, so that no restart waits for the group.
//! `--instance-id` makes it a static member of the group (`kafka.instance_id`), so that the
//! restart after the crash takes the killed member's place instead of waiting out its session.
//!
//! The stack's directory (`.scratch/e2e/`: logs, ClickHouse data) is removed when the run ends;
//! `E2E_KEEP=1` keeps it, e.g. to read the services' logs after a failed run.

use anyhow::{bail, Context, Result};
use e2e_tests::{load, wait_for, Stack, READ_KEY, WRITE_KEY};
use reqwest::blocking::Client;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone()).unwrap_or_else(|| default.to_owned())
}

fn spec(community_id: String, seed: u64, members: usize) -> generator::Spec {
    generator::Spec { community_id, seed, members, groups: 4, days: 180, ..Default::default() }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let communities: u64 = arg(&args, "--communities", "10").parse()?;
    let members: usize = arg(&args, "--members", "100000").parse()?;
    let concurrency = arg(&args, "--concurrency", "4");
    // A checkpoint every 10 s (the default is 30 s) only shortens the wait for one covering
    // everything; what a restart reads does not depend on it here.
    let partitions = arg(&args, "--partitions", "");
    let mut env = vec![("PROCESSOR_CHECKPOINT__INTERVAL_SECS", "10")];
    if !partitions.is_empty() {
        env.push(("PROCESSOR_KAFKA__PARTITIONS", partitions.as_str()));
    }
    let instance_id = arg(&args, "--instance-id", "");
    if !instance_id.is_empty() {
        env.push(("PROCESSOR_KAFKA__INSTANCE_ID", instance_id.as_str()));
    }
    let mut stack = benches::load_stack("restart", &env)?;
    let client = Client::builder().timeout(Duration::from_secs(60)).build()?;

    let file = stack.dir.join("history.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut expected = Vec::new();
    for i in 0..communities {
        let events = generator::generate(&spec(format!("restart-{i}"), i, members));
        for e in &events {
            writeln!(out, "{}", e.to_json())?;
        }
        expected.push((format!("restart-{i}"), events.len() as u64));
    }
    out.flush()?;
    drop(out);
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "{total} events of {} members in {} communities, {:.0} MB of NDJSON",
        members as u64 * communities,
        communities,
        bytes as f64 / 1e6
    );

    let started = Instant::now();
    let import = stack
        .tool("archive")?
        .args(["import", "--ingest", &stack.ingest_url, "--key", WRITE_KEY, "--batch", "1000"])
        .args(["--concurrency", &concurrency])
        .arg(&file)
        .output()?;
    let import_s = started.elapsed().as_secs_f64();
    if !import.status.success() {
        bail!("import failed: {}", String::from_utf8_lossy(&import.stderr));
    }
    print!("{}", String::from_utf8_lossy(&import.stdout));
    for (c, n) in &expected {
        load::wait_counted(&client, &stack, c, *n, Duration::from_secs(3600));
    }
    let caught_up_s = started.elapsed().as_secs_f64();
    println!();
    println!("| import (`archive import --concurrency {concurrency}`) | events | import time | import events/s | import start → every event counted | events/s, end to end |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} MB NDJSON | {total} | {import_s:.1} s | {:.0} | {caught_up_s:.1} s | {:.0} |",
        bytes / 1_000_000,
        total as f64 / import_s,
        total as f64 / caught_up_s
    );
    // A partition that consumed nothing since its last checkpoint is not checkpointed again, so
    // the file's own offset says whether it covers every event, not its time.
    wait_for("checkpoints covering every event", Duration::from_secs(120), || checkpoints_cover_progress(&stack))?;
    println!(
        "processor resident memory with {} members: {:.0} MiB; checkpoints {:.0} MiB",
        members as u64 * communities,
        rss_mib(&stack),
        checkpoint_bytes(&stack) as f64 / 1048576.0
    );

    println!();
    println!("| restart | processor start → partitions assigned | → all 4 taken up | → probe counted and written | taken up from |");
    println!("|---|---|---|---|---|");
    for (round, crash) in [(0, false), (1, true)] {
        if crash {
            // Crash with the state of the clean restart's checkpoints: wait for saves newer than it.
            let since = SystemTime::now();
            wait_for("fresh checkpoints", Duration::from_secs(120), || checkpoints_since(&stack, since) >= 4)?;
            stack.kill_processor();
        } else {
            stack.stop_processor();
        }
        let probe = generator::generate(&spec(format!("restart-probe-{round}"), 100 + round, 1000));
        let records = probe.iter().map(|e| e.to_json()).collect();
        load::paced(&client, &stack.ingest_url, records, Duration::ZERO).join().expect("posting the probe");
        let started = Instant::now();
        stack.start_processor()?;
        let log = stack.dir.join(format!("processor-{}.log", processors(&stack) - 1));
        let (mut assigned, mut taken_up) = (None, None);
        let community = format!("restart-probe-{round}");
        wait_for("probe counted", Duration::from_secs(600), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if assigned.is_none() && text.contains("partitions assigned") {
                assigned = Some(started.elapsed());
            }
            if taken_up.is_none() && text.matches("partition taken up").count() >= 4 {
                taken_up = Some(started.elapsed());
            }
            taken_up.is_some() && counted(&client, &stack, &community) == Some(probe.len() as u64)
        })?;
        let resumed = started.elapsed();
        let text = std::fs::read_to_string(&log)?;
        let from_checkpoint =
            text.lines().filter(|l| l.contains("partition taken up") && l.contains("checkpoint")).count();
        let secs = |d: Option<Duration>| d.map_or("?".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        println!(
            "| {} | {} | {} | {:.2} s | checkpoint: {from_checkpoint} of 4 |",
            if crash { "crash (SIGKILL)" } else { "clean (SIGTERM)" },
            secs(assigned),
            secs(taken_up),
            resumed.as_secs_f64()
        );
    }
    Ok(())
}

/// How many processors the stack has started so far (their logs are numbered from 0).
fn processors(stack: &Stack) -> usize {
    stack.procs.iter().filter(|p| p.name.starts_with("processor")).count()
}

fn counted(client: &Client, stack: &Stack, community: &str) -> Option<u64> {
    let url = format!("{}/v1/communities/{community}/freshness", stack.query_url);
    let v: serde_json::Value = client.get(url).bearer_auth(READ_KEY).send().ok()?.json().ok()?;
    v["events_processed"].as_u64()
}

fn checkpoint_files(stack: &Stack) -> Vec<std::fs::Metadata> {
    let dir = stack.checkpoint_dir();
    let topics = std::fs::read_dir(dir).into_iter().flatten().flatten();
    topics
        .flat_map(|t| std::fs::read_dir(t.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".ckpt"))
        .filter_map(|f| f.metadata().ok())
        .collect()
}

/// The processor's default topic, which the e2e stack uses.
const TOPIC: &str = "engagement-events";

/// Whether every partition's checkpoint holds every record its written progress covers.
fn checkpoints_cover_progress(stack: &Stack) -> bool {
    let q = "SELECT partition, max(next_offset) FROM processor_progress GROUP BY partition FORMAT TSV";
    let Ok(progress) = stack.sql(q) else { return false };
    let checkpoints = processor::checkpoint::Checkpoints::new(stack.checkpoint_dir());
    let mut partitions = 0;
    for line in progress.lines() {
        let mut f = line.split('\t');
        let (Some(Ok(p)), Some(Ok(next))) = (f.next().map(str::parse::<i32>), f.next().map(str::parse::<i64>)) else {
            return false;
        };
        match checkpoints.meta(TOPIC, p) {
            Some(m) if m.next_offset >= next => partitions += 1,
            _ => return false,
        }
    }
    partitions == 4
}

fn checkpoints_since(stack: &Stack, since: SystemTime) -> usize {
    checkpoint_files(stack).iter().filter(|m| m.modified().is_ok_and(|t| t > since)).count()
}

fn checkpoint_bytes(stack: &Stack) -> u64 {
    checkpoint_files(stack).iter().map(|m| m.len()).sum()
}

/// Resident memory of the running processor (`VmRSS` in `/proc/<pid>/status`).
fn rss_mib(stack: &Stack) -> f64 {
    let pid = stack.procs.iter().rev().find(|p| p.name.starts_with("processor")).map(|p| p.pid());
    let status = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok()).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
        .unwrap_or(0.0);
    kb / 1024.0
}
