//! Effectively-once output under crashes: a generated load (shuffled, 10% duplicated) goes in
//! through ingest while the processor is SIGKILLed at random moments, 20 times, and restarted
//! after a random pause; kills land mid-batch, mid-insert, between the insert and the progress
//! row, during catch-up and while a checkpoint is being written. Restarts resume from
//! checkpoints (one after every flush here), except every fourth, which finds the checkpoints
//! deleted or damaged and rebuilds from the log. Afterwards every cell of every endpoint equals
//! the reference, and the archive holds each event once.

use e2e_tests::{load, wait_for, Stack};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use std::time::Duration;

const KILLS: usize = 20;

#[test]
fn twenty_sigkills_during_load_lose_nothing_and_count_nothing_twice() {
    let mut stack =
        // A SIGKILLed member holds its partitions until its session expires: keep that short.
        Stack::start_with(
            "kills",
            4,
            &[("PROCESSOR_CHECKPOINT__INTERVAL_SECS", "0"), ("PROCESSOR_KAFKA__SESSION_TIMEOUT_MS", "2000")],
        )
        .expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 77,
        members: 500,
        groups: 3,
        days: 90,
        ..Default::default()
    };
    let events = generator::generate(&spec);
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    // Paced to last longer than the kills (some 80 s), so that they land during the load.
    let loader =
        load::paced(&client, &stack.ingest_url, load::shuffled_with_duplicates(&events, 20), Duration::from_secs(90));
    let mut during_load = 0;
    for kill in 0..KILLS {
        // Each instance is killed only once the group has given it the partitions (the dead
        // member's session must expire first), so that every kill lands while it works.
        let name = format!("processor-{kill}");
        wait_for("the restarted processor gets its partitions", Duration::from_secs(30), || {
            stack.has_assignment(&name)
        })
        .unwrap_or_else(|e| panic!("{e}; logs in {}", stack.dir.display()));
        // Mostly quick kills (often before the restarted processor has caught up); every third
        // one gives it time to write checkpoints first.
        let alive = if kill % 3 == 2 { rng.random_range(1500..3500) } else { rng.random_range(50..1200) };
        std::thread::sleep(Duration::from_millis(alive));
        during_load += !loader.is_finished() as usize;
        stack.kill_processor();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        match kill % 8 {
            3 => {
                let _ = std::fs::remove_dir_all(stack.checkpoint_dir());
            }
            7 => damage_checkpoints(&stack.checkpoint_dir()),
            _ => {}
        }
        stack.start_processor().unwrap();
    }
    assert!(during_load >= KILLS / 2, "only {during_load} kills landed while events were coming in");
    assert_eq!(loader.join().unwrap(), 0, "no batch is refused: the broker stays up");

    let expected = load::distinct(&events);
    load::wait_counted(&client, &stack, "e2e", expected, Duration::from_secs(240));
    let cells = e2e_tests::compare::served(&client, &stack.query_url, &events, "e2e", &reference::Params::default());
    println!("{KILLS} SIGKILLs ({during_load} during the load): {cells} cells equal to the reference");
    assert!(cells > 10_000);
    let (from_checkpoint, from_log) = stack.partition_starts();
    println!("partitions taken up from a checkpoint: {from_checkpoint}, from the log: {from_log}");
    assert!(from_checkpoint >= 12, "restarts hardly used checkpoints: {from_checkpoint}");
    assert!(from_log >= 8, "the rebuild from the log was hardly exercised: {from_log}");
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), expected);
}

/// Flips a byte in the middle of every checkpoint file (the processor must notice and rebuild).
fn damage_checkpoints(dir: &std::path::Path) {
    for topic in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(topic.path()).into_iter().flatten().flatten() {
            if let Ok(mut bytes) = std::fs::read(file.path()) {
                let mid = bytes.len() / 2;
                if let Some(b) = bytes.get_mut(mid) {
                    *b ^= 0x55;
                }
                let _ = std::fs::write(file.path(), bytes);
            }
        }
    }
}
