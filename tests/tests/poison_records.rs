//! Records on the topic that are not valid events (written by another producer) go to the
//! dead-letter topic with the reason and their source partition/offset, are counted, and never
//! stop the processor.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::Duration;

/// A whole event but for a lone UTF-16 surrogate in a free-form prop: the typed decoder once
/// skipped over it and the archive row's re-encoding then panicked, stopping the processor.
const SURROGATE: &str = r#"{"event_id":"bad-utf16","type":"checkin","community_id":"e2e","group_id":"g","member_id":"m2","ts":"2024-01-01T00:00:00Z","props":{"note":"\ud800"}}"#;

#[test]
fn poison_records_are_dead_lettered_and_processing_goes_on() {
    let stack = Stack::start("poison", 2).expect("stack starts");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &stack.kafka).create().unwrap();
    rt.block_on(async {
        for (key, payload) in
            [("k1", "not json at all"), ("k2", r#"{"event_id":"x","type":"checkin"}"#), ("k3", SURROGATE)]
        {
            let record = FutureRecord::to("engagement-events").key(key).payload(payload);
            producer.send(record, Duration::from_secs(10)).await.expect("poison record written");
        }
    });

    let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let good = json!([{"event_id": "ok-1", "type": "member_joined", "community_id": "e2e", "group_id": "g",
                       "member_id": "m", "ts": "2024-01-01T00:00:00Z"}]);
    let resp =
        client.post(format!("{}/v1/events", stack.ingest_url)).bearer_auth(WRITE_KEY).json(&good).send().unwrap();
    assert_eq!(resp.status(), 200);
    let fresh = format!("{}/v1/communities/e2e/freshness", stack.query_url);
    wait_for("the valid event processed after the poison ones", Duration::from_secs(60), || {
        client
            .get(&fresh)
            .bearer_auth(READ_KEY)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["events_processed"] == 1)
    })
    .unwrap();

    let metrics = client.get(format!("{}/metrics", stack.processor_url)).send().unwrap().text().unwrap();
    let invalid: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("processor_invalid_records_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(invalid, 3, "{metrics}");

    // Read the dead-letter topic from the beginning.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("group.id", "poison-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some("engagement-events-dlq"), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset("engagement-events-dlq", p.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut letters: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while letters.len() < 3 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            letters.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
        }
    }
    letters.sort_by_key(|l| l["payload"].as_str().unwrap().to_owned());
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0]["payload"], "not json at all");
    assert!(letters[0]["reason"].as_str().unwrap().starts_with("event: malformed JSON"), "{letters:?}");
    assert_eq!(letters[1]["payload"], SURROGATE);
    assert!(letters[1]["reason"].as_str().unwrap().starts_with("event: malformed JSON"), "{letters:?}");
    assert_eq!(letters[2]["payload"], r#"{"event_id":"x","type":"checkin"}"#);
    assert_eq!(letters[2]["reason"], "community_id: required, missing");
    for l in &letters {
        assert!(l["source_partition"].is_i64() && l["source_offset"].is_i64(), "{l}");
    }
}
