//! A broker that keeps its data (Tansu built with its SQLite storage engine) is SIGKILLed in the
//! middle of a load and started again on the same storage. Ingest answers 503 with `Retry-After`
//! meanwhile and the client retries those requests (as documented); the processor reconnects by
//! itself. Afterwards every cell of every endpoint equals the reference and the archive holds each
//! event once: nothing acknowledged was lost, nothing counted twice.
//!
//! Ingest is restarted while the broker is down: Tansu 0.6's SQLite engine panics on the first
//! produce of an idempotent producer it knew before its restart (`idempotent_message_check`:
//! "more or less than one row") and then refuses every request, so a new producer id is needed.
//! Apache Kafka keeps producer state across restarts; see docs/operations.md.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_durable_broker_restarted_mid_load_loses_nothing() {
    let mut stack = Stack::start_durable("brestart", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 31,
        members: 300,
        groups: 3,
        days: 60,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    let mut sent: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    let dups: Vec<Value> = sent.iter().filter(|_| rng.random_bool(0.1)).cloned().collect();
    sent.extend(dups);
    sent.shuffle(&mut rng);

    let refused = Arc::new(AtomicUsize::new(0));
    let ingest = stack.ingest_url.clone();
    let loader = {
        let (client, refused) = (client.clone(), refused.clone());
        std::thread::spawn(move || {
            let chunks = sent.len().div_ceil(100);
            let pause = 16_000 / chunks as u64;
            for chunk in sent.chunks(100) {
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
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Ok(other) => panic!("unexpected status {other}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(pause));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(5));
    assert!(!loader.is_finished(), "the load ended before the broker was killed");
    stack.kill_broker();
    std::thread::sleep(Duration::from_secs(4));
    stack.kill_ingest();
    stack.restart_broker().unwrap();
    stack.start_ingest().unwrap();
    loader.join().unwrap();
    let refused = refused.load(Ordering::Relaxed);
    assert!(refused > 0, "no request was refused while the broker was down");

    let expected = events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64;
    let url = format!("{}/v1/communities/e2e/freshness", stack.query_url);
    let mut last = Value::Null;
    wait_for("every event counted after the broker restart", Duration::from_secs(180), || {
        last = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        last["events_processed"].as_u64() == Some(expected)
    })
    .unwrap_or_else(|e| panic!("{e}; last {last}; logs in {}", stack.dir.display()));
    let mut get = |path: &str| {
        let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let cells = e2e_tests::compare::all_endpoints(&mut get, &events, "e2e", &reference::Params::default());
    println!(
        "broker restarted mid-load ({refused} requests refused and retried): {cells} cells equal to the reference"
    );
    assert!(cells > 10_000);
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);
}
