//! Shared by the engine's integration tests: running the engine over events (several partitions,
//! random flushes) and comparing every table with the reference computation.

#![allow(dead_code)]

use engine::table::Tables;
use engine::{CommunityConfig, Configs, Engine, Granularity, Mode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemas::Event;

pub fn run_engine(events: &[Event], partitions: usize, cfg: &Configs, rng: &mut ChaCha8Rng) -> Tables {
    run_engine_flushing(events, partitions, cfg, rng, 0.01)
}

/// Runs the engine, flushing a random partition after each event with probability `flush_p`
/// (random batch boundaries).
pub fn run_engine_flushing(
    events: &[Event],
    partitions: usize,
    cfg: &Configs,
    rng: &mut ChaCha8Rng,
    flush_p: f64,
) -> Tables {
    let mut engines: Vec<Engine> = (0..partitions).map(|_| Engine::new(cfg.clone())).collect();
    let mut tables: Vec<Tables> = vec![Tables::default(); partitions];
    let mut as_of: std::collections::HashMap<String, i64> = Default::default();
    for e in events {
        let p = (xxhash_like(&e.partition_key()) % partitions as u64) as usize;
        engines[p].apply(e);
        let a = as_of.entry(e.community_id.clone()).or_insert(e.ts_ms);
        *a = (*a).max(e.ts_ms);
        if rng.random::<f64>() < flush_p {
            let q = rng.random_range(0..partitions);
            let out = engines[q].flush(&|c| as_of.get(c).copied());
            tables[q].apply(&out);
        }
    }
    let mut total = Tables::default();
    for (engine, mut t) in engines.into_iter().zip(tables) {
        let mut engine = engine;
        t.apply(&engine.flush(&|c| as_of.get(c).copied()));
        // A second flush with nothing new emits nothing.
        assert!(engine.flush(&|c| as_of.get(c).copied()).is_empty());
        total.merge_sum(&t);
    }
    total
}

pub fn xxhash_like(key: &[u8]) -> u64 {
    key.iter().fold(1469598103934665603u64, |h, b| (h ^ *b as u64).wrapping_mul(1099511628211))
}

pub fn reference_params(cfg: &CommunityConfig) -> reference::Params {
    reference::Params {
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
    }
}

pub fn assert_matches(tables: &Tables, events: &[Event], community: &str, cfg: &CommunityConfig) {
    assert_matches_inner(tables, events, community, cfg, true)
}

/// Without the checks that the data exercises every column (for tiny random communities).
pub fn assert_matches_any(tables: &Tables, events: &[Event], community: &str, cfg: &CommunityConfig) {
    assert_matches_inner(tables, events, community, cfg, false)
}

fn assert_matches_inner(tables: &Tables, events: &[Event], community: &str, cfg: &CommunityConfig, rich: bool) {
    let r = reference::compute(events, community, &reference_params(cfg));
    let as_of = r.as_of_ms.unwrap();
    assert_eq!(tables.stats.get(community).map(|s| s.0), Some(r.events_processed), "events_processed");
    assert_eq!(tables.stats.get(community).map(|s| s.1), Some(as_of), "as_of");
    // Sizes: every reference cohort, and no other non-empty cohort.
    let engine_sizes: std::collections::BTreeMap<_, _> = tables
        .cohorts
        .iter()
        .filter(|(k, v)| k.0 == community && **v > 0)
        .map(|(k, v)| ((k.1.clone(), k.2.as_str().to_owned(), k.3), *v))
        .collect();
    for (k, v) in &r.sizes {
        assert_eq!(engine_sizes.get(k), Some(v), "cohort size {k:?}");
    }
    assert_eq!(engine_sizes.len(), r.sizes.len(), "engine lists cohorts the reference does not");
    for ((scope, g, mode, cohort), expected) in &r.retention {
        let gran = Granularity::parse(g).unwrap();
        let got = tables.retention_row(community, scope, gran, Mode::parse(mode).unwrap(), *cohort);
        assert_eq!(&got, expected, "retention {mode} scope={scope:?} {g} cohort {cohort}");
    }
    for ((scope, g, cohort), expected) in &r.activation {
        let acts = tables.activation(community, scope, Granularity::parse(g).unwrap(), as_of);
        let got = acts.get(cohort).unwrap_or_else(|| panic!("no activation row {scope:?} {g} {cohort}"));
        assert_eq!(got.size, expected.size, "activation size {scope:?} {g} {cohort}");
        assert_eq!(got.activated, expected.activated, "activated {scope:?} {g} {cohort}");
        assert_eq!(got.median_hours_to_activate, expected.median_hours_to_activate, "median {scope:?} {g} {cohort}");
        assert_eq!(got.complete, expected.complete, "complete {scope:?} {g} {cohort}");
    }
    for ((scope, g, cohort), expected) in &r.conversion {
        let got = tables.conversion(community, scope, Granularity::parse(g).unwrap(), as_of);
        let got = got.get(cohort).unwrap_or_else(|| panic!("no conversion row {scope:?} {g} {cohort}"));
        let ctx = format!("conversion {scope:?} {g} {cohort}");
        assert_eq!(
            (
                got.size,
                got.converted,
                got.value_micros as f64 / 1e6,
                got.activated,
                got.activated_then_converted,
                got.complete
            ),
            (
                expected.size,
                expected.converted,
                expected.value,
                expected.activated,
                expected.activated_then_converted,
                expected.complete
            ),
            "{ctx}"
        );
    }
    let mut invited_total = 0;
    for ((scope, g, cohort), expected) in &r.referral {
        let got = tables.referral(community, scope, Granularity::parse(g).unwrap());
        let got = &got[cohort];
        assert_eq!(
            (got.size, got.referred, got.invited),
            (expected.size, expected.referred, expected.invited),
            "referral {scope:?} {g} {cohort}"
        );
        invited_total += got.invited;
    }
    assert!(!rich || invited_total > 0 || r.referral.is_empty(), "the generated data has invitations");

    // Period tables: every reference row (dense, zeros included) equals the engine's (missing = 0),
    // and the engine has no non-zero row outside the reference's range.
    for ((scope, day), expected) in &r.engagement {
        let got = tables.engagement.get(&(community.to_owned(), scope.clone(), *day)).copied().unwrap_or([0; 10]);
        let got: Vec<u64> = got.iter().map(|&v| v as u64).collect();
        assert_eq!(got, expected.to_vec(), "engagement {scope:?} {day}");
    }
    for ((c, scope, day), v) in &tables.engagement {
        if c == community && v.iter().any(|&x| x != 0) {
            assert!(
                r.engagement.contains_key(&(scope.clone(), *day)),
                "engagement row outside the range: {scope:?} {day}"
            );
        }
    }
    for ((scope, g, period), expected) in &r.lifecycle {
        let key = (community.to_owned(), scope.clone(), Granularity::parse(g).unwrap(), *period);
        let got = tables.lifecycle.get(&key).copied().unwrap_or([0; 4]);
        let got: Vec<u64> = got.iter().map(|&v| v as u64).collect();
        assert_eq!(got, expected.to_vec(), "lifecycle {scope:?} {g} {period}");
    }
    for ((c, scope, g, period), v) in &tables.lifecycle {
        if c == community && v.iter().any(|&x| x != 0) {
            let key = (scope.clone(), g.as_str().to_owned(), *period);
            assert!(r.lifecycle.contains_key(&key), "lifecycle row outside the range: {key:?}");
        }
    }
    assert!(!rich || r.engagement.values().any(|v| v[8] > 0), "the data has leaves");
    for ((scope, g, period), expected) in &r.churn {
        let key = (community.to_owned(), scope.clone(), Granularity::parse(g).unwrap(), *period);
        let got = tables.churn.get(&key).copied().unwrap_or([0; 5]);
        let got: Vec<u64> = got.iter().map(|&v| v as u64).collect();
        assert_eq!(got, expected.to_vec(), "churn {scope:?} {g} {period}");
    }
    for ((c, scope, g, period), v) in &tables.churn {
        if c == community && v.iter().any(|&x| x != 0) {
            let key = (scope.clone(), g.as_str().to_owned(), *period);
            assert!(r.churn.contains_key(&key), "churn row outside the range: {key:?}");
        }
    }
    for i in 0..5 {
        assert!(!rich || r.churn.values().any(|v| v[i] > 0), "the data exercises churn column {i}");
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// What storage holds for one partition, as the rows the processor reads back at start.
fn seed_rows(t: &Tables) -> SeedRows {
    use engine::{ChurnRow, CohortRow, EngagementRow, LifecycleRow, RetentionCell};
    let cohorts = t
        .cohorts
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|((c, s, g, d), v)| CohortRow {
            community_id: c.clone(),
            group_id: s.clone(),
            granularity: *g,
            cohort: *d,
            size: *v,
        })
        .collect();
    let cells = t
        .retention
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|((c, s, g, m, d, k), v)| RetentionCell {
            community_id: c.clone(),
            group_id: s.clone(),
            granularity: *g,
            mode: *m,
            cohort: *d,
            offset: *k,
            period: *d,
            members: *v,
        })
        .collect();
    let days = t
        .engagement
        .iter()
        .map(|((c, s, d), v)| EngagementRow { community_id: c.clone(), group_id: s.clone(), day: *d, values: *v })
        .collect();
    let periods = t
        .lifecycle
        .iter()
        .map(|((c, s, g, d), v)| LifecycleRow {
            community_id: c.clone(),
            group_id: s.clone(),
            granularity: *g,
            period: *d,
            values: *v,
        })
        .collect();
    let churn = t
        .churn
        .iter()
        .map(|((c, s, g, d), v)| ChurnRow {
            community_id: c.clone(),
            group_id: s.clone(),
            granularity: *g,
            period: *d,
            values: *v,
        })
        .collect();
    (cohorts, cells, days, periods, churn)
}

type SeedRows = (
    Vec<engine::CohortRow>,
    Vec<engine::RetentionCell>,
    Vec<engine::EngagementRow>,
    Vec<engine::LifecycleRow>,
    Vec<engine::ChurnRow>,
);

/// Like `run_engine_flushing`, with a crash after `crash_at` events: every partition restarts as
/// the processor does (a new engine seeded with what storage holds, the log up to the crash
/// replayed without writing), then processing goes on.
///
/// With `checkpoint_p > 0`, a flush saves the partition's engine with that probability, and the
/// restart resumes from the newest save instead: the engine restored from its bytes, told of the
/// rows written after the save (as the processor reads back rows above the save's version), and
/// only the events after the save replayed.
pub fn run_engine_with_restart(
    events: &[Event],
    partitions: usize,
    cfg: &Configs,
    rng: &mut ChaCha8Rng,
    flush_p: f64,
    crash_at: usize,
    checkpoint_p: f64,
) -> Tables {
    struct Saved {
        bytes: Vec<u8>,
        /// Events up to this index had been applied when it was taken.
        applied: usize,
        written_since: Vec<engine::Output>,
    }
    let part = |e: &Event| (xxhash_like(&e.partition_key()) % partitions as u64) as usize;
    let mut engines: Vec<Engine> = (0..partitions).map(|_| Engine::new(cfg.clone())).collect();
    let mut tables: Vec<Tables> = vec![Tables::default(); partitions];
    let mut saved: Vec<Option<Saved>> = (0..partitions).map(|_| None).collect();
    let mut as_of: std::collections::HashMap<String, i64> = Default::default();
    for (i, e) in events.iter().enumerate() {
        if i == crash_at {
            for (q, engine) in engines.iter_mut().enumerate() {
                let replay_from = match &saved[q] {
                    Some(s) => {
                        *engine = Engine::restore(cfg, &s.bytes).expect("a checkpoint of this engine restores");
                        for o in &s.written_since {
                            engine.seed_written(&o.cohorts, &o.retention);
                            engine.seed_written_periods(&o.engagement, &o.lifecycle, &o.churn);
                        }
                        s.applied
                    }
                    None => {
                        let (cohorts, cells, days, periods, churn) = seed_rows(&tables[q]);
                        *engine = Engine::new(cfg.clone());
                        engine.seed_written(&cohorts, &cells);
                        engine.seed_written_periods(&days, &periods, &churn);
                        0
                    }
                };
                for x in events[replay_from..crash_at].iter().filter(|x| part(x) == q) {
                    engine.apply(x);
                }
            }
        }
        engines[part(e)].apply(e);
        let a = as_of.entry(e.community_id.clone()).or_insert(e.ts_ms);
        *a = (*a).max(e.ts_ms);
        if rng.random::<f64>() < flush_p {
            let q = rng.random_range(0..partitions);
            let out = engines[q].flush(&|c| as_of.get(c).copied());
            tables[q].apply(&out);
            if i < crash_at {
                if let Some(s) = &mut saved[q] {
                    s.written_since.push(out);
                }
                if rng.random::<f64>() < checkpoint_p {
                    saved[q] = Some(Saved { bytes: engines[q].snapshot(), applied: i + 1, written_since: Vec::new() });
                }
            }
        }
    }
    let mut total = Tables::default();
    for (mut engine, mut t) in engines.into_iter().zip(tables) {
        t.apply(&engine.flush(&|c| as_of.get(c).copied()));
        total.merge_sum(&t);
    }
    total
}
