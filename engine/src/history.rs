//! What the engine keeps of one member in one group: the small facts the metric predicates read.
//! Lists are appended in arrival order and sorted lazily, once per flush, because a member's
//! events arrive in any `ts` order.

use schemas::LeaveReason;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupHistory {
    /// `(ts, inviter_id)` of every `member_joined`.
    pub joins: Vec<(i64, Option<Box<str>>)>,
    pub leaves: Vec<(i64, LeaveReason)>,
    /// Timestamps of participation events (a multiset: distinct events may share a ts).
    pub participation: Vec<i64>,
    /// Timestamps of activation-type events.
    pub activation: Vec<i64>,
    /// `(ts, props.value in millionths)` of every `conversion` (value 0 when absent).
    pub conversions: Vec<(i64, i64)>,
    /// `(ts, type)` of every message, reaction and check-in (the engagement counts).
    pub counted: Vec<(i64, schemas::EventType)>,
    sorted: bool,
}

impl GroupHistory {
    pub fn mark_unsorted(&mut self) {
        self.sorted = false;
    }

    pub fn ensure_sorted(&mut self) {
        if self.sorted {
            return;
        }
        self.joins.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        self.leaves.sort_by_key(|l| (l.0, l.1 as u8));
        self.participation.sort_unstable();
        self.activation.sort_unstable();
        self.conversions.sort_unstable();
        self.counted.sort_unstable();
        self.sorted = true;
    }

    pub fn first_join(&self) -> Option<i64> {
        self.joins.iter().map(|j| j.0).min()
    }

    /// In the group after every join/leave with `ts <= x` (joins apply before leaves at one ts).
    /// Requires sorted lists.
    pub fn in_after(&self, x: i64) -> bool {
        let last_join = last_at_or_before(&self.joins, x, |j| j.0);
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
        h.joins.push((10, None));
        h.leaves.push((10, LeaveReason::Left));
        h.mark_unsorted();
        h.ensure_sorted();
        assert!(!h.in_after(9));
        assert!(!h.in_after(10));
        h.joins.push((20, None));
        h.mark_unsorted();
        h.ensure_sorted();
        assert!(h.in_after(20));
        assert!(!h.in_after(15));
    }
}
