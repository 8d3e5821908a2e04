//! A replay stopped part way (by SIGTERM while it joins its consumer group, by SIGTERM, then by
//! SIGKILL, as it reads) and run again: it resumes from the
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

/// Starts a replay logging to `<stack>/replay-<n>.log`.
fn replay(stack: &Stack, n: usize) -> Child {
    stack
        .tool("processor")
        .unwrap()
        .args(["replay", "--generation", "1"])
        .env("PROCESSOR_FLUSH__REPLAY_MAX_RECORDS", "1500")
        .stdout(std::fs::File::create(stack.dir.join(format!("replay-{n}.log"))).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn replay_log(stack: &Stack, n: usize) -> String {
    std::fs::read_to_string(stack.dir.join(format!("replay-{n}.log"))).unwrap_or_default()
}

/// Waits for `child` to exit, failing after `limit`.
fn exits_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a replay with SIGTERM while it is still joining its consumer group. Tansu 0.6 never
/// ended the rebalance such a member left, and every later replay waited for good; the
/// processor now leaves once its join is done (`Pipeline::finish_joining`).
fn stop_during_the_join(stack: &Stack) {
    let mut child = replay(stack, 0);
    let started = Instant::now();
    while !replay_log(stack, 0).contains("joining the consumer group") {
        assert!(child.try_wait().unwrap().is_none(), "the replay ended before joining: {}", replay_log(stack, 0));
        assert!(started.elapsed() < Duration::from_secs(60), "no join: {}", replay_log(stack, 0));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!replay_log(stack, 0).contains("partitions assigned"), "joined before the stop");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = exits_within(&mut child, Duration::from_secs(30), "the replay stopped during its join");
    let log = replay_log(stack, 0);
    assert!(status.success(), "{log}");
    assert!(log.contains("stopped during the consumer group's join"), "the stop did not fall in the join: {log}");
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
            exits_within(child, Duration::from_secs(30), &format!("the replay stopped with {signal}"));
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
    stop_during_the_join(&stack);
    let mut first = replay(&stack, 1);
    let at_term = stop_once_past(&stack, &db, &mut first, 0, "-TERM");
    let mut second = replay(&stack, 2);
    let at_kill = stop_once_past(&stack, &db, &mut second, at_term, "-KILL");
    assert!(at_kill < records, "the replay was done ({at_kill} of {records}) before the kill");
    println!("replay stopped during its join, then at {at_term} and killed at {at_kill} of {records} records");
    let status = exits_within(&mut replay(&stack, 3), Duration::from_secs(180), "the resumed replay");
    assert!(status.success(), "the resumed replay failed: {}", replay_log(&stack, 3));
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
