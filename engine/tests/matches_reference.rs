//! The engine's final tables equal the reference computation, whatever the arrival order,
//! duplication, batch boundaries and partition count.

mod common;

use common::{assert_matches, run_engine};
use engine::{CommunityConfig, Configs};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemas::Event;

fn community(seed: u64, members: usize, days: u32) -> Vec<Event> {
    generator::generate(&generator::Spec {
        community_id: "c1".into(),
        seed,
        members,
        groups: 3,
        days,
        ..generator::Spec::default()
    })
}

#[test]
fn in_order_single_partition() {
    let events = community(1, 150, 70);
    let cfg = Configs::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t = run_engine(&events, 1, &cfg, &mut rng);
    assert_matches(&t, &events, "c1", cfg.get("c1"));
}

#[test]
fn shuffled_duplicated_batched_and_partitioned() {
    for seed in 0..4u64 {
        let mut events = community(10 + seed, 120, 75);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dups: Vec<Event> = events.iter().filter(|_| rng.random::<f64>() < 0.1).cloned().collect();
        let original = events.clone();
        events.extend(dups);
        events.shuffle(&mut rng);
        let cfg = Configs::default();
        let t = run_engine(&events, 1 + seed as usize, &cfg, &mut rng);
        assert_matches(&t, &original, "c1", cfg.get("c1"));
    }
}

#[test]
fn time_zone_and_activation_parameters() {
    let mut events = community(99, 100, 60);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    events.shuffle(&mut rng);
    for tz in ["America/New_York", "Europe/Berlin", "Asia/Shanghai"] {
        let cfg = CommunityConfig {
            timezone: tz.parse().unwrap(),
            activation_min_events: 2,
            activation_window_days: 3,
            activation_types: vec![schemas::EventType::MessagePosted, schemas::EventType::ReactionAdded],
            ..CommunityConfig::default()
        };
        let configs = Configs { communities: [("c1".to_string(), cfg.clone())].into(), ..Configs::default() };
        let t = run_engine(&events, 2, &configs, &mut rng);
        assert_matches(&t, &events, "c1", &cfg);
    }
}
