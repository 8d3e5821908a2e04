//! Replay into a new generation of the tables: with the activation window changed from 7 to 3
//! days and the time zone from UTC to Asia/Shanghai, `processor replay --generation 1` rebuilds every derived table from the log while the
//! API keeps serving generation 0 (checked while the replay runs and after it ends), then
//! `processor switch 1` makes the API serve the new tables, which equal the reference computed
//! with the new window. Dropping the served generation is refused; after switching back, the new
//! one is dropped.

use e2e_tests::{load, Stack, READ_KEY};
use reqwest::blocking::Client;
use serde_json::Value;
use std::time::Duration;

#[test]
fn replay_with_a_new_activation_window_switches_atomically() {
    let mut stack = Stack::start("replay", 2).expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 5,
        members: 400,
        groups: 3,
        days: 90,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let sent: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
    load::paced(&client, &stack.ingest_url, sent, Duration::ZERO).join().unwrap();
    let expected = load::distinct(&events);
    load::wait_counted(&client, &stack, "e2e", expected, Duration::from_secs(120));
    let query_url = stack.query_url.clone();
    let get = |path: &str| -> (u16, Value) {
        let resp = client.get(format!("{query_url}{path}")).bearer_auth(READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let old = reference::Params::default();
    // A time zone as well as the window: then every table differs between the generations, so an
    // API query left on the old generation's database shows.
    let new = reference::Params {
        activation_window_days: 3,
        tz: "Asia/Shanghai".parse().unwrap(),
        ..reference::Params::default()
    };
    let cells = e2e_tests::compare::all_endpoints(&mut { get }, &events, "e2e", &old);
    assert!(cells > 10_000);
    let activation = "/v1/communities/e2e/activation?granularity=week";
    let served_before = get(activation).1;

    let mut replay = stack
        .tool("processor")
        .unwrap()
        .args(["replay", "--generation", "1"])
        .env("PROCESSOR_METRICS__DEFAULT__ACTIVATION_WINDOW_DAYS", "3")
        .env("PROCESSOR_METRICS__DEFAULT__TIMEZONE", "Asia/Shanghai")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut checks_during_replay = 0;
    while replay.try_wait().unwrap().is_none() {
        assert_eq!(get(activation).1, served_before, "the API changed before the switch");
        checks_during_replay += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = replay.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {stderr}");
    assert!(stderr.contains("generation 1 is built"), "{stderr}");
    println!("checked the served answer {checks_during_replay} times during the replay");
    if let Some(line) = stderr.lines().rev().find(|l| l.contains("caught up")) {
        println!("{line}");
    }
    assert!(checks_during_replay > 0);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(activation).1, served_before, "the API changed before the switch");

    let (ok, text) = stack.processor_command(&["switch", "1"]);
    assert!(ok, "{text}");
    assert!(text.contains("serving generation 1 (was 0)"), "{text}");
    // The API's cached generation and response cache each last a second.
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(get(activation).1, served_before, "a 3-day window must change some activation counts");
    let cells = e2e_tests::compare::all_endpoints(&mut { get }, &events, "e2e", &new);
    println!("after the switch: {cells} cells equal to the reference with a 3-day activation window");

    // Generation 1 kept current: a processor of generation 1 resumes from the replay's
    // checkpoints and counts events sent after the switch.
    stack
        .start_extra_processor_with(&[
            ("PROCESSOR_GENERATION", "1"),
            ("PROCESSOR_METRICS__DEFAULT__ACTIVATION_WINDOW_DAYS", "3"),
            ("PROCESSOR_METRICS__DEFAULT__TIMEZONE", "Asia/Shanghai"),
        ])
        .unwrap();
    let later = generator::generate(&generator::Spec {
        community_id: "e2e".into(),
        seed: 6,
        members: 60,
        days: 20,
        ..Default::default()
    });
    let later: Vec<_> = later
        .into_iter()
        .map(|mut e| {
            e.event_id = format!("later-{}", e.event_id);
            e.member_id = format!("later-{}", e.member_id);
            e
        })
        .collect();
    let later_json: Vec<Value> = later.iter().map(|e| e.to_json()).collect();
    load::paced(&client, &stack.ingest_url, later_json, Duration::ZERO).join().unwrap();
    let all: Vec<_> = events.iter().chain(&later).cloned().collect();
    load::wait_counted(&client, &stack, "e2e", load::distinct(&all), Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::all_endpoints(&mut { get }, &all, "e2e", &new);
    println!("generation 1 kept current by its own processor: {cells} cells equal to the reference");

    let (ok, text) = stack.processor_command(&["drop-generation", "1"]);
    assert!(!ok && text.contains("is being served"), "{text}");
    let (ok, text) = stack.processor_command(&["drop-generation", "0"]);
    assert!(!ok && text.contains("not dropped"), "{text}");
    let (ok, text) = stack.processor_command(&["replay", "--generation", "1"]);
    assert!(!ok && text.contains("is the generation being served"), "{text}");
    let (ok, text) = stack.processor_command(&["switch", "0"]);
    assert!(ok, "{text}");
    let (ok, text) = stack.processor_command(&["drop-generation", "1"]);
    assert!(ok, "{text}");
    let dbs = stack.sql("SELECT count() FROM system.databases WHERE name = 'e2e_replay_g1'").unwrap();
    assert_eq!(dbs.trim(), "0");
    // Generation 0's own processor kept counting meanwhile, with its 7-day window.
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::all_endpoints(&mut { get }, &all, "e2e", &old);
    println!("switched back to generation 0: {cells} cells equal to the reference with a 7-day window");
}
