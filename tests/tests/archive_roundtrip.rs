//! Archive and backfill: the archive of one pipeline exported to Parquet (one file per community
//! and month) and imported into an empty pipeline through its ingest API gives the same archive
//! and the same tables; NDJSON history (gzip too) goes through the same validation.

use e2e_tests::{wait_for, Stack, READ_KEY, WRITE_KEY};
use reqwest::blocking::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

fn wait_counted(client: &Client, stack: &Stack, community: &str, expected: u64) {
    let url = format!("{}/v1/communities/{community}/freshness", stack.query_url);
    wait_for(&format!("{community}: {expected} events"), Duration::from_secs(180), || {
        let v: Value = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        v["events_processed"].as_u64() == Some(expected)
    })
    .unwrap();
}

fn archive_rows(stack: &Stack) -> String {
    stack
        .sql(
            "SELECT community_id, event_id, type, group_id, member_id, ts_ms, platform, is_bot, props \
             FROM events_raw FINAL ORDER BY community_id, event_id FORMAT TSV",
        )
        .unwrap()
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn export_then_import_reproduces_the_archive_and_the_tables() {
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let source = Stack::start("archive-a", 2).unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 5,
        members: 300,
        groups: 2,
        days: 75,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    for chunk in events.chunks(1000) {
        let body: Vec<Value> = chunk.iter().map(|e| e.to_json()).collect();
        let r =
            client.post(format!("{}/v1/events", source.ingest_url)).bearer_auth(WRITE_KEY).json(&body).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    let distinct = events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64;
    wait_counted(&client, &source, "e2e", distinct);

    let dir = source.dir.join("export");
    let out = run(source.tool("archive").unwrap().args(["export", "--out", dir.to_str().unwrap()]));
    assert!(out.contains(&format!("exported {distinct} events of 1 communities")), "{out}");
    let months = std::fs::read_dir(dir.join("community=e2e")).unwrap().count();
    assert!(months >= 3, "one file per month: {out}");

    // The polars recomputation from the Parquet files agrees with the stored tables.
    let out = run(source.tool("reconcile").unwrap().args(["--parquet", dir.to_str().unwrap()]));
    assert!(out.contains(&format!("e2e: {distinct} events")) && out.contains(" 0 differences"), "{out}");

    let target = Stack::start("archive-b", 3).unwrap();
    let started = Instant::now();
    let out = run(target.tool("archive").unwrap().args([
        "import",
        "--ingest",
        &target.ingest_url,
        "--key",
        WRITE_KEY,
        dir.to_str().unwrap(),
    ]));
    let took = started.elapsed();
    assert!(out.contains(&format!("imported {distinct} events, rejected 0")), "{out}");
    println!(
        "import: {distinct} events in {:.2} s ({:.0} events/s)",
        took.as_secs_f64(),
        distinct as f64 / took.as_secs_f64()
    );
    wait_counted(&client, &target, "e2e", distinct);
    assert_eq!(archive_rows(&source), archive_rows(&target), "the archive round-trips exactly");
    for path in ["retention?granularity=week&mode=membership", "churn?granularity=month", "engagement"] {
        let get = |s: &Stack| -> Value {
            client
                .get(format!("{}/v1/communities/e2e/{path}", s.query_url))
                .bearer_auth(READ_KEY)
                .send()
                .unwrap()
                .json()
                .unwrap()
        };
        assert_eq!(get(&source), get(&target), "{path}");
    }

    // NDJSON history, gzip-compressed, with one line that breaks a rule.
    let mut lines: Vec<String> = generator::generate(&generator::Spec {
        community_id: "e2e-other".into(),
        seed: 9,
        members: 40,
        days: 30,
        ..Default::default()
    })
    .iter()
    .map(|e| e.to_json().to_string())
    .collect();
    let good = lines.len() as u64;
    lines.push(r#"{"event_id":"x","type":"message_posted","community_id":"e2e-other","group_id":"g","member_id":"m","ts":"yesterday"}"#.into());
    let file = target.dir.join("history.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&file).unwrap(), flate2::Compression::fast());
    gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    gz.finish().unwrap();
    let out = run(target.tool("archive").unwrap().args([
        "import",
        "--ingest",
        &target.ingest_url,
        "--key",
        WRITE_KEY,
        file.to_str().unwrap(),
    ]));
    assert!(out.contains(&format!("imported {good} events, rejected 1")), "{out}");
    assert!(out.contains("ts"), "the rejection names the field: {out}");
}
