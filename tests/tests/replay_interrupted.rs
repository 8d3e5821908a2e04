//! A replay stopped part way, by SIGTERM and then by SIGKILL, and run again: it resumes from the
//! progress it stored, and the generation it finishes is the one an uninterrupted replay builds
//! (equal to the reference on every endpoint, every event archived once). Its rounds are small
//! here, so that the stops fall between stored rounds and inside them, and its records are
//! applied in slices taken while the previous slice is applied (the test stack's slices are 300
//! records), which is where a stop must still be heard.

use e2e_tests::{load, Stack};
use reqwest::blocking::Client;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Records the replay has stored progress for, over the partitions.
fn stored(stack: &Stack, db: &str) -> i64 {
    stack
        .sql(&format!("SELECT sum(next_offset) FROM {db}.processor_progress FINAL FORMAT TSV"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn replay(stack: &Stack) -> Child {
    stack
        .tool("processor")
        .unwrap()
        .args(["replay", "--generation", "1"])
        .env("PROCESSOR_FLUSH__REPLAY_MAX_RECORDS", "1500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the replay has stored progress beyond `past`, then stops it with `signal`.
/// Returns the progress stored when the signal was sent.
fn stop_once_past(stack: &Stack, db: &str, child: &mut Child, past: i64, signal: &str) -> i64 {
    let started = Instant::now();
    loop {
        let now = stored(stack, db);
        if now > past {
            let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
            assert!(status.success());
            let waited = Instant::now();
            while child.try_wait().unwrap().is_none() {
                assert!(waited.elapsed() < Duration::from_secs(30), "the replay did not stop on {signal}");
                std::thread::sleep(Duration::from_millis(20));
            }
            return now;
        }
        assert!(child.try_wait().unwrap().is_none(), "the replay ended before it could be stopped");
        assert!(started.elapsed() < Duration::from_secs(120), "no progress past {past}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_replay_stopped_and_killed_part_way_resumes_to_the_same_tables() {
    let mut stack = Stack::start("replay-interrupted", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let events = generator::generate(&generator::Spec {
        community_id: "e2e".into(),
        seed: 31,
        members: 1000,
        groups: 3,
        days: 120,
        ..Default::default()
    });
    let sent = load::shuffled_with_duplicates(&events, 5);
    let records = sent.len() as i64;
    load::paced(&client, &stack.ingest_url, sent, Duration::ZERO).join().unwrap();
    load::wait_counted(&client, &stack, "e2e", load::distinct(&events), Duration::from_secs(120));

    let db = format!("{}_g1", stack.database);
    let mut first = replay(&stack);
    let at_term = stop_once_past(&stack, &db, &mut first, 0, "-TERM");
    let mut second = replay(&stack);
    let at_kill = stop_once_past(&stack, &db, &mut second, at_term, "-KILL");
    assert!(at_kill < records, "the replay was done ({at_kill} of {records}) before the kill");
    println!("replay stopped at {at_term} and killed at {at_kill} of {records} records");
    let out = replay(&stack).wait_with_output().unwrap();
    assert!(out.status.success(), "the resumed replay failed");
    assert_eq!(stored(&stack, &db), records, "the resumed replay read the whole log");

    let archived =
        stack.sql(&format!("SELECT count() FROM {db}.events_raw FINAL WHERE community_id = 'e2e' FORMAT TSV")).unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), load::distinct(&events));
    let (ok, text) = stack.processor_command(&["switch", "1"]);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::served(&client, &stack.query_url, &events, "e2e", &reference::Params::default());
    println!("generation 1 after a stop and a kill: {cells} cells equal to the reference");
    stack.stop_processor();
}
