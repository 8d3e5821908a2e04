//! What the fault tests send and wait for: a generated community shuffled with duplicates, sent
//! in small batches paced over a given time (retrying refused batches, as clients should), and
//! the wait until the query API reports every distinct event counted.

use crate::{wait_for, Stack, READ_KEY, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use schemas::Event;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// The events as JSON, about 10% of them twice, in a seeded random order.
pub fn shuffled_with_duplicates(events: &[Event], seed: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sent: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    let dups: Vec<Value> = sent.iter().filter(|_| rng.random_bool(0.1)).cloned().collect();
    sent.extend(dups);
    sent.shuffle(&mut rng);
    sent
}

/// Distinct event ids: what `/freshness` reports once everything is counted.
pub fn distinct(events: &[Event]) -> u64 {
    events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64
}

/// Sends `records` as NDJSON batches of 100 from a thread, spread over about `over` with jittered
/// pauses; a batch refused (503, 429, or no answer) is sent again after 500 ms. The thread
/// returns how many sends were refused.
pub fn paced(client: &Client, ingest_url: &str, records: Vec<Value>, over: Duration) -> std::thread::JoinHandle<usize> {
    let (client, ingest) = (client.clone(), ingest_url.to_owned());
    std::thread::spawn(move || {
        let chunks = records.len().div_ceil(100).max(1);
        let pause = (over.as_millis() as u64 / chunks as u64).max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut refused = 0;
        for chunk in records.chunks(100) {
            let body: String = chunk.iter().map(|v| v.to_string() + "\n").collect();
            loop {
                let resp = client
                    .post(format!("{ingest}/v1/events"))
                    .bearer_auth(WRITE_KEY)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send();
                match resp.map(|r| r.status().as_u16()) {
                    Ok(200) => break,
                    Ok(503) | Ok(429) | Err(_) => {
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Ok(other) => panic!("ingest answered {other}"),
                }
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(pause / 2..pause * 3 / 2 + 1)));
        }
        refused
    })
}

/// Waits until `/freshness` counts `expected` events for `community`; panics with the last answer
/// and where the logs are.
pub fn wait_counted(client: &Client, stack: &Stack, community: &str, expected: u64, timeout: Duration) {
    let url = format!("{}/v1/communities/{community}/freshness", stack.query_url);
    let mut last = Value::Null;
    wait_for("every event counted", timeout, || {
        last = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        last["events_processed"].as_u64() == Some(expected)
    })
    .unwrap_or_else(|e| panic!("{e}; last {last}; logs in {}", stack.dir.display()));
}
