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

use e2e_tests::{load, Stack, READ_KEY};
use reqwest::blocking::Client;
use serde_json::Value;
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
    let loader =
        load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 32), Duration::from_secs(16));
    std::thread::sleep(Duration::from_secs(5));
    assert!(!loader.is_finished(), "the load ended before the broker was killed");
    stack.kill_broker();
    std::thread::sleep(Duration::from_secs(4));
    stack.kill_ingest();
    stack.restart_broker().unwrap();
    stack.start_ingest().unwrap();
    let refused = loader.join().unwrap();
    assert!(refused > 0, "no request was refused while the broker was down");
    let expected = load::distinct(&events);
    load::wait_counted(&client, &stack, "e2e", expected, Duration::from_secs(180));
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
