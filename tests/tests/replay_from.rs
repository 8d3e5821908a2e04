//! A replay from a timestamp: `processor replay --generation 1 --from T` builds tables that count
//! only the events dated from T on, as if the log began then (`counts_from`). The log is sent
//! shuffled, with duplicates, so events before T arrive after events after it. Generation 0 keeps
//! counting everything; generation 1, once switched to, must equal the reference computed on
//! the events from T, its archive must hold those events and no other, a processor of generation
//! 1 configured without `counts_from` must refuse to start, and one configured with it must keep
//! leaving out the late events dated before T that arrive afterwards.

use e2e_tests::{free_port, load, Stack};
use reqwest::blocking::Client;
use schemas::Event;
use std::time::{Duration, Instant};

fn from_t(events: &[Event], t: i64) -> Vec<Event> {
    events.iter().filter(|e| e.ts_ms >= t).cloned().collect()
}

#[test]
fn replay_from_a_timestamp_counts_only_the_events_from_then() {
    let mut stack = Stack::start("replay-from", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 21,
        members: 300,
        groups: 3,
        days: 120,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    // Not at midnight: the day T falls in is counted in part.
    let t = schemas::validate::parse_ts("2024-03-05T05:30:00Z").unwrap();
    let kept = from_t(&events, t);
    assert!(kept.len() > events.len() / 4 && kept.len() < events.len() * 9 / 10, "{} of {}", kept.len(), events.len());
    load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 3), Duration::ZERO).join().unwrap();
    load::wait_counted(&client, &stack, "e2e", load::distinct(&events), Duration::from_secs(120));
    let query_url = stack.query_url.clone();
    let params = reference::Params::default();
    e2e_tests::compare::served(&client, &query_url, &events, "e2e", &params);

    let t_text = schemas::event::format_ts(t);
    let out =
        stack.tool("processor").unwrap().args(["replay", "--generation", "1", "--from", &t_text]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {stderr}");
    assert!(stderr.contains(&format!("counts_from = \"{t_text}\"")), "{stderr}");

    // The archive of generation 1: every event from T once, nothing before it (the copy from
    // generation 0 is bounded by T too).
    let db = format!("{}_g1", stack.database);
    let archived = stack
        .sql(&format!("SELECT count(), min(ts_ms) FROM {db}.events_raw FINAL WHERE community_id = 'e2e' FORMAT TSV"))
        .unwrap();
    let f: Vec<i64> = archived.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(f[0] as u64, load::distinct(&kept), "{archived}");
    assert!(f[1] >= t, "{archived}");

    let (ok, text) = stack.processor_command(&["switch", "1"]);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::served(&client, &query_url, &kept, "e2e", &params);
    println!("generation 1 (from {t_text}): {cells} cells equal to the reference on the events from then");

    // Generation 1 written by a processor counting every event: refused before it reads anything.
    let mut wrong = stack
        .tool("processor")
        .unwrap()
        .args(["run"])
        .env("PROCESSOR_GENERATION", "1")
        .env("PROCESSOR_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while wrong.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            wrong.kill().unwrap();
            panic!("a processor of generation 1 without counts_from kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = wrong.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("counts_from: generation 1 was built counting events from {t_text}")), "{stderr}");

    // Kept current by its own processor: later members, some of whose events (their joins,
    // say) are dated before T and arrive now.
    stack.start_extra_processor_with(&[("PROCESSOR_GENERATION", "1"), ("PROCESSOR_COUNTS_FROM", &t_text)]).unwrap();
    let later = generator::generate(&generator::Spec {
        community_id: "e2e".into(),
        seed: 22,
        members: 80,
        start: chrono::NaiveDate::from_ymd_opt(2024, 2, 25).unwrap(),
        days: 20,
        ..Default::default()
    });
    let later: Vec<Event> = later
        .into_iter()
        .map(|mut e| {
            e.event_id = format!("later-{}", e.event_id);
            e.member_id = format!("later-{}", e.member_id);
            e
        })
        .collect();
    assert!(later.iter().any(|e| e.ts_ms < t) && later.iter().any(|e| e.ts_ms >= t));
    load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&later, 4), Duration::ZERO).join().unwrap();
    let all: Vec<Event> = events.iter().chain(&later).cloned().collect();
    let kept = from_t(&all, t);
    load::wait_counted(&client, &stack, "e2e", load::distinct(&kept), Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::served(&client, &query_url, &kept, "e2e", &params);
    println!("generation 1 kept current from {t_text}: {cells} cells equal to the reference");
    // Generation 0 counted everything meanwhile.
    let (ok, text) = stack.processor_command(&["switch", "0"]);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_millis(2500));
    load::wait_counted(&client, &stack, "e2e", load::distinct(&all), Duration::from_secs(120));
    e2e_tests::compare::served(&client, &query_url, &all, "e2e", &params);
}
