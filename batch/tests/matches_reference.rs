//! The polars batch computation equals the independent reference computation on generated
//! communities (several seeds, time zones and parameters), for every cell of every table.

mod common;

use batch::{diff, recompute};
use common::reference_tables;
use engine::CommunityConfig;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn check(spec: generator::Spec, cfg: CommunityConfig) {
    let mut events = generator::generate(&spec);
    // Order and duplicates must not matter.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let dups: Vec<_> = events.iter().step_by(7).cloned().collect();
    events.extend(dups);
    events.shuffle(&mut rng);
    let want = reference_tables(&events, &spec.community_id, &cfg);
    let got = recompute(&events, &spec.community_id, &cfg).unwrap();
    let d = diff(&want, &got);
    assert!(want.len() > 1000, "a community worth checking: {} cells", want.len());
    assert!(
        d.is_empty(),
        "{} of {} cells differ (clickhouse = reference here):\n{}",
        d.len(),
        want.len(),
        d.iter().take(30).map(|x| x.to_string()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn batch_equals_reference_with_default_parameters() {
    let spec =
        generator::Spec { community_id: "c1".into(), seed: 3, members: 300, groups: 3, days: 90, ..Default::default() };
    check(spec, CommunityConfig::default());
}

#[test]
fn batch_equals_reference_in_shanghai_and_new_york_with_other_parameters() {
    for (seed, tz) in [(5u64, "Asia/Shanghai"), (8, "America/New_York")] {
        let spec = generator::Spec {
            community_id: format!("c{seed}"),
            seed,
            members: 250,
            groups: 4,
            days: 120,
            ..Default::default()
        };
        let cfg = CommunityConfig {
            timezone: tz.parse().unwrap(),
            activation_window_days: 3,
            activation_min_events: 2,
            conversion_window_days: 10,
            inactivity_days: 12,
            referral_window_days: 5,
            ..CommunityConfig::default()
        };
        check(spec, cfg);
    }
}
