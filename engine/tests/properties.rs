//! Property tests: for random small communities, built to hit the edge cases (ties at one
//! instant, joins after messages, leaves without joins, rejoins, bots, several groups), the
//! engine's final tables equal the reference computation for any permutation of the events, any
//! duplication, any batch boundaries, any partition count and any of several time zones.
//! proptest keeps shrunk failures in `properties.proptest-regressions` beside this file.

mod common;

use common::{assert_matches_any, rng, run_engine_flushing, run_engine_with_restart};
use engine::{CommunityConfig, Configs};
use proptest::prelude::*;
use schemas::{parse_event_value, Event, Limits};
use serde_json::json;

const TYPES: [&str; 7] = [
    "member_joined",
    "member_left",
    "message_posted",
    "reaction_added",
    "checkin",
    "activity_participated",
    "conversion",
];
const ZONES: [&str; 4] = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai"];

/// One raw event: (type, group, member, slot, bot?, extra) where `slot` picks one of few
/// instants, so that ties and boundaries (midnights, DST changes) come up often.
fn event_strategy() -> impl Strategy<Value = (usize, usize, usize, u32, bool, u8)> {
    // Hot slots: the start, around the US (slot 74) and EU (240) DST changes, and the March/April
    // month end (248); a third of the events land on them, so ties are common.
    let slot = prop_oneof![2 => 0..400u32, 1 => prop::sample::select(vec![0u32, 74, 75, 240, 241, 248, 249, 300])];
    (0..TYPES.len(), 0..3usize, 0..6usize, slot, prop::bool::weighted(0.05), any::<u8>())
}

fn build(raw: &[(usize, usize, usize, u32, bool, u8)]) -> Vec<Event> {
    // 2024-03-01 .. 2024-04-20 in 3-hour slots (crosses both DST changes and month ends).
    let base = 1_709_251_200_000i64;
    raw.iter()
        .enumerate()
        .map(|(i, &(t, g, m, slot, bot, extra))| {
            let mut props = serde_json::Map::new();
            match TYPES[t] {
                "member_joined" if extra % 3 == 0 => {
                    props.insert("inviter_id".into(), json!(format!("m{}", extra % 6)));
                }
                "member_left" => {
                    props.insert("reason".into(), json!(["left", "removed", "banned"][extra as usize % 3]));
                }
                "conversion" => {
                    props.insert("value".into(), json!(extra as f64 / 10.0));
                }
                _ => {}
            }
            let ts = base + slot as i64 * 3 * 3_600_000;
            let v = json!({"event_id": format!("e{i}"), "type": TYPES[t], "community_id": "p",
                           "group_id": format!("g{g}"), "member_id": format!("m{m}"),
                           "ts": schemas::event::format_ts(ts), "is_bot": bot, "props": props});
            parse_event_value(&v, None, &Limits::default()).unwrap()
        })
        .collect()
}

/// The event types whose bits are set: any configuration of participation and activation types.
fn types(bits: u8) -> Vec<schemas::EventType> {
    schemas::EventType::ALL.into_iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, t)| t).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_reference_for_any_order_duplication_batching_and_partitioning(
        raw in prop::collection::vec(event_strategy(), 1..60),
        order_seed in any::<u64>(),
        dup_every in 2usize..7,
        partitions in 1usize..4,
        flush_p in 0.0f64..0.5,
        zone in 0..ZONES.len(),
        min_events in 1u32..3,
        participation_bits in 0u8..128,
        activation_bits in 1u8..128,
    ) {
        let events = build(&raw);
        let mut sent: Vec<Event> = events.clone();
        sent.extend(events.iter().step_by(dup_every).cloned());
        let mut r = rng(order_seed);
        use rand::seq::SliceRandom;
        sent.shuffle(&mut r);
        let cfg = CommunityConfig {
            timezone: ZONES[zone].parse().unwrap(),
            activation_min_events: min_events,
            inactivity_days: 5,
            conversion_window_days: 10,
            referral_window_days: 7,
            participation_types: types(participation_bits),
            activation_types: types(activation_bits),
            ..CommunityConfig::default()
        };
        let configs = Configs { communities: [("p".to_string(), cfg.clone())].into(), ..Configs::default() };
        let tables = run_engine_flushing(&sent, partitions, &configs, &mut r, flush_p);
        assert_matches_any(&tables, &events, "p", &cfg);
    }

    /// A crash and restart anywhere (as the processor restarts: storage read back, the log
    /// replayed without writing) changes no final table.
    #[test]
    fn a_restart_anywhere_changes_nothing(
        raw in prop::collection::vec(event_strategy(), 1..60),
        order_seed in any::<u64>(),
        partitions in 1usize..4,
        flush_p in 0.05f64..0.6,
        crash_fraction in 0.0f64..1.0,
        zone in 0..ZONES.len(),
    ) {
        let events = build(&raw);
        let mut sent = events.clone();
        let mut r = rng(order_seed);
        use rand::seq::SliceRandom;
        sent.shuffle(&mut r);
        let cfg = CommunityConfig { timezone: ZONES[zone].parse().unwrap(), inactivity_days: 5, ..CommunityConfig::default() };
        let configs = Configs { communities: [("p".to_string(), cfg.clone())].into(), ..Configs::default() };
        let crash_at = ((sent.len() as f64) * crash_fraction) as usize;
        let tables = run_engine_with_restart(&sent, partitions, &configs, &mut r, flush_p, crash_at, 0.0);
        assert_matches_any(&tables, &events, "p", &cfg);
    }

    /// The same, resuming from saved engine state: the newest checkpoint of each partition
    /// (taken after any flush), the rows written after it, and the events after it.
    #[test]
    fn a_restart_from_a_checkpoint_changes_nothing(
        raw in prop::collection::vec(event_strategy(), 1..60),
        order_seed in any::<u64>(),
        partitions in 1usize..4,
        flush_p in 0.05f64..0.6,
        checkpoint_p in 0.1f64..1.0,
        crash_fraction in 0.0f64..1.0,
        zone in 0..ZONES.len(),
    ) {
        let events = build(&raw);
        let mut sent = events.clone();
        sent.extend(events.iter().step_by(3).cloned());
        let mut r = rng(order_seed);
        use rand::seq::SliceRandom;
        sent.shuffle(&mut r);
        let cfg = CommunityConfig { timezone: ZONES[zone].parse().unwrap(), inactivity_days: 5, ..CommunityConfig::default() };
        let configs = Configs { communities: [("p".to_string(), cfg.clone())].into(), ..Configs::default() };
        let crash_at = ((sent.len() as f64) * crash_fraction) as usize;
        let tables = run_engine_with_restart(&sent, partitions, &configs, &mut r, flush_p, crash_at, checkpoint_p);
        assert_matches_any(&tables, &events, "p", &cfg);
    }
}
