//! Scale-out: two processor instances share the topic's partitions through the consumer group.
//! A shuffled, duplicated load comes in while a second instance joins (a rebalance) and then the
//! first is SIGKILLed (its partitions move to the survivor once its session expires). Afterwards
//! every cell of every endpoint equals the reference, as with one instance, and the archive holds
//! each event once.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn two_instances_with_a_join_and_a_kill_give_the_tables_of_one() {
    let mut stack = Stack::start("scale", 4).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 91,
        members: 400,
        groups: 3,
        days: 90,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let mut rng = ChaCha8Rng::seed_from_u64(92);
    let mut sent: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    let dups: Vec<Value> = sent.iter().filter(|_| rng.random_bool(0.1)).cloned().collect();
    sent.extend(dups);
    sent.shuffle(&mut rng);

    let ingest = stack.ingest_url.clone();
    let loader = {
        let client = client.clone();
        std::thread::spawn(move || {
            let chunks = sent.len().div_ceil(100);
            let pause = 24_000 / chunks as u64;
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
                std::thread::sleep(Duration::from_millis(pause));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(5));
    let second = stack.start_extra_processor().unwrap();
    // Both instances hold partitions before the first one dies.
    wait_for("the second instance takes up partitions", Duration::from_secs(60), || {
        stack.partitions_taken_up(&second) > 0
    })
    .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!loader.is_finished(), "the load ended before the kill; slow it down");
    stack.kill_named("processor-0");
    let taken_before_kill = stack.partitions_taken_up(&second);
    loader.join().unwrap();

    let expected = events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64;
    let url = format!("{}/v1/communities/e2e/freshness", stack.query_url);
    let mut last = Value::Null;
    wait_for("every event counted", Duration::from_secs(180), || {
        last = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        last["events_processed"].as_u64() == Some(expected)
    })
    .unwrap_or_else(|e| panic!("{e}; last {last}; logs in {}", stack.dir.display()));
    // The instance that did not see the newest event learns the community's `as_of` from what the
    // other wrote, at its next progress round (every 2 s), then rewrites its cells up to it.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        stack.partitions_taken_up(&second) > taken_before_kill,
        "the survivor never took over the killed instance's partitions"
    );
    let mut get = |path: &str| {
        let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let cells = e2e_tests::compare::all_endpoints(&mut get, &events, "e2e", &reference::Params::default());
    println!(
        "two instances, one joined and one killed: {cells} cells equal to the reference; the survivor took up partitions {} times",
        stack.partitions_taken_up(&second)
    );
    assert!(cells > 10_000);
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);
}
