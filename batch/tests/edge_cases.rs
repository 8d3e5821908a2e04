//! Boundary instants the generator rarely produces, batch against the reference: events exactly
//! at the join, at `j + window` (excluded) and just before it, an inactivity span ending exactly on
//! a message, an invitee joining at the inviter's instant or exactly at the window's end, leaves
//! from two groups at one instant with different reasons, and a join and a leave at one instant.

mod common;

use batch::tables::{key, Cell};
use batch::{diff, recompute};
use common::reference_tables;
use engine::CommunityConfig;
use serde_json::json;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn ev(id: &str, ty: &str, group: &str, member: &str, ts: i64, props: serde_json::Value) -> schemas::Event {
    let mut v = json!({"event_id": id, "type": ty, "community_id": "edge", "group_id": group, "member_id": member,
                       "ts": schemas::event::format_ts(ts)});
    if props.as_object().is_some_and(|o| !o.is_empty()) {
        v["props"] = props;
    }
    schemas::validate::parse_event_value(&v, None, &schemas::validate::Limits::default()).unwrap()
}

fn events() -> Vec<schemas::Event> {
    let none = json!({});
    vec![
        ev("a1", "member_joined", "g1", "a", T0, none.clone()),
        ev("a2", "message_posted", "g1", "a", T0, none.clone()),
        ev("a3", "message_posted", "g1", "a", T0 + 30 * DAY, none.clone()),
        ev("a4", "message_posted", "g1", "a", T0 + 7 * DAY, none.clone()),
        ev("a5", "conversion", "g1", "a", T0 + 30 * DAY, json!({"value": 5.5})),
        ev("a6", "conversion", "g1", "a", T0 + 30 * DAY - 1, json!({"value": 1.25})),
        ev("b1", "member_joined", "g1", "b", T0 + 3_600_000, json!({"inviter_id": "a"})),
        ev("b2", "message_posted", "g1", "b", T0 + 3_600_000 + 7 * DAY, none.clone()),
        ev("b3", "message_posted", "g1", "b", T0 + 3_600_000 + 7 * DAY - 1, none.clone()),
        ev("c1", "member_joined", "g2", "c", T0 + 30 * DAY, json!({"inviter_id": "a"})),
        ev("d1", "member_joined", "g1", "d", T0, json!({"inviter_id": "a"})),
        ev("e1", "member_joined", "g1", "e", T0 + 2 * DAY, none.clone()),
        ev("e2", "member_joined", "g2", "e", T0 + 2 * DAY, none.clone()),
        ev("e3", "member_left", "g2", "e", T0 + 9 * DAY, json!({"reason": "left"})),
        ev("e4", "member_left", "g1", "e", T0 + 9 * DAY, json!({"reason": "removed"})),
        ev("f1", "member_joined", "g1", "f", T0 + 5 * DAY, none.clone()),
        ev("f2", "member_left", "g1", "f", T0 + 5 * DAY, json!({"reason": "banned"})),
        ev("f3", "member_joined", "g2", "f", T0 + 40 * DAY, none.clone()),
        ev("z1", "message_posted", "g2", "c", T0 + 61 * DAY, none),
    ]
}

#[test]
fn boundary_instants_agree_with_the_reference() {
    let cfg = CommunityConfig::default();
    let evs = events();
    let want = reference_tables(&evs, "edge", &cfg);
    let got = recompute(&evs, "edge", &cfg).unwrap();
    let d = diff(&want, &got);
    assert!(d.is_empty(), "{}", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n"));
    // The boundaries did what SPEC says, so the comparison is not vacuous.
    let c = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    assert_eq!(want.cells.get(&key::cohort("referral", "", "month", c, "invited")), Some(&Cell::Count(2)));
    assert_eq!(want.cells.get(&key::cohort("conversion", "", "month", c, "value")), Some(&Cell::Real(Some(1.25))));
    let removed = key::period("churn", "", "month", c, "left");
    assert_eq!(want.cells.get(&removed), Some(&Cell::Count(1)), "e's last ending leave (group g2) says left");
}
