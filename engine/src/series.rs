//! A difference map over period indices (day, week or month numbers): the sums behind the
//! per-period tables. Stored as a plain array while the periods it spans stay few, which is
//! every real community (a day-indexed array over 44 years), so that a member's terms add in
//! O(1) each; an ordered map once an outlying timestamp would make the array large.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Widest span kept as an array: 16,384 periods, 128 KiB per series.
const MAX_DENSE_SPAN: i64 = 1 << 14;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DiffSeries {
    #[default]
    Empty,
    /// `values[i]` is the difference at period `base + i`.
    Dense {
        base: i32,
        values: Vec<i64>,
    },
    Sparse(BTreeMap<i32, i64>),
}

impl DiffSeries {
    pub(crate) fn add(&mut self, k: i32, v: i64) {
        if v == 0 {
            return;
        }
        match self {
            DiffSeries::Empty => *self = DiffSeries::Dense { base: k, values: vec![v] },
            DiffSeries::Sparse(m) => {
                let e = m.entry(k).or_insert(0);
                *e += v;
                if *e == 0 {
                    m.remove(&k);
                }
            }
            DiffSeries::Dense { base, values } => {
                let (b, len) = (*base as i64, values.len() as i64);
                let k64 = k as i64;
                if k64 >= b && k64 < b + len {
                    values[(k64 - b) as usize] += v;
                } else if k64 >= b + len && k64 - b < MAX_DENSE_SPAN {
                    values.resize((k64 - b + 1) as usize, 0);
                    values[(k64 - b) as usize] += v;
                } else if k64 < b && b + len - k64 <= MAX_DENSE_SPAN {
                    // Grow to the left by at least half the length, so that arrivals in
                    // descending order cost amortised O(1) too.
                    let room = MAX_DENSE_SPAN - len;
                    let shift = (b - k64).max(len / 2).min(room).min(b - i32::MIN as i64);
                    let mut grown = vec![0; shift as usize];
                    grown.extend_from_slice(values);
                    *values = grown;
                    *base = (b - shift) as i32;
                    values[(k64 - (b - shift)) as usize] += v;
                } else {
                    *self = DiffSeries::Sparse(self.entries().collect());
                    self.add(k, v);
                }
            }
        }
    }

    /// Non-zero differences in period order.
    pub(crate) fn entries(&self) -> Box<dyn Iterator<Item = (i32, i64)> + '_> {
        match self {
            DiffSeries::Empty => Box::new(std::iter::empty()),
            DiffSeries::Dense { base, values } => {
                Box::new(values.iter().enumerate().filter(|(_, &v)| v != 0).map(move |(i, &v)| (base + i as i32, v)))
            }
            DiffSeries::Sparse(m) => Box::new(m.iter().map(|(&k, &v)| (k, v))),
        }
    }

    pub(crate) fn first(&self) -> Option<i32> {
        self.entries().next().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a plain ordered map, for keys near each other and far apart, in any order.
        #[test]
        fn sums_like_an_ordered_map(ops in proptest::collection::vec(
            (prop_oneof![
                8 => -40i32..40,
                1 => Just(i32::MIN),
                1 => Just(i32::MAX - 1),
                1 => -30_000i32..30_000,
            ], -3i64..4),
            0..80,
        )) {
            let mut s = DiffSeries::default();
            let mut m = BTreeMap::new();
            for (k, v) in ops {
                s.add(k, v);
                *m.entry(k).or_insert(0) += v;
                m.retain(|_, v| *v != 0);
                let got: Vec<(i32, i64)> = s.entries().collect();
                let want: Vec<(i32, i64)> = m.iter().map(|(&k, &v)| (k, v)).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(s.first(), m.keys().next().copied());
            }
        }
    }

    #[test]
    fn stays_an_array_for_a_real_span_in_any_order() {
        let mut s = DiffSeries::default();
        for k in (0..5000).rev().chain(5000..9000) {
            s.add(k, 1);
        }
        assert!(matches!(&s, DiffSeries::Dense { values, .. } if values.len() as i64 <= MAX_DENSE_SPAN));
        s.add(9000 + MAX_DENSE_SPAN as i32, 1);
        assert!(matches!(s, DiffSeries::Sparse(_)));
        assert_eq!(s.entries().count(), 9001);
    }
}
