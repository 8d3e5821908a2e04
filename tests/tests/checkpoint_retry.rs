//! A checkpoint that could not be saved is saved again once it can be, also for a partition
//! that consumes nothing more; a restart then takes every partition up from its checkpoint.
//!
//! The checkpoint directory is at first a symbolic link to a directory that does not exist yet
//! (a volume not mounted, say): reads find no checkpoint, every save fails. The events all
//! arrive before the directory is made, and none after.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::Duration;

const PARTITIONS: usize = 2;

/// The processor's counter of checkpoint saves with this result (`ok`, `failed`).
fn checkpoint_writes(client: &Client, stack: &Stack, result: &str) -> u64 {
    let metrics = client.get(format!("{}/metrics", stack.processor_url)).send().unwrap().text().unwrap();
    let line = format!("processor_checkpoint_writes_total{{result=\"{result}\"}}");
    metrics.lines().filter(|l| l.starts_with(&line)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[test]
fn a_failed_checkpoint_is_saved_again_without_new_records() {
    let dir = std::env::temp_dir().join(format!("e2e-checkpoint-retry-{}", std::process::id()));
    let target = dir.with_extension("target");
    let _ = std::fs::remove_file(&dir);
    let _ = std::fs::remove_dir_all(&target);
    std::os::unix::fs::symlink(&target, &dir).unwrap();
    let dir_env = dir.display().to_string();
    let mut stack = Stack::start_with("ckpt_retry", PARTITIONS as u32, &[("PROCESSOR_CHECKPOINT__DIR", &dir_env)])
        .expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Members spread over both partitions.
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"event_id": format!("j{i}"), "type": "member_joined", "community_id": format!("e2e-{}", i % 8),
                   "group_id": "g", "member_id": format!("m{i}"), "ts": "2024-01-01T00:00:00Z"})
        })
        .collect();
    // One request, and so one Kafka batch, each: Tansu 0.6 answers a partition's end as the
    // start of its last batch plus one (docs/performance.md), and a checkpoint past the end the
    // broker answers is taken for one of a recreated topic. Apache Kafka answers the true end.
    for event in &events {
        let resp = client
            .post(format!("{}/v1/events", stack.ingest_url))
            .bearer_auth(WRITE_KEY)
            .json(&[event])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let query_url = stack.query_url.clone();
    let processed = || -> u64 {
        (0..8)
            .map(|c| {
                client
                    .get(format!("{query_url}/v1/communities/e2e-{c}/freshness"))
                    .bearer_auth(READ_KEY)
                    .send()
                    .ok()
                    .and_then(|r| r.json::<Value>().ok())
                    .and_then(|v| v["events_processed"].as_u64())
                    .unwrap_or(0)
            })
            .sum()
    };
    wait_for("every event counted", Duration::from_secs(60), || processed() == 40).unwrap();
    wait_for("a save of every partition failed", Duration::from_secs(30), || {
        checkpoint_writes(&client, &stack, "failed") >= PARTITIONS as u64
    })
    .unwrap();
    assert_eq!(checkpoint_writes(&client, &stack, "ok"), 0);

    // Nothing more is sent: the partitions are idle from here.
    std::fs::create_dir(&target).unwrap();
    let files = || {
        (0..PARTITIONS).filter(|p| dir.join("engagement-events").join(format!("partition-{p}.ckpt")).exists()).count()
    };
    wait_for("every partition's checkpoint saved", Duration::from_secs(30), || files() == PARTITIONS)
        .unwrap_or_else(|e| panic!("{e}; {} of {PARTITIONS} saved; logs in {}", files(), stack.dir.display()));
    assert!(checkpoint_writes(&client, &stack, "ok") >= PARTITIONS as u64);

    // A crash now loses no checkpoint: the next processor takes both partitions up from theirs.
    stack.kill_processor();
    stack.start_processor().unwrap();
    wait_for("the restarted processor takes its partitions up", Duration::from_secs(60), || {
        stack.partitions_taken_up("processor-1") == PARTITIONS
    })
    .unwrap();
    // The first processor found no checkpoint: every start from one is the restarted one's.
    let (from_checkpoint, _) = stack.partition_starts();
    assert_eq!(from_checkpoint, PARTITIONS, "logs in {}", stack.dir.display());
    assert_eq!(processed(), 40);
    let _ = std::fs::remove_file(&dir);
    let _ = std::fs::remove_dir_all(&target);
}
