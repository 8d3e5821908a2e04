//! A deterministic synthetic community: the same seed gives the same events, byte for byte
//! (ChaCha8, whose stream is fixed by its specification). Several groups, months of joins (some
//! invited by earlier members), messages, reactions, check-ins, activities, leaves, removals, bans,
//! rejoins and conversions, with the skew of real communities: a few very active members and many
//! silent ones. Used by the demo, the tests and the benches.

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemas::{Event, EventType, LeaveReason};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Spec {
    pub community_id: String,
    pub seed: u64,
    pub members: usize,
    pub groups: usize,
    pub start: NaiveDate,
    pub days: u32,
    /// Adds a bot member whose events must be ignored by every metric.
    pub with_bot: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            community_id: "demo".into(),
            seed: 42,
            members: 3000,
            groups: 4,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            days: 180,
            with_bot: true,
        }
    }
}

const DAY_MS: i64 = 86_400_000;
const PLATFORMS: [&str; 5] = ["wechat", "qq", "discord", "slack", "telegram"];
const SOURCES: [&str; 4] = ["qr_code", "invite_link", "search", "import"];

struct Builder {
    spec: Spec,
    rng: ChaCha8Rng,
    events: Vec<Event>,
    end_ms: i64,
}

impl Builder {
    fn push(&mut self, t: EventType, group: usize, member: &str, ts_ms: i64, props: Map<String, Value>, is_bot: bool) {
        let ts_ms = ts_ms.min(self.end_ms);
        let n = self.events.len();
        let platform = PLATFORMS[group % PLATFORMS.len()];
        let ev = Event {
            event_id: format!("{}-{n:08}", self.spec.community_id),
            event_type: t,
            community_id: self.spec.community_id.clone(),
            group_id: format!("g{group}"),
            member_id: member.to_owned(),
            ts_ms,
            platform: Some(platform.to_owned()),
            is_bot,
            inviter_id: props.get("inviter_id").and_then(Value::as_str).map(str::to_owned),
            leave_reason: match props.get("reason").and_then(Value::as_str) {
                Some("removed") => LeaveReason::Removed,
                Some("banned") => LeaveReason::Banned,
                _ => LeaveReason::Left,
            },
            conversion_value: props.get("value").and_then(Value::as_f64),
            props,
        };
        self.events.push(ev);
    }

    fn uniform_ts(&mut self, from: i64, to: i64) -> i64 {
        if to <= from {
            return from;
        }
        // Whole seconds, as chat platforms report them.
        let t = self.rng.random_range(from..to);
        t - t.rem_euclid(1000)
    }

    /// Heavy-tailed activity: most members post little or nothing, a few post a lot.
    fn activity_rate_per_day(&mut self) -> f64 {
        let u: f64 = self.rng.random();
        if u < 0.45 {
            0.0
        } else {
            let v: f64 = self.rng.random::<f64>().max(1e-9);
            (0.05 / v.powf(0.8)).min(15.0)
        }
    }
}

/// Generates the community's events, ordered by `ts`.
pub fn generate(spec: &Spec) -> Vec<Event> {
    let start_ms = spec.start.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
    let end_ms = start_ms + spec.days as i64 * DAY_MS - 1000;
    let mut b = Builder { spec: spec.clone(), rng: ChaCha8Rng::seed_from_u64(spec.seed), events: Vec::new(), end_ms };
    let groups = spec.groups.max(1);
    // Joins come faster early on (a launch), then settle.
    let mut joined: Vec<(String, i64)> = Vec::with_capacity(spec.members);
    for m in 0..spec.members {
        let member = format!("m{m:06}");
        let u: f64 = b.rng.random();
        let join = start_ms + ((u.powf(1.3)) * (end_ms - start_ms) as f64 * 0.95) as i64;
        let join = join - join.rem_euclid(1000);
        let primary = b.rng.random_range(0..groups);
        let mut props = Map::new();
        props.insert("source".into(), json!(SOURCES[b.rng.random_range(0..SOURCES.len())]));
        if !joined.is_empty() && b.rng.random::<f64>() < 0.3 {
            // Invited by an earlier member, biased toward the earliest (most established) ones.
            let r: f64 = b.rng.random();
            let idx = ((r * r) * joined.len() as f64) as usize;
            let (inviter, inviter_join) = joined[idx.min(joined.len() - 1)].clone();
            if inviter_join <= join {
                props.insert("inviter_id".into(), json!(inviter));
            }
        }
        b.push(EventType::MemberJoined, primary, &member, join, props, false);
        joined.push((member.clone(), join));

        let mut member_groups = vec![(primary, join)];
        if groups > 1 && b.rng.random::<f64>() < 0.25 {
            let other = (primary + 1 + b.rng.random_range(0..groups - 1)) % groups;
            let t = b.uniform_ts(join, (join + 30 * DAY_MS).min(end_ms));
            b.push(EventType::MemberJoined, other, &member, t, Map::new(), false);
            member_groups.push((other, t));
        }

        let rate = b.activity_rate_per_day();
        let lifetime = (-(b.rng.random::<f64>().max(1e-9)).ln() * 60.0 * DAY_MS as f64) as i64 + DAY_MS;
        let active_until = (join + lifetime).min(end_ms);
        for &(g, g_join) in &member_groups {
            let days = (active_until - g_join).max(0) as f64 / DAY_MS as f64;
            let n_msgs = (rate * days * b.rng.random::<f64>() * 2.0).round() as usize;
            for _ in 0..n_msgs {
                let t = b.uniform_ts(g_join, active_until);
                let mut p = Map::new();
                p.insert("text_len".into(), json!(b.rng.random_range(1..400)));
                b.push(EventType::MessagePosted, g, &member, t, p, false);
            }
            let n_reactions = (n_msgs as f64 * 1.5 * b.rng.random::<f64>()).round() as usize;
            for _ in 0..n_reactions {
                let t = b.uniform_ts(g_join, active_until);
                let mut p = Map::new();
                p.insert("emoji".into(), json!("👍"));
                b.push(EventType::ReactionAdded, g, &member, t, p, false);
            }
        }
        if b.rng.random::<f64>() < 0.2 {
            let weeks = ((active_until - join) / (7 * DAY_MS)).max(1);
            for w in 0..weeks.min(20) {
                if b.rng.random::<f64>() < 0.6 {
                    let t = b.uniform_ts(join + w * 7 * DAY_MS, join + (w + 1) * 7 * DAY_MS);
                    let mut p = Map::new();
                    p.insert("campaign_id".into(), json!("daily-checkin"));
                    b.push(EventType::Checkin, primary, &member, t, p, false);
                }
            }
        }
        if b.rng.random::<f64>() < 0.1 {
            let t = b.uniform_ts(join, active_until);
            let mut p = Map::new();
            p.insert("activity_id".into(), json!(format!("event-{}", b.rng.random_range(1..10))));
            b.push(EventType::ActivityParticipated, primary, &member, t, p, false);
        }
        if b.rng.random::<f64>() < 0.02 {
            // History imported from before the join (counts for nothing but the archive).
            let t = b.uniform_ts(join - 10 * DAY_MS, join);
            b.push(EventType::MessagePosted, primary, &member, t, Map::new(), false);
        }
        if b.rng.random::<f64>() < 0.08 + rate.min(1.0) * 0.1 {
            let t = b.uniform_ts(join, (join + 45 * DAY_MS).min(end_ms));
            let mut p = Map::new();
            p.insert("name".into(), json!("membership_plan"));
            p.insert("value".into(), json!([9.9, 29.0, 99.0][b.rng.random_range(0..3)]));
            p.insert("currency".into(), json!("CNY"));
            b.push(EventType::Conversion, primary, &member, t, p, false);
        }
        if active_until < end_ms && b.rng.random::<f64>() < 0.45 {
            let reason = match b.rng.random::<f64>() {
                x if x < 0.8 => "left",
                x if x < 0.95 => "removed",
                _ => "banned",
            };
            let t = b.uniform_ts(active_until, (active_until + 3 * DAY_MS).min(end_ms));
            let mut p = Map::new();
            p.insert("reason".into(), json!(reason));
            b.push(EventType::MemberLeft, primary, &member, t, p, false);
            if reason == "left" && b.rng.random::<f64>() < 0.15 {
                let back = b.uniform_ts(t, (t + 20 * DAY_MS).min(end_ms));
                b.push(EventType::MemberJoined, primary, &member, back, Map::new(), false);
                let t2 = b.uniform_ts(back, end_ms);
                b.push(EventType::MessagePosted, primary, &member, t2, Map::new(), false);
            }
        }
    }
    if spec.with_bot {
        for d in 0..spec.days as i64 {
            let t = start_ms + d * DAY_MS + 9 * 3_600_000;
            b.push(EventType::MessagePosted, 0, "bot-welcome", t, Map::new(), true);
        }
        b.push(EventType::MemberJoined, 0, "bot-welcome", start_ms, Map::new(), true);
    }
    let mut events = b.events;
    events.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then_with(|| a.event_id.cmp(&b.event_id)));
    events
}

/// One event per line, in the SPEC's wire format.
pub fn to_ndjson(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&serde_json::to_string(&e.to_json()).expect("JSON"));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_and_events_are_valid() {
        let spec = Spec { members: 200, days: 60, ..Spec::default() };
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a, b);
        assert!(a.len() > 400, "{}", a.len());
        let other = generate(&Spec { seed: 7, ..spec.clone() });
        assert_ne!(a, other);
        for e in &a {
            let parsed = schemas::parse_event(&e.to_json_bytes(), None, &schemas::Limits::default()).unwrap();
            assert_eq!(&parsed, e);
        }
        for t in EventType::ALL {
            assert!(a.iter().any(|e| e.event_type == t), "no {t} generated");
        }
        assert!(a.iter().any(|e| e.inviter_id.is_some()));
        assert!(a.iter().any(|e| e.leave_reason == LeaveReason::Removed));
    }
}
