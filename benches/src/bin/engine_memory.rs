//! Engine state size and throughput at scale: loads `--communities` generated communities of
//! `--members` members each into one engine (one partition), decoding every event from JSON as the
//! processor does, flushing after each community, and reports events/s and live heap bytes per
//! member (counted by a wrapping global allocator). Then the restart from saved state: the
//! engine's checkpoint is taken, written to a file, and read back into a new engine, each timed.
//!
//!   cargo run --release -p benches --bin engine-memory -- --communities 10 --members 100000
//!
//! `--rows` also prints how many rows of each table every flush emitted (what the processor would
//! write to ClickHouse for that partition).
//!
//! `--timezone Asia/Shanghai` gives every community that zone (default UTC, where a local day is
//! a division; any other zone costs a time-zone lookup per conversion).

use benches::{community_records, live_bytes, Counting};
use engine::{CommunityConfig, Configs, Engine};
use schemas::{parse_event_view, Limits};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(default)
}

fn main() {
    let communities = arg("--communities", 10);
    let members = arg("--members", 100_000);
    let limits = Limits::default();
    let show_rows = std::env::args().any(|a| a == "--rows");
    let configs = match std::env::args().skip_while(|a| a != "--timezone").nth(1) {
        Some(tz) => Configs {
            default: CommunityConfig { timezone: tz.parse().expect("an IANA time zone"), ..CommunityConfig::default() },
            ..Configs::default()
        },
        None => Configs::default(),
    };
    let mut engine = Engine::new(configs.clone());
    let (mut events, mut busy) = (0usize, std::time::Duration::ZERO);
    // decode + apply, flush, decode alone
    let mut phases = [std::time::Duration::ZERO; 3];
    let baseline = live_bytes();
    for c in 0..communities {
        let records = community_records(&format!("c{c}"), c as u64, members);
        // Decoding alone, to split the time below (not counted in events/s).
        let started = Instant::now();
        let checksum: i64 =
            records.iter().map(|r| parse_event_view(r, None, &limits).expect("valid").view().ts_ms).sum();
        std::hint::black_box(checksum);
        phases[2] += started.elapsed();
        let started = Instant::now();
        for r in &records {
            engine.apply_view(&parse_event_view(r, None, &limits).expect("valid").view());
        }
        let applied = started.elapsed();
        let out = engine.flush(&|_| None);
        let flushed = started.elapsed() - applied;
        busy += started.elapsed();
        // After the timing: counting and printing are not the flush's cost.
        if show_rows {
            let zeros = out.retention.iter().filter(|r| r.members == 0).count();
            println!(
                "rows of that flush: cohorts {}, retention {} ({} of them zero), member facts {}, engagement {}, lifecycle {}, churn {}",
                out.cohorts.len(),
                out.retention.len(),
                zeros,
                out.members.len(),
                out.engagement.len(),
                out.lifecycle.len(),
                out.churn.len()
            );
        }
        phases[0] += applied;
        phases[1] += flushed;
        events += records.len();
        drop(out);
        drop(records);
        let live = live_bytes() - baseline;
        println!(
            "after {:>8} members: {:>10} events, {:>8.0} events/s (decode+apply {:.2} s, flush {:.2} s; decoding alone {:.2} s), state {:>6} MiB, {:>5} bytes/member",
            (c + 1) * members,
            events,
            events as f64 / busy.as_secs_f64(),
            phases[0].as_secs_f64(),
            phases[1].as_secs_f64(),
            phases[2].as_secs_f64(),
            live / (1 << 20),
            live / ((c + 1) * members) as isize
        );
    }

    // What a restarted processor does with a checkpoint of this partition.
    let started = Instant::now();
    let bytes = engine.snapshot();
    let snapshot_s = started.elapsed().as_secs_f64();
    let path = std::env::temp_dir().join(format!("engine-memory-{}.ckpt", std::process::id()));
    let started = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).expect("temp file");
        f.write_all(&bytes).expect("write");
        f.sync_all().expect("sync");
    }
    let write_s = started.elapsed().as_secs_f64();
    let size = bytes.len();
    drop(bytes);
    drop(engine);
    let started = Instant::now();
    let bytes = std::fs::read(&path).expect("read back");
    let mut restored = Engine::restore(&configs, &bytes).expect("restores");
    let restore_s = started.elapsed().as_secs_f64();
    drop(bytes);
    let _ = std::fs::remove_file(&path);
    assert!(restored.flush(&|_| None).is_empty(), "a restored engine has nothing new to write");
    println!(
        "checkpoint of {} members: {} MiB ({} bytes/member); snapshot {:.2} s, write+fsync {:.2} s, read+restore {:.2} s",
        communities * members,
        size >> 20,
        size / (communities * members),
        snapshot_s,
        write_s,
        restore_s
    );
}
