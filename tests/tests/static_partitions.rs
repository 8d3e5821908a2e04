//! Partitions given to instances by configuration (`kafka.partitions`), without the consumer
//! group: two instances split the topic's four partitions ("0,1" and "2,3") while a generated
//! load (shuffled, 10% duplicated) comes in, and each is SIGKILLed and restarted several times.
//! A restart takes its partitions up at once: no group to join, no session of the killed
//! instance to wait out (a group member restarted after a crash waits for it, 6 s in these
//! stacks). Afterwards every cell of every endpoint equals the reference, and the archive holds
//! each event once.

use e2e_tests::{load, wait_for, Stack};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use std::time::{Duration, Instant};

const KILLS: usize = 8;

fn processors(stack: &Stack) -> usize {
    stack.procs.iter().filter(|p| p.name.starts_with("processor")).count()
}

/// Waits for the named instance to have taken up its two partitions; returns how long that took.
fn taken_up(stack: &Stack, name: &str, since: Instant) -> Duration {
    wait_for("the instance takes up its partitions", Duration::from_secs(30), || stack.partitions_taken_up(name) >= 2)
        .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
    since.elapsed()
}

#[test]
fn instances_with_their_own_partitions_restart_at_once_and_count_exactly() {
    let mut stack = Stack::start_with(
        "static-partitions",
        4,
        &[("PROCESSOR_KAFKA__PARTITIONS", "0,1"), ("PROCESSOR_CHECKPOINT__INTERVAL_SECS", "0")],
    )
    .expect("stack starts");
    let other_env = [("PROCESSOR_KAFKA__PARTITIONS", "2,3")];
    let mut other = stack.start_extra_processor_with(&other_env).unwrap();
    let mut main = "processor-0".to_string();
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let events = generator::generate(&generator::Spec {
        community_id: "e2e".into(),
        seed: 41,
        members: 400,
        groups: 3,
        days: 90,
        ..Default::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let loader =
        load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 41), Duration::from_secs(40));
    taken_up(&stack, &main, Instant::now());
    taken_up(&stack, &other, Instant::now());
    let mut restarts = Vec::new();
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
        // Every fourth kill is the other instance's.
        let killed = if kill % 4 == 3 { other.clone() } else { main.clone() };
        stack.kill_named(&killed);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        let started = Instant::now();
        let name = format!("processor-{}", processors(&stack));
        if killed == main {
            stack.start_processor().unwrap();
            main = name.clone();
        } else {
            other = stack.start_extra_processor_with(&other_env).unwrap();
            assert_eq!(other, name);
        }
        restarts.push(taken_up(&stack, &name, started));
    }
    let slowest = restarts.iter().max().unwrap();
    println!("{KILLS} SIGKILLs; restart to partitions taken up: {restarts:?}");
    assert!(*slowest < Duration::from_secs(5), "a restart waited {slowest:?}: for a group?");
    assert_eq!(loader.join().unwrap(), 0, "no batch is refused: the broker stays up");
    for name in [&main, &other] {
        let log = std::fs::read_to_string(stack.dir.join(format!("{name}.log"))).unwrap();
        assert!(log.contains("without the consumer group"), "{name} did not take its partitions statically");
    }

    let expected = load::distinct(&events);
    load::wait_counted(&client, &stack, "e2e", expected, Duration::from_secs(240));
    let cells = e2e_tests::compare::served(&client, &stack.query_url, &events, "e2e", &reference::Params::default());
    println!("two instances with their own partitions, {KILLS} SIGKILLs: {cells} cells equal to the reference");
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);

    // A replay reads the partitions its configuration names: one per instance's list, and the
    // generation they build together is the whole one.
    for list in ["0,1", "2,3"] {
        let out = stack
            .tool("processor")
            .unwrap()
            .args(["replay", "--generation", "1"])
            .env("PROCESSOR_KAFKA__PARTITIONS", list)
            .output()
            .unwrap();
        assert!(out.status.success(), "replay of {list}: {}", String::from_utf8_lossy(&out.stderr));
        let db = format!("{}_g1", stack.database);
        let progress = stack
            .sql(&format!("SELECT partition FROM {db}.processor_progress FINAL ORDER BY partition FORMAT TSV"))
            .unwrap();
        let want = if list == "0,1" { "0\n1" } else { "0\n1\n2\n3" };
        assert_eq!(progress.trim(), want, "partitions replayed after {list}");
    }
    let (ok, text) = stack.processor_command(&["switch", "1"]);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_millis(2500));
    let cells = e2e_tests::compare::served(&client, &stack.query_url, &events, "e2e", &reference::Params::default());
    println!("generation 1 from two replays, one per list: {cells} cells equal to the reference");
}
