//! Static membership (`kafka.instance_id`, Kafka's `group.instance.id`): a processor SIGKILLed
//! and started again under the same instance id takes the killed member's place in the group
//! instead of waiting out its session, which is 20 s here so that a wait for it cannot pass
//! unseen (a member without an instance id restarted after a crash waits for it: its new member
//! id is a stranger to the group until the old one expires). A generated load (shuffled, 10%
//! duplicated) comes in throughout; afterwards every cell of every endpoint equals the
//! reference, and the archive holds each event once.
//!
//! Tansu answers a static member's join and sync after pauses of its own (3 s each, and the
//! join of a group's leader up to half the session), so the bound below is the session itself,
//! not a figure for Apache Kafka, which hands a returning static member its assignment at once.

use e2e_tests::{load, wait_for, Stack};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use std::time::{Duration, Instant};

const KILLS: usize = 3;
const SESSION: Duration = Duration::from_secs(20);

/// Waits for the named instance to have taken up the topic's four partitions; returns how long
/// that took.
fn taken_up(stack: &Stack, name: &str, since: Instant) -> Duration {
    wait_for("the instance takes up its partitions", SESSION * 2, || stack.partitions_taken_up(name) >= 4)
        .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
    since.elapsed()
}

#[test]
fn a_static_member_restarted_after_a_crash_waits_for_no_session() {
    let session_ms = SESSION.as_millis().to_string();
    let mut stack = Stack::start_with(
        "static-members",
        4,
        &[("PROCESSOR_KAFKA__INSTANCE_ID", "e2e-processor-a"), ("PROCESSOR_KAFKA__SESSION_TIMEOUT_MS", &session_ms)],
    )
    .expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let events = generator::generate(&generator::Spec {
        community_id: "e2e".into(),
        seed: 57,
        members: 400,
        groups: 3,
        days: 90,
        ..Default::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(57);
    let loader =
        load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 57), Duration::from_secs(30));
    taken_up(&stack, "processor-0", Instant::now());
    let mut restarts = Vec::new();
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(1000..3000)));
        stack.kill_processor();
        let started = Instant::now();
        stack.start_processor().unwrap();
        restarts.push(taken_up(&stack, &format!("processor-{}", kill + 1), started));
    }
    println!("{KILLS} SIGKILLs of a static member; restart to partitions taken up: {restarts:?}");
    let slowest = restarts.iter().max().unwrap();
    assert!(*slowest < SESSION, "a restart waited {slowest:?}: for the killed member's {SESSION:?} session?");
    assert_eq!(loader.join().unwrap(), 0, "no batch is refused: the broker stays up");

    let expected = load::distinct(&events);
    load::wait_counted(&client, &stack, "e2e", expected, Duration::from_secs(240));
    let cells = e2e_tests::compare::served(&client, &stack.query_url, &events, "e2e", &reference::Params::default());
    println!("a static member, {KILLS} SIGKILLs: {cells} cells equal to the reference");
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);
}
