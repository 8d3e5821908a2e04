//! What the engine keeps of one member in one group: the small facts the metric predicates read.
//! Lists are appended in arrival order and sorted once per flush, because a member's
//! events arrive in any `ts` order.

use crate::thin_list::ThinList;
use schemas::{EventType, LeaveReason};
use serde::{Deserialize, Serialize};

/// An event's `ts` and type in one integer, `ts * 8 + type`: one list of these orders by `ts`
/// (then type) and takes 8 bytes per event, where separate participation, activation and count
/// lists took up to 32. A `ts` the validator accepts (years 0 to 9999) is far inside the range.
pub type Stamp = i64;

pub fn stamp(ts: i64, t: EventType) -> Stamp {
    ts * 8 + t as i64
}

pub fn stamp_ts(s: Stamp) -> i64 {
    s >> 3
}

/// A set of event types, as bits `1 << type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TypeSet(pub u8);

impl TypeSet {
    pub fn of(types: &[EventType]) -> Self {
        TypeSet(types.iter().fold(0, |m, &t| m | 1 << t as u8))
    }

    pub fn has(self, t: EventType) -> bool {
        self.0 & (1 << t as u8) != 0
    }

    pub fn has_stamp(self, s: Stamp) -> bool {
        self.0 & (1 << (s & 7)) != 0
    }
}

/// The engagement counts of SPEC 4.8, whatever the configuration: their events are always kept.
pub const COUNTED: TypeSet =
    TypeSet(1 << EventType::MessagePosted as u8 | 1 << EventType::ReactionAdded as u8 | 1 << EventType::Checkin as u8);

/// The lists are `ThinList`s: one pointer each, and nothing allocated while empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupHistory {
    /// `ts` of every `member_joined`.
    pub joins: ThinList<i64>,
    /// `(ts, inviter_id)` of the joins that name an inviter: few do, so the others' 16 bytes of
    /// an absent id are not kept.
    pub invites: ThinList<(i64, Box<str>)>,
    pub leaves: ThinList<(i64, LeaveReason)>,
    /// `(ts, props.value in millionths)` of every `conversion` (value 0 when absent).
    pub conversions: ThinList<(i64, i64)>,
    /// Stamps of every participation-type, activation-type and counted event (a multiset:
    /// distinct events may share a ts and type).
    pub stamps: ThinList<Stamp>,
}

impl GroupHistory {
    /// Sorts every list. Lists already in order (the member's other groups) cost one pass each,
    /// which is cheaper than the flag per group that would skip them.
    pub fn sort(&mut self) {
        self.joins.sort_unstable();
        self.invites.sort_unstable();
        self.leaves.sort_unstable_by_key(|l| (l.0, l.1 as u8));
        self.conversions.sort_unstable();
        self.stamps.sort_unstable();
    }

    pub fn shrink_to_fit(&mut self) {
        self.joins.shrink_to_fit();
        self.invites.shrink_to_fit();
        self.leaves.shrink_to_fit();
        self.conversions.shrink_to_fit();
        self.stamps.shrink_to_fit();
    }

    pub fn first_join(&self) -> Option<i64> {
        self.joins.iter().copied().min()
    }

    /// In the group after every join/leave with `ts <= x` (joins apply before leaves at one ts).
    /// Requires sorted lists.
    pub fn in_after(&self, x: i64) -> bool {
        let last_join = last_at_or_before(&self.joins, x, |&j| j);
        let last_leave = last_at_or_before(&self.leaves, x, |l| l.0);
        match (last_join, last_leave) {
            (None, _) => false,
            (Some(_), None) => true,
            // A leave at the same ts as the join applies after it.
            (Some(j), Some(l)) => j > l,
        }
    }
}

fn last_at_or_before<T>(sorted: &[T], x: i64, ts: impl Fn(&T) -> i64) -> Option<i64> {
    let n = sorted.partition_point(|e| ts(e) <= x);
    (n > 0).then(|| ts(&sorted[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_apply_before_leaves_at_the_same_instant() {
        let mut h = GroupHistory::default();
        h.joins.push(10);
        h.leaves.push((10, LeaveReason::Left));
        h.sort();
        assert!(!h.in_after(9));
        assert!(!h.in_after(10));
        h.joins.push(20);
        h.sort();
        assert!(h.in_after(20));
        assert!(!h.in_after(15));
    }

    /// The type a stamp holds (the engine reads it only through `TypeSet::has_stamp`).
    fn stamp_type(s: Stamp) -> EventType {
        EventType::ALL[(s & 7) as usize]
    }

    #[test]
    fn stamps_keep_ts_and_type_and_order_by_ts() {
        let far = [-62_135_596_800_000, -1, 0, 1, 1_700_000_000_000, 253_402_300_799_999];
        for (i, &ts) in far.iter().enumerate() {
            for t in EventType::ALL {
                let s = stamp(ts, t);
                assert_eq!((stamp_ts(s), stamp_type(s)), (ts, t));
                if let Some(&next) = far.get(i + 1) {
                    assert!(s < stamp(next, EventType::MemberJoined), "{ts} {t:?}");
                }
            }
        }
        assert!(EventType::ALL.iter().enumerate().all(|(i, &t)| t as usize == i));
    }
}
