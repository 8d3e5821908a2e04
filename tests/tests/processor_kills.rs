//! Effectively-once output under crashes: a generated load (shuffled, 10% duplicated) goes in
//! through ingest while the processor is SIGKILLed at random moments, 20 times, and restarted
//! after a random pause; kills land mid-batch, mid-insert, between the insert and the progress
//! row, and during catch-up. Afterwards every cell of every endpoint equals the reference, and
//! the archive holds each event once.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const KILLS: usize = 20;

#[test]
fn twenty_sigkills_during_load_lose_nothing_and_count_nothing_twice() {
    let mut stack = Stack::start("kills", 4).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 77,
        members: 500,
        groups: 3,
        days: 90,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut sent: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    let dups: Vec<Value> = sent.iter().filter(|_| rng.random_bool(0.1)).cloned().collect();
    sent.extend(dups);
    sent.shuffle(&mut rng);

    // The load runs in its own thread, in small batches with pauses, so it spans the kills.
    let ingest = stack.ingest_url.clone();
    let loader = {
        let client = client.clone();
        std::thread::spawn(move || {
            // Paced to last longer than the kills (some 20 s), so that they land during the load.
            let chunks = sent.len().div_ceil(100);
            let pause = 25_000 / chunks as u64;
            let mut rng = ChaCha8Rng::seed_from_u64(21);
            for chunk in sent.chunks(100) {
                let body: String = chunk.iter().map(|v| v.to_string() + "\n").collect();
                let resp = client
                    .post(format!("{ingest}/v1/events"))
                    .bearer_auth(WRITE_KEY)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .unwrap();
                assert_eq!(resp.status(), 200);
                std::thread::sleep(Duration::from_millis(rng.random_range(pause / 2..pause * 3 / 2 + 1)));
            }
        })
    };
    let mut during_load = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..1200)));
        during_load += !loader.is_finished() as usize;
        stack.kill_processor();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        stack.start_processor().unwrap();
    }
    assert!(during_load >= KILLS / 2, "only {during_load} kills landed while events were coming in");
    loader.join().unwrap();

    let expected = events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64;
    let url = format!("{}/v1/communities/e2e/freshness", stack.query_url);
    let mut last = Value::Null;
    wait_for("every event counted after the kills", Duration::from_secs(240), || {
        last = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        last["events_processed"].as_u64() == Some(expected)
    })
    .unwrap_or_else(|e| panic!("{e}; last {last}; logs in {}", stack.dir.display()));

    let mut get = |path: &str| {
        let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let cells = e2e_tests::compare::all_endpoints(&mut get, &events, "e2e", &reference::Params::default());
    println!("{KILLS} SIGKILLs ({during_load} during the load): {cells} cells equal to the reference");
    assert!(cells > 10_000);
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);
}
