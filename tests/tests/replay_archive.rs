//! A replay's archive (`events_raw` of the new generation): copied by ClickHouse from the served
//! generation where that one's progress reaches, encoded by the replay itself above it and for
//! events whose time the copy leaves out (`COPY_TS_MIN_MS`). Generation 0 archives the first
//! part of the log, then stops; the rest reaches only the log. The replay, with the time zone
//! changed from UTC to Asia/Shanghai, must leave every distinct event archived once, with
//! `local_day` and `participation` as the processor computes them for the new configuration.
//! The served archive is out of reach when the copy starts: the copy is retried until it is back.

use e2e_tests::{load, Stack};
use reqwest::blocking::Client;
use schemas::Event;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

fn events(seed: u64, prefix: &str) -> Vec<Event> {
    let spec =
        generator::Spec { community_id: "e2e".into(), seed, members: 150, groups: 2, days: 30, ..Default::default() };
    let mut events = generator::generate(&spec);
    for e in &mut events {
        e.event_id = format!("{prefix}-{}", e.event_id);
    }
    events
}

/// `local_day` (days since 1970-01-01, clamped to `Date`'s range) and `participation` as the
/// processor writes them, computed here with chrono-tz.
fn expected_row(e: &Event, tz: chrono_tz::Tz, participation: &[schemas::EventType]) -> (i64, u8) {
    let date = chrono::DateTime::from_timestamp_millis(e.ts_ms).unwrap().with_timezone(&tz).date_naive();
    let day = (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days().clamp(0, 65535);
    (day, (!e.is_bot && participation.contains(&e.event_type)) as u8)
}

/// `event_id → (local_day, participation)` of a database's archive, each event once (`FINAL`).
fn archive(stack: &Stack, db: &str) -> BTreeMap<String, (i64, u8)> {
    let tsv = stack
        .sql(&format!(
            "SELECT event_id, toUInt16(local_day), participation FROM {db}.events_raw FINAL \
             WHERE community_id = 'e2e' FORMAT TSV"
        ))
        .unwrap();
    let mut out = BTreeMap::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(out.insert(f[0].to_string(), (f[1].parse().unwrap(), f[2].parse().unwrap())).is_none(), "{line}");
    }
    out
}

#[test]
fn replay_copies_the_served_archive_and_archives_the_rest_itself() {
    let mut stack = Stack::start("replay-archive", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut first = events(11, "a");
    // Before the copy's time range: the replay must encode these rows itself. At 20:00 UTC the
    // date in Shanghai is already the next day.
    for (i, ts) in ["1970-01-01T12:00:00.000Z", "1970-01-01T20:00:00.000Z"].into_iter().enumerate() {
        let mut e = first[0].clone();
        e.event_id = format!("early-{i}");
        e.ts_ms = schemas::validate::parse_ts(ts).unwrap();
        first.push(e);
    }
    let sent: Vec<Value> = first.iter().map(|e| e.to_json()).collect();
    load::paced(&client, &stack.ingest_url, sent, Duration::ZERO).join().unwrap();
    load::wait_counted(&client, &stack, "e2e", load::distinct(&first), Duration::from_secs(120));
    // Generation 0 stops: what follows is only in the log, not in its archive.
    stack.stop_processor();
    let second = events(12, "b");
    let sent: Vec<Value> = second.iter().map(|e| e.to_json()).collect();
    load::paced(&client, &stack.ingest_url, sent, Duration::ZERO).join().unwrap();
    let base = stack.database.clone();
    let served = archive(&stack, &base);
    assert_eq!(served.len() as u64, load::distinct(&first), "generation 0 archived the first part only");

    // The served archive is out of reach as the replay starts (renamed away, as in an outage of
    // the node that holds it): the copy fails, and is sent again until the table is back.
    stack.sql(&format!("RENAME TABLE {base}.events_raw TO {base}.events_raw_away")).unwrap();
    let log_path = stack.dir.join("replay-archive.log");
    let mut replay = stack
        .tool("processor")
        .unwrap()
        .args(["replay", "--generation", "1"])
        .env("PROCESSOR_METRICS__DEFAULT__TIMEZONE", "Asia/Shanghai")
        .env("PROCESSOR_FLUSH__BACKOFF_MS", "100")
        .env("PROCESSOR_FLUSH__MAX_BACKOFF_MS", "400")
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    e2e_tests::wait_for("two failed attempts at the archive copy", Duration::from_secs(60), || {
        log().matches("archive copy failed").count() >= 2
    })
    .unwrap();
    assert!(replay.try_wait().unwrap().is_none(), "the replay ended while its copy could not run: {}", log());
    stack.sql(&format!("RENAME TABLE {base}.events_raw_away TO {base}.events_raw")).unwrap();
    let status = replay.wait().unwrap();
    let log = log();
    assert!(status.success(), "replay failed: {log}");
    let copied = log.lines().find(|l| l.contains("archive copied from the served generation"));
    println!("{}", copied.unwrap_or_else(|| panic!("the replay copied no archive: {log}")));

    let (utc, shanghai) = (chrono_tz::UTC, "Asia/Shanghai".parse().unwrap());
    let participation = reference::Params::default().participation;
    let mut expected = BTreeMap::new();
    for e in first.iter().chain(&second) {
        expected.entry(e.event_id.clone()).or_insert_with(|| expected_row(e, shanghai, &participation));
    }
    let rebuilt = archive(&stack, &format!("{base}_g1"));
    assert_eq!(rebuilt.len(), expected.len(), "every distinct event archived once");
    assert_eq!(rebuilt, expected, "local_day and participation as the processor computes them in Asia/Shanghai");
    // The check can tell a copy that kept generation 0's UTC days from one that recomputed them.
    let moved = first.iter().filter(|e| expected_row(e, utc, &participation) != expected[&e.event_id]).count();
    assert!(moved > 10, "only {moved} of the copied events fall on another day in Shanghai");
    assert_eq!(rebuilt["early-1"].0, 1, "an event before the copy's range, encoded by the replay");
    println!("{} events archived by the replay, {moved} copied ones on another day than in UTC", rebuilt.len());
}
