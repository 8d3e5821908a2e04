//! Inactivity-churn points waiting for `as_of` to reach their moment (SPEC 4.7): one per member
//! whose moment is still ahead, per scope and granularity, so there are about as many as members.
//!
//! They were an ordered map keyed by the whole term, about 78 bytes an entry, a fifth of the
//! engine's state. Here an entry is 16 bytes: the moment, the period it counts in, and a signed
//! count (a retraction is a negative entry, which cancels its positive twin when the two meet).
//! New entries go to an unsorted tail, merged into the sorted part once the tail is a quarter of
//! it, so that each entry is moved a bounded number of times and the tail never holds much.

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    moment: i64,
    period: i32,
    count: i32,
}

impl Point {
    fn key(&self) -> (i64, i32) {
        (self.moment, self.period)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PendingPoints {
    /// No zero count, in descending key order (keys unique unless a count would overflow): the
    /// earliest moments are at the end, where they are taken off.
    sorted: Vec<Point>,
    /// Any order, keys may repeat.
    tail: Vec<Point>,
    /// The earliest moment in `tail` (`i64::MAX` when empty): a flush whose `as_of` is before it
    /// need not look at the tail.
    tail_min_moment: i64,
}

impl Default for PendingPoints {
    fn default() -> Self {
        PendingPoints { sorted: Vec::new(), tail: Vec::new(), tail_min_moment: i64::MAX }
    }
}

impl PendingPoints {
    /// Adds `count` at `(moment, period)`.
    pub(crate) fn add(&mut self, moment: i64, period: i32, count: i32) {
        self.tail.push(Point { moment, period, count });
        self.tail_min_moment = self.tail_min_moment.min(moment);
        if self.tail.len() > self.sorted.len() / 4 + 64 {
            self.compact();
        }
    }

    /// Removes every point whose moment is at or before `as_of`, handing each `(period, count)`
    /// to `due` (a point and its retraction may come as two calls that cancel).
    pub(crate) fn take_due(&mut self, as_of: i64, mut due: impl FnMut(i32, i64)) -> bool {
        let mut any = false;
        while let Some(p) = self.sorted.last().filter(|p| p.moment <= as_of) {
            due(p.period, p.count as i64);
            self.sorted.pop();
            any = true;
        }
        if !self.tail.is_empty() && self.tail_min_moment <= as_of {
            let mut later = i64::MAX;
            self.tail.retain(|p| {
                if p.moment <= as_of {
                    due(p.period, p.count as i64);
                    any = true;
                    false
                } else {
                    later = later.min(p.moment);
                    true
                }
            });
            self.tail_min_moment = later;
        }
        any
    }

    /// Merges the tail into the sorted part, summing equal keys and dropping zero counts.
    fn compact(&mut self) {
        let mut tail = std::mem::take(&mut self.tail);
        tail.sort_unstable_by_key(|p| std::cmp::Reverse(p.key()));
        let mut merged = Vec::with_capacity(self.sorted.len() + tail.len());
        let (mut a, mut b) = (self.sorted.iter().peekable(), tail.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.key() >= y.key() => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            let p = *next.expect("peeked");
            match merged.last_mut() {
                Some(last) if Point::key(last) == p.key() => match last.count.checked_add(p.count) {
                    Some(sum) => last.count = sum,
                    // Only past two billion members at one instant; kept as two entries.
                    None => merged.push(p),
                },
                _ => merged.push(p),
            }
        }
        merged.retain(|p| p.count != 0);
        merged.shrink_to_fit();
        self.sorted = merged;
        tail.clear();
        self.tail = tail;
        self.tail_min_moment = i64::MAX;
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.sorted.len() + self.tail.len()
    }
}

/// Saved as one sorted sequence of `(moment, period, count)`, whatever the tail held.
impl Serialize for PendingPoints {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut all = self.clone();
        all.compact();
        let mut seq = s.serialize_seq(Some(all.sorted.len()))?;
        for p in &all.sorted {
            seq.serialize_element(&(p.moment, p.period, p.count))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for PendingPoints {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Points;
        impl<'de> Visitor<'de> for Points {
            type Value = PendingPoints;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of (moment, period, count)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PendingPoints, A::Error> {
                // Through the tail: the order on disk is trusted for nothing.
                let mut tail = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some((moment, period, count)) = seq.next_element::<(i64, i32, i32)>()? {
                    tail.push(Point { moment, period, count });
                }
                let mut points = PendingPoints { sorted: Vec::new(), tail, tail_min_moment: i64::MAX };
                points.compact();
                Ok(points)
            }
        }
        d.deserialize_seq(Points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The obvious model: a map from key to summed count.
    fn due_in_model(model: &mut BTreeMap<(i64, i32), i64>, as_of: i64) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        model.retain(|&(moment, period), count| {
            if moment <= as_of {
                *out.entry(period).or_insert(0) += *count;
                false
            } else {
                true
            }
        });
        out.retain(|_, v| *v != 0);
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(i64, i32, bool),
        Due(i64),
        Checkpoint,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0i64..40, 0i32..4, any::<bool>()).prop_map(|(g, p, neg)| Op::Add(g, p, neg)),
            1 => (0i64..40).prop_map(Op::Due),
            1 => Just(Op::Checkpoint),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn hands_out_what_a_map_would(ops in prop::collection::vec(op(), 0..400)) {
            let mut points = PendingPoints::default();
            let mut model = BTreeMap::new();
            let mut as_of = i64::MIN;
            for op in ops {
                match op {
                    Op::Add(moment, period, neg) => {
                        // As in the engine: a point already due is never added.
                        let moment = moment.max(as_of.saturating_add(1));
                        let count = if neg { -1 } else { 1 };
                        points.add(moment, period, count);
                        *model.entry((moment, period)).or_insert(0) += count as i64;
                    }
                    Op::Due(t) => {
                        as_of = as_of.max(t);
                        let mut got = BTreeMap::new();
                        points.take_due(as_of, |p, c| *got.entry(p).or_insert(0) += c);
                        got.retain(|_, v| *v != 0);
                        prop_assert_eq!(got, due_in_model(&mut model, as_of));
                    }
                    Op::Checkpoint => {
                        let bytes = postcard::to_allocvec(&points).expect("serialises");
                        points = postcard::from_bytes(&bytes).expect("deserialises");
                        prop_assert!(points.tail.is_empty());
                        prop_assert!(points.sorted.iter().all(|p| p.count != 0));
                        prop_assert!(points.sorted.windows(2).all(|w| w[0].key() > w[1].key()));
                    }
                }
            }
            let mut rest = BTreeMap::new();
            points.take_due(i64::MAX, |p, c| *rest.entry(p).or_insert(0) += c);
            rest.retain(|_, v| *v != 0);
            prop_assert_eq!(rest, due_in_model(&mut model, i64::MAX));
        }
    }

    #[test]
    fn a_point_and_its_retraction_leave_nothing_behind() {
        let mut points = PendingPoints::default();
        for i in 0..1000 {
            points.add(1_000 + i, 3, 1);
        }
        for i in 0..1000 {
            points.add(1_000 + i, 3, -1);
        }
        points.compact();
        assert_eq!(points.entries(), 0);
        assert!(!points.take_due(i64::MAX, |_, _| panic!("nothing is due")));
    }

    #[test]
    fn an_entry_takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Point>(), 16);
    }
}
