//! ClickHouse killed mid-run: ingest keeps accepting, the processor stops being ready and retries
//! with backoff, then catches up when ClickHouse is back, and the tables equal the reference.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use reqwest::blocking::Client;
use serde_json::Value;
use std::time::Duration;

fn send(client: &Client, stack: &Stack, events: &[schemas::Event]) {
    for chunk in events.chunks(1000) {
        let body: String = chunk.iter().map(|e| e.to_json().to_string() + "\n").collect();
        let resp = client
            .post(format!("{}/v1/events", stack.ingest_url))
            .bearer_auth(WRITE_KEY)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "ingest keeps accepting while ClickHouse is down");
    }
}

fn processed(client: &Client, stack: &Stack) -> Option<u64> {
    let url = format!("{}/v1/communities/e2e/freshness", stack.query_url);
    let v: Value = client.get(url).bearer_auth(READ_KEY).send().ok()?.json().ok()?;
    v["events_processed"].as_u64()
}

#[test]
fn clickhouse_outage_pauses_the_processor_and_loses_nothing() {
    let mut stack = Stack::start("chdown", 3).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 11,
        members: 200,
        groups: 2,
        days: 60,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let (first, second) = events.split_at(events.len() / 2);
    send(&client, &stack, first);
    wait_for("first half processed", Duration::from_secs(120), || {
        processed(&client, &stack) == Some(first.len() as u64)
    })
    .unwrap();

    stack.kill_clickhouse();
    send(&client, &stack, second);
    let readyz = format!("{}/readyz", stack.processor_url);
    let processor_ready = move |client: &Client| client.get(&readyz).send().is_ok_and(|r| r.status() == 200);
    wait_for("processor not ready while ClickHouse is down", Duration::from_secs(30), || !processor_ready(&client))
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let metrics = client.get(format!("{}/metrics", stack.processor_url)).send().unwrap().text().unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("processor_clickhouse_write_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "write failures are counted: {failures}");

    stack.restart_clickhouse().unwrap();
    wait_for("everything processed after the outage", Duration::from_secs(120), || {
        processed(&client, &stack) == Some(events.len() as u64)
    })
    .unwrap();
    // Counts become visible a few inserts before the batch (and readiness) completes.
    wait_for("processor ready again", Duration::from_secs(30), || processor_ready(&client)).unwrap();

    let r = reference::compute(&events, "e2e", &reference::Params::default());
    for ((scope, g, mode, cohort), expected) in r.retention.iter().filter(|k| k.0 .1 == "week") {
        let group = if scope.is_empty() { String::new() } else { format!("&group={scope}") };
        let url = format!("{}/v1/communities/e2e/retention?granularity={g}&mode={mode}{group}", stack.query_url);
        let v: Value = client.get(url).bearer_auth(READ_KEY).send().unwrap().json().unwrap();
        let row = v["cohorts"].as_array().unwrap().iter().find(|c| c["cohort"] == cohort.to_string()).unwrap();
        let got: Vec<u64> = row["values"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(&got, expected, "retention {scope:?} {g} {mode} {cohort}");
    }
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<usize>().unwrap(), events.len(), "every event archived once");
}
