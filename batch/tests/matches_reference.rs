//! The polars batch computation equals the independent reference computation on generated
//! communities (several seeds, time zones and parameters), for every cell of every table.

use batch::tables::{key, Cell, Tables};
use batch::{diff, recompute};
use engine::CommunityConfig;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn reference_tables(events: &[schemas::Event], community: &str, cfg: &CommunityConfig) -> Tables {
    let p = reference::Params {
        tz: cfg.timezone,
        participation: cfg.participation_types.clone(),
        activation_types: cfg.activation_types.clone(),
        activation_window_days: cfg.activation_window_days as i64,
        activation_min: cfg.activation_min_events as usize,
        conversion_window_days: cfg.conversion_window_days as i64,
        referral_window_days: cfg.referral_window_days as i64,
        wau_days: cfg.wau_days as i64,
        mau_days: cfg.mau_days as i64,
        inactivity_days: cfg.inactivity_days as i64,
    };
    let r = reference::compute(events, community, &p);
    let mut t = Tables::default();
    for ((s, g, c), n) in &r.sizes {
        t.put(key::size(s, g, *c), Cell::Count(*n));
    }
    for ((s, g, mode, c), values) in &r.retention {
        for (k, v) in values.iter().enumerate() {
            t.put(key::retention(s, g, mode, *c, k), Cell::Count(*v));
        }
    }
    for ((s, g, c), a) in &r.activation {
        t.put(key::cohort("activation", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("activation", s, g, *c, "activated"), Cell::Count(a.activated));
        t.put(key::cohort("activation", s, g, *c, "median_hours_to_activate"), Cell::Real(a.median_hours_to_activate));
        t.put(key::cohort("activation", s, g, *c, "complete"), Cell::Flag(a.complete));
    }
    for ((s, g, c), a) in &r.conversion {
        t.put(key::cohort("conversion", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("conversion", s, g, *c, "converted"), Cell::Count(a.converted));
        t.put(key::cohort("conversion", s, g, *c, "value"), Cell::Real(Some(a.value)));
        t.put(key::cohort("conversion", s, g, *c, "activated"), Cell::Count(a.activated));
        t.put(key::cohort("conversion", s, g, *c, "activated_then_converted"), Cell::Count(a.activated_then_converted));
        t.put(key::cohort("conversion", s, g, *c, "complete"), Cell::Flag(a.complete));
    }
    for ((s, g, c), a) in &r.referral {
        t.put(key::cohort("referral", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("referral", s, g, *c, "referred"), Cell::Count(a.referred));
        t.put(key::cohort("referral", s, g, *c, "invited"), Cell::Count(a.invited));
        t.put(key::cohort("referral", s, g, *c, "k_factor"), Cell::Real(Some(a.k_factor)));
    }
    for ((s, d), v) in &r.engagement {
        for (c, n) in engine::activity::ENGAGEMENT.iter().zip(v) {
            t.put(key::period("engagement", s, "day", *d, c), Cell::Count(*n));
        }
    }
    for ((s, g, p), v) in &r.lifecycle {
        for (c, n) in engine::activity::LIFECYCLE.iter().zip(v) {
            t.put(key::period("lifecycle", s, g, *p, c), Cell::Count(*n));
        }
    }
    for ((s, g, p), v) in &r.churn {
        for (c, n) in ["members_start", "churned", "left", "removed", "inactive"].iter().zip(v) {
            t.put(key::period("churn", s, g, *p, c), Cell::Count(*n));
        }
    }
    t
}

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
