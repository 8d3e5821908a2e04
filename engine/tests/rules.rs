//! Hand-made cases for SPEC's tricky rules, with numbers worked out by hand, checked against both
//! the engine and the reference computation (so each also checks the other).

use engine::table::Tables;
use engine::{Configs, Engine, Granularity, Mode};
use schemas::{parse_event_value, Event, Limits};
use serde_json::json;

fn ev(id: &str, t: &str, group: &str, member: &str, ts: &str) -> Event {
    ev_with(id, t, group, member, ts, json!({}), false)
}

fn ev_with(id: &str, t: &str, group: &str, member: &str, ts: &str, props: serde_json::Value, bot: bool) -> Event {
    let v = json!({"event_id": id, "type": t, "community_id": "c", "group_id": group, "member_id": member,
                   "ts": ts, "props": props, "is_bot": bot});
    parse_event_value(&v, None, &Limits::default()).unwrap()
}

/// alice: joins g1, posts, leaves, rejoins. bob: joins g1 and g2 at one instant, and leaves g1 at
/// that same instant (join applies first: out of g1, in the community through g2). carol: posts
/// before her join (does not count), and her join arrives after her messages. A bot is ignored.
fn scenario() -> Vec<Event> {
    vec![
        ev("c-early", "message_posted", "g2", "carol", "2024-01-05T00:00:00Z"),
        ev("c-msg1", "message_posted", "g2", "carol", "2024-01-09T06:00:00Z"),
        ev("c-msg2", "message_posted", "g2", "carol", "2024-01-16T00:00:00Z"),
        ev("a-join", "member_joined", "g1", "alice", "2024-01-01T10:00:00Z"),
        ev("a-msg", "message_posted", "g1", "alice", "2024-01-02T10:00:00Z"),
        ev("a-leave", "member_left", "g1", "alice", "2024-01-10T00:00:00Z"),
        ev("a-rejoin", "member_joined", "g1", "alice", "2024-01-20T00:00:00Z"),
        ev("b-join1", "member_joined", "g1", "bob", "2024-01-03T12:00:00Z"),
        ev("b-join2", "member_joined", "g2", "bob", "2024-01-03T12:00:00Z"),
        ev_with("b-leave1", "member_left", "g1", "bob", "2024-01-03T12:00:00Z", json!({"reason": "removed"}), false),
        ev("b-msg", "message_posted", "g2", "bob", "2024-01-29T09:00:00Z"),
        ev("c-join", "member_joined", "g2", "carol", "2024-01-08T00:00:00Z"),
        ev_with("bot-join", "member_joined", "g1", "bot", "2023-12-01T00:00:00Z", json!({}), true),
        ev_with("bot-msg", "message_posted", "g1", "bot", "2024-01-30T00:00:00Z", json!({}), true),
    ]
}

fn engine_tables(events: &[Event]) -> Tables {
    let mut e = Engine::new(Configs::default());
    let mut t = Tables::default();
    for (i, x) in events.iter().enumerate() {
        e.apply(x);
        if i % 3 == 2 {
            t.apply(&e.flush(&|_| None));
        }
    }
    t.apply(&e.flush(&|_| None));
    t
}

/// The tables of `events` applied in order and flushed once, in a community of time zone `zone`.
fn tables_in_zone(events: &[Event], zone: chrono_tz::Tz) -> Tables {
    let cfg = engine::CommunityConfig { timezone: zone, ..Default::default() };
    let configs = Configs { communities: [("c".to_string(), cfg)].into(), ..Configs::default() };
    let mut e = Engine::new(configs);
    for x in events {
        e.apply(x);
    }
    let mut t = Tables::default();
    t.apply(&e.flush(&|_| None));
    t
}

fn d(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

#[test]
fn weekly_tables_match_hand_computed_values() {
    let events = scenario();
    let t = engine_tables(&events);
    let r = reference::compute(&events, "c", &reference::Params::default());
    let w = Granularity::Week;
    let expected: &[(&str, Mode, &str, Vec<u64>)] = &[
        ("", Mode::Membership, "2024-01-01", vec![2, 1, 2, 2, 2]),
        ("", Mode::On, "2024-01-01", vec![1, 0, 0, 0, 1]),
        ("", Mode::OnOrAfter, "2024-01-01", vec![2, 1, 1, 1, 1]),
        ("", Mode::On, "2024-01-08", vec![1, 1, 0, 0]),
        ("", Mode::Membership, "2024-01-08", vec![1, 1, 1, 1]),
        ("g1", Mode::Membership, "2024-01-01", vec![1, 0, 1, 1, 1]),
        ("g1", Mode::On, "2024-01-01", vec![1, 0, 0, 0, 0]),
        ("g2", Mode::Membership, "2024-01-01", vec![1, 1, 1, 1, 1]),
        ("g2", Mode::On, "2024-01-01", vec![0, 0, 0, 0, 1]),
    ];
    for (scope, mode, cohort, values) in expected {
        let ctx = format!("{scope:?} {mode:?} {cohort}");
        assert_eq!(&t.retention_row("c", scope, w, *mode, d(cohort)), values, "engine {ctx}");
        assert_eq!(
            &r.retention[&(scope.to_string(), "week".into(), mode.as_str().into(), d(cohort))],
            values,
            "reference {ctx}"
        );
    }
    let size = |scope: &str, c: &str| t.cohorts.get(&("c".into(), scope.into(), w, d(c))).copied();
    assert_eq!((size("", "2024-01-01"), size("", "2024-01-08"), size("g1", "2024-01-01")), (Some(2), Some(1), Some(2)));
    assert_eq!(t.stats["c"].0, 14, "bot events are accepted events");
    assert!(!t.members.keys().any(|k| k.2 == "bot"), "bots are in no cohort");

    // Activation: alice after 24 h; bob's only message is outside his 7 days; carol after 30 h
    // (her message before the join does not count).
    let as_of = t.stats["c"].1;
    let a = t.activation("c", "", w, as_of);
    let a1 = &a[&d("2024-01-01")];
    assert_eq!((a1.size, a1.activated, a1.median_hours_to_activate, a1.complete), (2, 1, Some(24.0), true));
    let a2 = &a[&d("2024-01-08")];
    assert_eq!((a2.activated, a2.median_hours_to_activate), (1, Some(30.0)));
    let ra = &r.activation[&(String::new(), "week".into(), d("2024-01-01"))];
    assert_eq!((ra.size, ra.activated, ra.median_hours_to_activate, ra.complete), (2, 1, Some(24.0), true));
}

#[test]
fn a_late_join_moves_the_member_to_an_earlier_cohort_and_corrects_cells() {
    let mut e = Engine::new(Configs::default());
    let mut t = Tables::default();
    for x in [
        ev("j2", "member_joined", "g1", "m", "2024-02-05T00:00:00Z"),
        ev("p1", "message_posted", "g1", "m", "2024-01-10T00:00:00Z"),
        ev("p2", "message_posted", "g1", "m", "2024-02-06T00:00:00Z"),
    ] {
        e.apply(&x);
    }
    t.apply(&e.flush(&|_| None));
    let m = Granularity::Month;
    assert_eq!(t.cohorts[&("c".into(), "".into(), m, d("2024-02-01"))], 1);
    // The earlier join arrives late, for a month long closed.
    e.apply(&ev("j1", "member_joined", "g1", "m", "2024-01-01T00:00:00Z"));
    t.apply(&e.flush(&|_| None));
    assert_eq!(t.cohorts[&("c".into(), "".into(), m, d("2024-02-01"))], 0, "old cohort emptied");
    assert_eq!(t.cohorts[&("c".into(), "".into(), m, d("2024-01-01"))], 1);
    assert_eq!(t.retention_row("c", "", m, Mode::On, d("2024-01-01")), vec![1, 1]);
    assert_eq!(t.retention_row("c", "", m, Mode::On, d("2024-02-01")), vec![0], "old row zeroed, not left stale");
    // A duplicate changes nothing.
    assert!(!e.apply(&ev("j1", "member_joined", "g1", "m", "2024-01-01T00:00:00Z")));
    assert!(e.flush(&|_| None).is_empty());
}

#[test]
fn retention_rows_grow_with_the_community_as_of() {
    let mut e = Engine::new(Configs::default());
    let mut t = Tables::default();
    e.apply(&ev("j", "member_joined", "g1", "m", "2024-01-01T00:00:00Z"));
    t.apply(&e.flush(&|_| None));
    assert_eq!(t.retention_row("c", "", Granularity::Month, Mode::Membership, d("2024-01-01")), vec![1]);
    // Another partition saw an event in March: the row runs to March, the member still in.
    let march = chrono::DateTime::parse_from_rfc3339("2024-03-02T00:00:00Z").unwrap().timestamp_millis();
    t.apply(&e.flush(&|_| Some(march)));
    assert_eq!(t.retention_row("c", "", Granularity::Month, Mode::Membership, d("2024-01-01")), vec![1, 1, 1]);
    assert_eq!(t.retention_row("c", "", Granularity::Month, Mode::On, d("2024-01-01")), vec![0, 0, 0]);
}

#[test]
fn conversion_funnel_and_referral_by_hand() {
    let events = vec![
        // x: activates 2 h after joining, converts (9.9 + 0.1) at 5 h, then again after 40 days.
        ev("x-join", "member_joined", "g1", "x", "2024-01-01T00:00:00Z"),
        ev("x-msg", "message_posted", "g1", "x", "2024-01-01T02:00:00Z"),
        ev_with("x-buy", "conversion", "g1", "x", "2024-01-01T05:00:00Z", json!({"value": 9.9}), false),
        ev_with("x-buy2", "conversion", "g1", "x", "2024-01-01T06:00:00Z", json!({"value": 0.1}), false),
        ev_with("x-late", "conversion", "g1", "x", "2024-02-10T00:00:00Z", json!({"value": 100.0}), false),
        // y: invited by x within 30 days; converts before activating (not "activated then converted").
        ev_with("y-join", "member_joined", "g1", "y", "2024-01-03T00:00:00Z", json!({"inviter_id": "x"}), false),
        ev_with("y-buy", "conversion", "g1", "y", "2024-01-03T01:00:00Z", json!({}), false),
        ev("y-msg", "message_posted", "g1", "y", "2024-01-03T02:00:00Z"),
        // z: invited by x after x's 30-day window: referred, but not counted in x's `invited`.
        ev_with("z-join", "member_joined", "g1", "z", "2024-02-15T00:00:00Z", json!({"inviter_id": "x"}), false),
    ];
    let t = engine_tables(&events);
    let r = reference::compute(&events, "c", &reference::Params::default());
    let as_of = t.stats["c"].1;
    let m = Granularity::Month;
    let jan = &t.conversion("c", "", m, as_of)[&d("2024-01-01")];
    assert_eq!(
        (jan.size, jan.converted, jan.value_micros, jan.activated, jan.activated_then_converted),
        (2, 2, 10_000_000, 2, 1)
    );
    assert!(jan.complete, "both 30-day windows closed by 2024-02-15");
    let rjan = &r.conversion[&(String::new(), "month".into(), d("2024-01-01"))];
    assert_eq!((rjan.converted, rjan.value, rjan.activated_then_converted), (2, 10.0, 1));
    let feb = &t.conversion("c", "", m, as_of)[&d("2024-02-01")];
    assert!(!feb.complete, "z's window is open");
    let refs = t.referral("c", "", m);
    assert_eq!((refs[&d("2024-01-01")].referred, refs[&d("2024-01-01")].invited), (1, 1));
    assert_eq!((refs[&d("2024-02-01")].referred, refs[&d("2024-02-01")].invited), (1, 0));
    let rr = &r.referral[&(String::new(), "month".into(), d("2024-01-01"))];
    assert_eq!((rr.size, rr.referred, rr.invited, rr.k_factor), (2, 1, 1, 0.5));
}

#[test]
fn inactivity_churn_is_cancelled_by_a_late_message() {
    // m joins on 01-01 and posts on 01-05; 30 quiet days later (02-04) is an inactivity moment,
    // once as_of (another member's event on 02-20) has passed it.
    let mut events = vec![
        ev("j", "member_joined", "g1", "m", "2024-01-01T00:00:00Z"),
        ev("p1", "message_posted", "g1", "m", "2024-01-05T00:00:00Z"),
        ev("o", "member_joined", "g1", "other", "2024-02-20T00:00:00Z"),
    ];
    let m = Granularity::Month;
    let feb = ("c".to_string(), String::new(), m, d("2024-02-01"));
    let t = engine_tables(&events);
    assert_eq!(t.churn[&feb][4], 1, "inactive in February");
    let r = reference::compute(&events, "c", &reference::Params::default());
    assert_eq!(r.churn[&(String::new(), "month".into(), d("2024-02-01"))][4], 1);
    // A message on 01-20 arrives late: the quiet spell from 01-05 is broken, and the one from
    // 01-20 ends on 02-19, still in February.
    events.push(ev("p2", "message_posted", "g1", "m", "2024-01-20T00:00:00Z"));
    let t = engine_tables(&events);
    assert_eq!(t.churn[&feb][4], 1);
    // A second late message on 02-10 cancels February's moment; the next one (03-11) is after as_of.
    events.push(ev("p3", "message_posted", "g1", "m", "2024-02-10T00:00:00Z"));
    let t = engine_tables(&events);
    assert_eq!(t.churn.get(&feb).map_or(0, |v| v[4]), 0, "cancelled by the late message");
    let r = reference::compute(&events, "c", &reference::Params::default());
    assert_eq!(r.churn[&(String::new(), "month".into(), d("2024-02-01"))][4], 0);
}

#[test]
fn a_dst_day_in_new_york_is_one_local_day() {
    // 2024-03-10 in New York has 23 hours: 05:00Z (00:00 EST) to 04:00Z next day (00:00 EDT).
    let events = vec![
        ev("j", "member_joined", "g1", "m", "2024-03-10T05:00:00Z"),
        ev("a", "message_posted", "g1", "m", "2024-03-11T03:59:59Z"),
        ev("b", "message_posted", "g1", "m", "2024-03-11T04:00:00Z"),
    ];
    let t = tables_in_zone(&events, "America/New_York".parse().unwrap());
    let day = |s: &str| t.engagement[&("c".to_string(), String::new(), d(s))];
    assert_eq!(day("2024-03-10")[3], 1, "03:59:59Z on the 11th is still the 10th in New York");
    assert_eq!(day("2024-03-11")[3], 1);
    assert_eq!(t.retention_row("c", "", Granularity::Day, Mode::On, d("2024-03-10")), vec![1, 1]);
}

#[test]
fn simultaneous_leaves_from_two_groups_do_not_depend_on_arrival_order() {
    // Removed from g1 and leaving g2 at one instant: leaves apply in group-id order, so g2's
    // leave ends community membership and its reason (`left`) counts, in either arrival order.
    let base = vec![
        ev("j1", "member_joined", "g1", "m", "2024-01-01T00:00:00Z"),
        ev("j2", "member_joined", "g2", "m", "2024-01-02T00:00:00Z"),
        ev_with("l1", "member_left", "g1", "m", "2024-01-10T00:00:00Z", json!({"reason": "removed"}), false),
        ev_with("l2", "member_left", "g2", "m", "2024-01-10T00:00:00Z", json!({"reason": "left"}), false),
    ];
    let mut reversed = base.clone();
    reversed.reverse();
    let week = ("c".to_string(), String::new(), Granularity::Week, d("2024-01-08"));
    for events in [&base, &reversed] {
        let t = engine_tables(events);
        assert_eq!(t.churn[&week], [1, 1, 1, 0, 0], "members_start, churned, left, removed, inactive");
        let r = reference::compute(events, "c", &reference::Params::default());
        assert_eq!(r.churn[&(String::new(), "week".into(), d("2024-01-08"))], [1, 1, 1, 0, 0]);
    }
}

#[test]
fn two_joins_at_one_instant_credit_the_smaller_inviter() {
    // z joins g1 (invited by b) and g2 (invited by a) at one instant: the community-scope join
    // names `a`, the smaller id, whichever arrives first. a's cohort is January, b's February.
    let base = vec![
        ev("a-join", "member_joined", "g1", "a", "2024-01-10T00:00:00Z"),
        ev("b-join", "member_joined", "g1", "b", "2024-02-01T00:00:00Z"),
        ev_with("z-join1", "member_joined", "g1", "z", "2024-02-05T00:00:00Z", json!({"inviter_id": "b"}), false),
        ev_with("z-join2", "member_joined", "g2", "z", "2024-02-05T00:00:00Z", json!({"inviter_id": "a"}), false),
    ];
    let mut reversed = base.clone();
    reversed.reverse();
    let m = Granularity::Month;
    for events in [&base, &reversed] {
        let t = engine_tables(events);
        let refs = t.referral("c", "", m);
        assert_eq!((refs[&d("2024-01-01")].invited, refs[&d("2024-02-01")].invited), (1, 0), "community scope");
        let r = reference::compute(events, "c", &reference::Params::default());
        assert_eq!(r.referral[&(String::new(), "month".into(), d("2024-01-01"))].invited, 1);
    }
}

#[test]
fn a_zone_that_steps_back_a_day_counts_each_local_day_once() {
    // Sitka (Alaska) went from Russian to American time on 1867-10-19 at 15:30 local: the clock
    // went back a whole day, so local days do not rise with time. Messages at local Oct 19 12:00
    // (before the change), Oct 18 16:00 (after) and Oct 19 16:00 (a day later): DAU 1 on each day.
    let events = vec![
        ev("j", "member_joined", "g1", "m", "1867-10-18T00:00:00Z"),
        ev("a", "message_posted", "g1", "m", "1867-10-18T21:01:13Z"),
        ev("b", "message_posted", "g1", "m", "1867-10-19T01:01:13Z"),
        ev("c", "message_posted", "g1", "m", "1867-10-20T01:01:13Z"),
    ];
    let sitka: chrono_tz::Tz = "America/Sitka".parse().unwrap();
    let local = |i: usize| engine::period::day_to_date(engine::period::local_day(events[i].ts_ms, sitka)).to_string();
    assert_eq!([local(1), local(2), local(3)], ["1867-10-19", "1867-10-18", "1867-10-19"], "the zone data");
    let t = tables_in_zone(&events, sitka);
    let day = |s: &str| t.engagement[&("c".to_string(), String::new(), d(s))];
    assert_eq!((day("1867-10-18")[0], day("1867-10-18")[3]), (1, 1), "dau, messages");
    assert_eq!((day("1867-10-19")[0], day("1867-10-19")[3]), (1, 2), "dau, messages");
    let params = reference::Params { tz: sitka, ..reference::Params::default() };
    let r = reference::compute(&events, "c", &params);
    assert_eq!(r.engagement[&(String::new(), d("1867-10-19"))][0], 1);
}
