//! One member's contribution to the cohort tables of one scope: everything SPEC section 4 needs,
//! derived from the member's history alone (every metric decomposes by member). The engine
//! retracts a member's old contribution and adds the new one when the member's history changes.

use crate::config::CommunityConfig;
use crate::history::{stamp_ts, GroupHistory, Stamp, TypeSet};
use crate::period::{local_day, period_of_day, period_of_ts, period_start_ms, Granularity};
use serde::{Deserialize, Serialize};

/// Per granularity: the cohort and the offsets at which the member counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GranContribution {
    pub cohort: i32,
    /// Sorted distinct offsets `k` with a participation event (`ts >= j`) in period `cohort + k`.
    pub active: Vec<i32>,
    /// `[start, end)` offset ranges where the member is in at the end of period `cohort + k`;
    /// `end == OPEN` when still in after the last join/leave.
    pub membership: Vec<(i32, i32)>,
}

pub const OPEN: i32 = i32::MAX;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeContribution {
    pub join_ms: i64,
    /// Milliseconds from the join to the activating event, when activated.
    pub activation_ms: Option<i64>,
    pub activation_window_end_ms: i64,
    pub conversion: Conversion,
    /// `inviter_id` of the earliest join (the smallest one if several joins share that instant).
    pub inviter_id: Option<Box<str>>,
    pub referral_window_end_ms: i64,
    pub grans: [GranContribution; 3],
}

/// Conversions in `[j, j + conversion window)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Conversion {
    pub first_ms: Option<i64>,
    /// Sum of `props.value` of those conversions, in millionths (exact integer sums).
    pub value_micros: i64,
    pub window_end_ms: i64,
}

/// `props.value` in millionths: sums of these are exact and independent of order.
pub fn value_micros(v: Option<f64>) -> i64 {
    v.map(|v| (v * 1_000_000.0).round() as i64).unwrap_or(0)
}

/// A read-only view of a member's history in one scope: one group, or all groups of the
/// community, with every stamp's local day worked out once (the time-zone conversion is the
/// dearest step, and cohort and period metrics read the same days).
pub struct ScopeView<'a> {
    pub groups: &'a [&'a GroupHistory],
    /// Every stamp of the scope with its local day, in stamp order (`ts`, then type).
    stamps: Vec<(Stamp, i32)>,
    participation: TypeSet,
    activation: TypeSet,
}

impl<'a> ScopeView<'a> {
    /// The histories must be sorted.
    pub fn new(groups: &'a [&'a GroupHistory], cfg: &CommunityConfig) -> Self {
        let tz = cfg.timezone;
        let mut stamps = Vec::with_capacity(groups.iter().map(|g| g.stamps.len()).sum());
        for g in groups {
            stamps.extend(g.stamps.iter().map(|&s| (s, local_day(stamp_ts(s), tz))));
        }
        if groups.len() > 1 {
            stamps.sort_unstable();
        }
        ScopeView {
            groups,
            stamps,
            participation: TypeSet::of(&cfg.participation_types),
            activation: TypeSet::of(&cfg.activation_types),
        }
    }

    fn join_ms(&self) -> Option<i64> {
        self.groups.iter().filter_map(|g| g.first_join()).min()
    }

    fn in_after(&self, x: i64) -> bool {
        self.groups.iter().any(|g| g.in_after(x))
    }

    /// `(ts, local day)` of the events of these types, in `ts` order.
    pub(crate) fn times(&self, types: TypeSet) -> impl Iterator<Item = (i64, i32)> + '_ {
        self.stamps.iter().filter(move |(s, _)| types.has_stamp(*s)).map(|&(s, d)| (stamp_ts(s), d))
    }

    /// `times`, from the first event at or after `from`.
    fn times_from(&self, types: TypeSet, from: i64) -> impl Iterator<Item = (i64, i32)> + '_ {
        let start = self.stamps.partition_point(|&(s, _)| stamp_ts(s) < from);
        self.stamps[start..].iter().filter(move |(s, _)| types.has_stamp(*s)).map(|&(s, d)| (stamp_ts(s), d))
    }

    pub(crate) fn participation(&self) -> impl Iterator<Item = (i64, i32)> + '_ {
        self.times(self.participation)
    }

    /// Participation at or after `from`.
    pub(crate) fn participation_from(&self, from: i64) -> impl Iterator<Item = (i64, i32)> + '_ {
        self.times_from(self.participation, from)
    }

    pub(crate) fn join_times(&self) -> impl Iterator<Item = i64> + '_ {
        self.groups.iter().flat_map(|g| g.joins.iter().copied())
    }

    fn membership_change_times(&self) -> Vec<i64> {
        let mut t: Vec<i64> =
            self.groups.iter().flat_map(|g| g.joins.iter().copied().chain(g.leaves.iter().map(|l| l.0))).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    fn conversion(&self, j: i64, cfg: &CommunityConfig) -> Conversion {
        let end = j + cfg.conversion_window_ms();
        let mut c = Conversion { window_end_ms: end, ..Conversion::default() };
        for &(t, v) in self.groups.iter().flat_map(|g| g.conversions.iter()) {
            if t >= j && t < end {
                c.first_ms = Some(c.first_ms.map_or(t, |f: i64| f.min(t)));
                c.value_micros += v;
            }
        }
        c
    }

    fn inviter_at(&self, j: i64) -> Option<Box<str>> {
        self.groups.iter().flat_map(|g| g.invites.iter()).filter(|(t, _)| *t == j).map(|(_, i)| i.clone()).min()
    }

    /// The activating instant: the `min`-th activation-type event in `[j, j + window)`.
    fn activation_at(&self, j: i64, cfg: &CommunityConfig) -> Option<i64> {
        let nth = self.times_from(self.activation, j).nth(cfg.activation_min_events as usize - 1)?.0;
        (nth < j + cfg.activation_window_ms()).then_some(nth)
    }
}

/// The contribution of a member in one scope, or `None` when the member never joined it
/// (such a member belongs to no cohort).
pub fn contribution(view: &ScopeView<'_>, cfg: &CommunityConfig) -> Option<ScopeContribution> {
    let j = view.join_ms()?;
    let tz = cfg.timezone;
    let change_times = view.membership_change_times();
    // Distinct local days with participation from the join on.
    let mut days: Vec<i32> = view.participation_from(j).map(|(_, d)| d).collect();
    days.sort_unstable();
    days.dedup();
    let join_day = local_day(j, tz);
    let grans = Granularity::ALL.map(|g| {
        let cohort = period_of_day(join_day, g);
        let mut active: Vec<i32> = days.iter().map(|&d| period_of_day(d, g) - cohort).collect();
        active.dedup();
        GranContribution { cohort, active, membership: membership_ranges(view, &change_times, cohort, g, cfg) }
    });
    let activation_ms = view.activation_at(j, cfg).map(|t| t - j);
    Some(ScopeContribution {
        join_ms: j,
        activation_ms,
        activation_window_end_ms: j + cfg.activation_window_ms(),
        conversion: view.conversion(j, cfg),
        inviter_id: view.inviter_at(j),
        referral_window_end_ms: j + cfg.referral_window_ms(),
        grans,
    })
}

/// Offsets `k` where the member is in at the end of period `cohort + k`, as ranges. The state at
/// the end of a period only changes in periods that hold a join or leave, so only those are
/// evaluated (at the last instant before the next period starts).
fn membership_ranges(
    view: &ScopeView<'_>,
    change_times: &[i64],
    cohort: i32,
    g: Granularity,
    cfg: &CommunityConfig,
) -> Vec<(i32, i32)> {
    let tz = cfg.timezone;
    let mut periods: Vec<i32> = change_times.iter().map(|&t| period_of_ts(t, tz, g)).filter(|&p| p >= cohort).collect();
    periods.dedup();
    let mut ranges = Vec::new();
    let mut open_since: Option<i32> = None;
    for p in periods {
        let end_of_p = period_start_ms(p + 1, g, tz) - 1;
        let is_in = view.in_after(end_of_p);
        match (is_in, open_since) {
            (true, None) => open_since = Some(p - cohort),
            (false, Some(s)) => {
                ranges.push((s, p - cohort));
                open_since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open_since {
        ranges.push((s, OPEN));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{stamp, COUNTED};
    use schemas::EventType;

    #[test]
    fn a_view_merges_its_groups_stamps_in_ts_order_with_local_days() {
        let shanghai = CommunityConfig { timezone: "Asia/Shanghai".parse().unwrap(), ..CommunityConfig::default() };
        let (mut a, mut b) = (GroupHistory::default(), GroupHistory::default());
        // 15:59:59Z is 23:59:59 in Shanghai; 16:00Z is the next local day.
        let day = crate::config::DAY_MS;
        a.stamps.push(stamp(30 * day + 16 * 3_600_000, EventType::Checkin));
        b.stamps.push(stamp(10 * day, EventType::MessagePosted));
        a.stamps.push(stamp(20 * day + 16 * 3_600_000 - 1, EventType::ReactionAdded));
        b.stamps.push(stamp(40 * day, EventType::MemberJoined));
        a.sort();
        b.sort();
        let groups = [&a, &b];
        let view = ScopeView::new(&groups, &shanghai);
        let msgs = TypeSet::of(&[EventType::MessagePosted, EventType::Checkin]);
        assert_eq!(view.times(msgs).collect::<Vec<_>>(), [(10 * day, 10), (30 * day + 16 * 3_600_000, 31)]);
        assert_eq!(view.times_from(msgs, 10 * day + 1).collect::<Vec<_>>(), [(30 * day + 16 * 3_600_000, 31)]);
        assert_eq!(
            view.times_from(COUNTED, 20 * day).map(|(_, d)| d).collect::<Vec<_>>(),
            [20, 31],
            "a reaction one millisecond before local midnight is on the 20th"
        );
    }
}
