//! With the broker gone, ingest answers 503 with Retry-After and reports nothing accepted; its
//! readiness follows the broker.

use e2e_tests::{Stack, WRITE_KEY};
use reqwest::blocking::Client;
use serde_json::json;
use std::time::{Duration, Instant};

fn post(client: &Client, stack: &Stack, id: &str) -> reqwest::blocking::Response {
    let body = json!([{"event_id": id, "type": "message_posted", "community_id": "e2e", "group_id": "g",
                       "member_id": "m", "ts": "2024-01-01T00:00:00Z"}]);
    client.post(format!("{}/v1/events", stack.ingest_url)).bearer_auth(WRITE_KEY).json(&body).send().unwrap()
}

#[test]
fn broker_down_answers_503_and_accepts_nothing() {
    let mut stack = Stack::start("outage", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let resp = post(&client, &stack, "before");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().unwrap()["accepted"], 1);

    stack.kill_broker();
    let started = Instant::now();
    let resp = post(&client, &stack, "during");
    assert_eq!(resp.status(), 503, "with the broker down");
    assert_eq!(resp.headers().get("retry-after").unwrap(), "2");
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body.get("accepted").is_none(), "nothing reported accepted: {body}");
    assert!(started.elapsed() < Duration::from_secs(15), "answered within the producer's timeout");

    // Readiness follows the broker.
    let ready = e2e_tests::wait_for("ingest not ready", Duration::from_secs(20), || {
        client.get(format!("{}/readyz", stack.ingest_url)).send().is_ok_and(|r| r.status() == 503)
    });
    ready.unwrap();
    let metrics = client.get(format!("{}/metrics", stack.ingest_url)).send().unwrap().text().unwrap();
    assert!(metrics.contains("ingest_events_accepted_total 1"), "{metrics}");
}
