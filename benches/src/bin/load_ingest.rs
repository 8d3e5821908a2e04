//! Load run: starts a whole stack on loopback (the e2e harness), posts a generated community
//! through `POST /v1/events` with a given batch size and concurrency, and reports ingest
//! events/s and the time from the last accepted event to the tables being complete (freshness).
//! Then it reads the whole topic with a bare consumer, three ways (`Read`: the broker's read
//! ceiling on this machine), replays the whole topic into generation 1 (`processor replay`),
//! reports the replay rate (records read from Kafka and written as derived tables per second),
//! and checks that the new generation counts every event the serving one does.
//!
//!   cargo build --release -p processor -p ingest -p query-api -p benches --bins && target/release/load-ingest [--members N] [--concurrency C] [--batches 100,1000]
//!       [--replay-flush-ms MS] [--replay-max-records N] [--replay-from TIME] [--stop-replay-after-ms MS]
//!
//! `--replay-from TIME` replays from that instant (`processor replay --from`, the events dated
//! from then on; the generated communities span 2024-01-01 to 2024-06-28) and checks the new
//! generation counts and archives exactly those.
//!
//! `--stop-replay-after-ms MS` first starts a replay and stops it with SIGTERM that long after its
//! start, reports how long it took to exit and the progress it stored, then measures the replay
//! that resumes it (the counts checked at the end then cover the stop too).
//!
//! `LOAD_SHOW_REPLAY_LOG=1` prints the replaying processor's log (its rounds, checkpoints and
//! time by step) on stderr.
//!
//! The stack's directory (`.scratch/e2e/`: logs, ClickHouse data) is removed when the run ends;
//! `E2E_KEEP=1` keeps it, e.g. to read the services' logs after a failed run.

use anyhow::{bail, Result};
use e2e_tests::{READ_KEY, WRITE_KEY};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let members: usize = arg(&args, "--members", "20000").parse()?;
    let concurrency: usize = arg(&args, "--concurrency", "8").parse()?;
    let batches: Vec<usize> =
        arg(&args, "--batches", "100,1000").split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let replay_from = Some(arg(&args, "--replay-from", "")).filter(|t| !t.is_empty());
    let stop_replay_after_ms: Option<u64> =
        Some(arg(&args, "--stop-replay-after-ms", "")).filter(|t| !t.is_empty()).map(|t| t.parse()).transpose()?;
    let from_ms = match &replay_from {
        Some(t) => schemas::validate::parse_ts(t).map_err(|e| anyhow::anyhow!("--replay-from: {e}"))?,
        None => i64::MIN,
    };
    let stack = tokio::task::spawn_blocking(|| benches::load_stack("load", &[])).await??;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    println!("| batch | events | concurrency | ingest events/s | last event sent → tables complete |");
    println!("|---|---|---|---|---|");
    let mut total_events = 0;
    // Events the replay counts: those dated from `--replay-from` on (all of them without it).
    let mut replayed_events = 0u64;
    for batch in batches {
        let community = format!("load-{batch}");
        let spec =
            generator::Spec { community_id: community.clone(), members, groups: 4, days: 180, ..Default::default() };
        let events = generator::generate(&spec);
        let bodies: Vec<String> = events
            .chunks(batch)
            .map(|c| c.iter().map(|e| e.to_json().to_string() + "\n").collect::<String>())
            .collect();
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, bodies, next, url) = (client.clone(), bodies.clone(), next.clone(), stack.ingest_url.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return Ok::<u64, anyhow::Error>(0) };
                    loop {
                        let resp = client
                            .post(format!("{url}/v1/events"))
                            .bearer_auth(WRITE_KEY)
                            .header("content-type", "application/x-ndjson")
                            .body(body.clone())
                            .send()
                            .await?;
                        match resp.status().as_u16() {
                            200 => break,
                            429 | 503 => tokio::time::sleep(Duration::from_millis(200)).await,
                            s => bail!("ingest answered {s}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let sent = started.elapsed();
        let sent_at = Instant::now();
        let fresh_url = format!("{}/v1/communities/{community}/freshness", stack.query_url);
        loop {
            let v: serde_json::Value = client.get(&fresh_url).bearer_auth(READ_KEY).send().await?.json().await?;
            if v["events_processed"].as_u64() == Some(events.len() as u64) {
                break;
            }
            if sent_at.elapsed() > Duration::from_secs(600) {
                bail!("not processed after 600 s: {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let complete = sent_at.elapsed();
        total_events += events.len();
        replayed_events += events.iter().filter(|e| e.ts_ms >= from_ms).count() as u64;
        println!(
            "| {batch} | {} | {concurrency} | {:.0} | {:.2} s |",
            events.len(),
            events.len() as f64 / sent.as_secs_f64(),
            complete.as_secs_f64()
        );
    }
    let records: usize = total_events;
    println!();
    println!("| bare read of the topic (one consumer, one thread) | records | MB | time | records/s |");
    println!("|---|---|---|---|---|");
    for (name, how) in [
        ("`BaseConsumer::poll`, records counted", Read::Count),
        ("`BaseConsumer::poll`, records decoded (`parse_event_view`)", Read::Decode),
        ("`StreamConsumer::recv` as the processor reads, payloads copied", Read::Stream),
    ] {
        let (n, bytes, secs) = read_topic(&stack.kafka, how).await?;
        println!("| {name} | {n} | {:.1} | {secs:.2} s | {:.0} |", bytes as f64 / 1e6, n as f64 / secs);
    }
    // The configuration's defaults unless given.
    let flush_ms = arg(&args, "--replay-flush-ms", &benches::default_replay_interval());
    let replay_max_records = arg(&args, "--replay-max-records", &benches::default_replay_round());
    let replay_command = || -> Result<std::process::Command> {
        let mut replay = stack.tool("processor")?;
        replay.args(["replay", "--generation", "1"]);
        if let Some(t) = &replay_from {
            replay.args(["--from", t]);
        }
        replay
            .env("PROCESSOR_FLUSH__REPLAY_INTERVAL_MS", &flush_ms)
            .env("PROCESSOR_FLUSH__REPLAY_MAX_RECORDS", &replay_max_records);
        Ok(replay)
    };
    if let Some(t) = &replay_from {
        println!();
        println!("replaying from {t}: {replayed_events} of the {records} events are dated from then on");
    }
    // Records the measured replay reads: those after the progress a stopped replay stored.
    let to_read = match stop_replay_after_ms {
        Some(ms) => records - stop_a_replay(&stack, replay_command()?, ms, records).await?,
        None => records,
    };
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let out = replay_command()?.output()?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = children_cpu_seconds() - cpu_before;
    let log = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    if std::env::var_os("LOAD_SHOW_REPLAY_LOG").is_some() {
        eprintln!("{log}");
    }
    if !out.status.success() {
        bail!("replay failed: {}{log}", String::from_utf8_lossy(&out.stderr));
    }
    // The replay's own measure: from its start of reading to caught up (no process start, group join).
    let reading: Option<f64> = log
        .lines()
        .find(|l| l.contains("caught up"))
        .and_then(|l| l.split("elapsed_s=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    let seconds = |name: &str| -> Option<f64> {
        log.lines()
            .find(|l| l.contains("replay time by step"))
            .and_then(|l| l.split(&format!("{name}=")).nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let step = |name: &str| -> String { seconds(name).map_or("?".into(), |v| format!("{v:.2} s")) };
    println!();
    println!(
        "replay time by step: archive copy (beside the reading) {}, waited for {}, consume {}, apply {}, archive sent early {}, engine flush {}, ClickHouse write {}, snapshot {}",
        step("copy_s"),
        step("copy_wait_s"),
        step("consume_s"),
        step("apply_s"),
        step("archive_s"),
        step("engine_s"),
        step("write_s"),
        step("snapshot_s")
    );
    println!(
        "| replay into generation 1 | records | wall time (process start to exit) | reading time | records/s (reading) | processor CPU (user + sys) | records per CPU second |"
    );
    println!("|---|---|---|---|---|---|---|");
    let per_cpu = to_read as f64 / cpu;
    let what = if to_read == records { "all of the topic" } else { "the rest of the topic, resumed" };
    match reading {
        Some(r) => println!(
            "| {what} | {to_read} | {wall:.2} s | {r:.2} s | {:.0} | {cpu:.2} s | {per_cpu:.0} |",
            to_read as f64 / r
        ),
        None => {
            println!("| {what} | {to_read} | {wall:.2} s | (not in the log) | | {cpu:.2} s | {per_cpu:.0} |")
        }
    }
    // The replay's own count, not the events sent: the new generation must hold every event.
    let mut counted = Vec::new();
    for db in [stack.database.clone(), format!("{}_g1", stack.database)] {
        let q = format!(
            "SELECT sum(n) FROM (SELECT argMax(events_processed, version) AS n FROM {db}.community_stats \
             GROUP BY community_id, partition) FORMAT TSV"
        );
        let r = client.post(&stack.clickhouse_url).body(q).send().await?.error_for_status()?.text().await?;
        counted.push(r.trim().parse::<u64>()?);
    }
    if counted[0] != records as u64 || counted[1] != replayed_events {
        bail!(
            "events counted: {} in generation 0, {} in the replay's generation 1, {records} sent, \
             {replayed_events} for the replay to count",
            counted[0],
            counted[1]
        );
    }
    println!("events counted in the replay's generation: {} (as it should: {replayed_events})", counted[1]);
    // The archive, copied or encoded, must hold every event once, as the serving one does.
    let mut archived = Vec::new();
    for db in [stack.database.clone(), format!("{}_g1", stack.database)] {
        let q = format!("SELECT count() FROM {db}.events_raw FINAL FORMAT TSV");
        let r = client.post(&stack.clickhouse_url).body(q).send().await?.error_for_status()?.text().await?;
        archived.push(r.trim().parse::<u64>()?);
    }
    if archived[0] != records as u64 || archived[1] != replayed_events {
        bail!(
            "events archived: {} in generation 0, {} in generation 1, {records} sent, {replayed_events} to replay",
            archived[0],
            archived[1]
        );
    }
    println!("events archived in the replay's generation: {} (as it should: {replayed_events})", archived[1]);
    // Blocks ClickHouse found sorted by the table's key need no sort (the archive is sent so).
    let q = "SELECT event, value FROM system.events WHERE event LIKE 'MergeTreeDataWriterBlocks%' FORMAT TSV";
    let r = client.post(&stack.clickhouse_url).body(q).send().await?.error_for_status()?.text().await?;
    println!("ClickHouse, whole run: {}", r.trim().replace('\n', ", ").replace('\t', " "));
    drop(stack);
    Ok(())
}

/// Starts a replay, stops it with SIGTERM `after_ms` into its run (part way through its reading,
/// for a suitable value), and reports how long it took to exit and how much progress it stored:
/// a stopped replay writes what it consumed, so that its resumption (the measured replay that
/// follows) goes on from there. The final counts then check the stop lost and doubled nothing.
async fn stop_a_replay(
    stack: &e2e_tests::Stack,
    mut replay: std::process::Command,
    after_ms: u64,
    records: usize,
) -> Result<usize> {
    let log_path = stack.dir.join("stopped-replay.log");
    let mut child = replay.stdout(std::fs::File::create(&log_path)?).stderr(std::process::Stdio::null()).spawn()?;
    tokio::time::sleep(Duration::from_millis(after_ms)).await;
    if child.try_wait()?.is_some() {
        bail!("the replay ended within {after_ms} ms, before the stop: give a smaller --stop-replay-after-ms");
    }
    let signalled = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    let exited = signalled.elapsed();
    let log = strip_ansi(&std::fs::read_to_string(&log_path)?);
    if !status.success() {
        bail!("the stopped replay failed: {log}");
    }
    let q = format!("SELECT sum(next_offset) FROM {}_g1.processor_progress FINAL FORMAT TSV", stack.database);
    let stored =
        reqwest::Client::new().post(&stack.clickhouse_url).body(q).send().await?.error_for_status()?.text().await?;
    let stored: usize = stored.trim().parse()?;
    println!();
    println!(
        "replay stopped with SIGTERM {after_ms} ms after its start: exited {:.2} s after the signal, \
         having stored progress for {} of {records} records; the replay below resumes it",
        exited.as_secs_f64(),
        stored
    );
    if std::env::var_os("LOAD_SHOW_REPLAY_LOG").is_some() {
        eprintln!("{log}");
    }
    Ok(stored)
}

/// The processor's default topic, which the e2e stack uses.
const TOPIC: &str = "engagement-events";

/// How a bare read of the topic takes its records.
#[derive(Clone, Copy)]
enum Read {
    /// `BaseConsumer::poll`, librdkafka's fastest interface: counted, nothing else.
    Count,
    /// The same, each record decoded with `parse_event_view`.
    Decode,
    /// `StreamConsumer::recv` as the processor's loop takes them (what the consumer already
    /// holds without another `select!`), each payload copied out as the processor does.
    Stream,
}

/// Reads every partition of the events topic from its start to its end with the processor's
/// fetch settings, no consumer group and nothing else to do per record: the most a replay could
/// read from this broker on this machine. Returns records, payload bytes and the seconds from
/// the start to the last record.
///
/// Tansu 0.6 answers a log end below a partition's last record, so the read goes on until no
/// record came for two seconds instead of stopping at the ends it answers.
async fn read_topic(brokers: &str, how: Read) -> Result<(u64, u64, f64)> {
    use futures::FutureExt;
    use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "load-ingest-read")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        // The processor's queue settings: with librdkafka's, a read that falls behind the broker
        // fills the 64 MiB queue and waits out a 1 s fetch backoff, and the decoded read measured
        // that wait (469,132 records/s against 1,041,104 counted; docs/performance.md).
        .set("queued.max.messages.kbytes", processor::pipeline::PREFETCH_KBYTES.to_string())
        .set("fetch.queue.backoff.ms", processor::pipeline::PREFETCH_BACKOFF_MS.to_string());
    fn assign<C: rdkafka::consumer::ConsumerContext>(consumer: &impl Consumer<C>) -> Result<()> {
        let md = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().first().map(|t| t.partitions()).unwrap_or_default() {
            tpl.add_partition_offset(TOPIC, p.id(), Offset::Beginning)?;
        }
        Ok(consumer.assign(&tpl)?)
    }
    let limits = schemas::Limits::default();
    let (mut n, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let mut last = started;
    // Tansu sometimes pauses a partition's fetches for over half a second mid-topic.
    const IDLE: Duration = Duration::from_secs(2);
    match how {
        Read::Count | Read::Decode => {
            let consumer: BaseConsumer = config.create()?;
            assign(&consumer)?;
            while last.elapsed() < IDLE || n == 0 {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let payload = m.payload().unwrap_or_default();
                        n += 1;
                        bytes += payload.len() as u64;
                        if matches!(how, Read::Decode) {
                            let parsed = schemas::parse_event_view(payload, None, &limits);
                            std::hint::black_box(parsed.map(|e| e.view().ts_ms).ok());
                        }
                        last = Instant::now();
                    }
                    Some(Err(e)) => bail!("reading the topic: {e}"),
                    None if started.elapsed() > Duration::from_secs(300) => bail!("nothing read in 300 s"),
                    None => {}
                }
            }
        }
        Read::Stream => {
            let consumer: StreamConsumer = config.create()?;
            assign(&consumer)?;
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                let m = match tokio::time::timeout(IDLE, consumer.recv()).await {
                    Ok(m) => m?,
                    Err(_) if n > 0 => break,
                    Err(_) if started.elapsed() > Duration::from_secs(300) => bail!("nothing read in 300 s"),
                    Err(_) => continue,
                };
                let mut take = |m: &rdkafka::message::BorrowedMessage| {
                    let payload = m.payload().unwrap_or_default();
                    n += 1;
                    bytes += payload.len() as u64;
                    kept.push(payload.to_vec());
                };
                take(&m);
                while let Some(Ok(m)) = consumer.recv().now_or_never() {
                    take(&m);
                }
                last = Instant::now();
                if kept.len() > 100_000 {
                    kept.clear();
                }
            }
        }
    }
    Ok((n, bytes, (last - started).as_secs_f64()))
}

/// CPU time (user + system) of this process's children that have exited and been waited for
/// (`/proc/self/stat` fields 16 and 17, in clock ticks of 1/100 s): around the replay, that is
/// the replaying processor's, which the machine's other load does not inflate the way it does
/// the wall time.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): cutime is field 16, cstime 17.
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(16) + ticks(17)) / 100.0
}

/// The processor's log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
