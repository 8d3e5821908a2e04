//! Scale-out: two processor instances share the topic's partitions through the consumer group.
//! A shuffled, duplicated load comes in while a second instance joins (a rebalance) and then the
//! first is SIGKILLed for good (its partitions move to the survivor once its session expires).
//! Afterwards every cell of every endpoint equals the reference, as with one instance, and the
//! archive holds each event once.
//!
//! Dynamic members only (no `kafka.instance_id`): Tansu 0.6 never expires a static member (it
//! looks for missed heartbeats only when a member without an instance id calls), so a static
//! instance killed for good keeps its partitions there, unread (docs/operations.md, Scaling).

use e2e_tests::{load, wait_for, Stack, READ_KEY};
use reqwest::blocking::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The processors' session in these tests (`Stack` gives them 6 s).
const SESSION: Duration = Duration::from_secs(6);

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
    let loader =
        load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 92), Duration::from_secs(24));
    std::thread::sleep(Duration::from_secs(5));
    let second = stack.start_extra_processor().unwrap();
    // Both instances hold partitions before the first one dies.
    wait_for("the second instance takes up partitions", Duration::from_secs(60), || {
        stack.partitions_taken_up(&second) > 0
    })
    .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!loader.is_finished(), "the load ended before the kill; slow it down");
    let taken_before_kill = stack.partitions_taken_up(&second);
    stack.kill_named("processor-0");
    let killed = Instant::now();
    wait_for("the survivor holds every partition", SESSION * 5, || {
        stack.partitions_taken_up(&second) > taken_before_kill && stack.assigned_partitions(&second).len() == 4
    })
    .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
    let takeover = killed.elapsed();
    loader.join().unwrap();
    load::wait_counted(&client, &stack, "e2e", load::distinct(&events), Duration::from_secs(180));
    // The instance that did not see the newest event learns the community's `as_of` from what the
    // other wrote, at its next progress round (every 2 s), then rewrites its cells up to it.
    std::thread::sleep(Duration::from_secs(6));
    let mut get = |path: &str| {
        let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let cells = e2e_tests::compare::all_endpoints(&mut get, &events, "e2e", &reference::Params::default());
    println!(
        "two instances, one joined and one killed: {cells} cells equal to the reference; the survivor took over {takeover:?} after the kill ({SESSION:?} session) and took up partitions {} times",
        stack.partitions_taken_up(&second)
    );
    assert!(cells > 10_000);
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), load::distinct(&events));
}
