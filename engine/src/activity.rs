//! One member's contribution to the per-period tables of one scope (SPEC section 4, items 8 and
//! 9): daily engagement and lifecycle. Unlike cohort metrics these count every member with
//! activity, joined or not, and every participation event whatever its time relative to the join.

use crate::config::CommunityConfig;
use crate::contribution::{ScopeView, OPEN};
use crate::history::TypeSet;
use crate::period::{local_day, period_of_day, Granularity};
use schemas::EventType;
use serde::{Deserialize, Serialize};

/// Engagement series, in the column order of the `engagement` table.
pub const ENGAGEMENT: [&str; 10] =
    ["dau", "wau", "mau", "messages", "reactions", "checkins", "joins", "new_members", "leaves", "members"];
/// Lifecycle series, in the column order of the `lifecycle` table.
pub const LIFECYCLE: [&str; 4] = ["new", "returning", "resurrecting", "dormant"];
/// Churn series, in the column order of the `churn` table (`churn_rate` = churned / members_start).
pub const CHURN: [&str; 5] = ["members_start", "churned", "left", "removed", "inactive"];

/// A term of a series: `value` on every period in `[start, end)` (`end == OPEN`: up to `as_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The family of series the term adds to: `ENGAGEMENT_FAMILY`, `lifecycle_family(g)` or
    /// `churn_family(g)`.
    pub family: u8,
    pub series: u8,
    pub start: i32,
    pub end: i32,
    pub value: i64,
}

/// The families of per-period series, numbered as the engine keeps them: engagement (by day),
/// then lifecycle by day, week and month, then churn by day, week and month.
pub const ENGAGEMENT_FAMILY: u8 = 0;

pub fn lifecycle_family(g: Granularity) -> u8 {
    1 + g.idx() as u8
}

pub fn churn_family(g: Granularity) -> u8 {
    4 + g.idx() as u8
}

/// A member's terms in every family of one scope, in two flat lists: building and comparing
/// them is then two allocations, where a list per family and granularity took ten.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Activity {
    pub terms: Vec<Term>,
    /// `(family, period, moment)`: one member more in the `inactive` series of a churn family's
    /// `period`, counted only once `as_of` reaches `moment` (SPEC 4.7).
    pub inactive: Vec<(u8, i32, i64)>,
}

/// The churn series that `Activity::inactive` adds to.
pub const INACTIVE: u8 = 4;

fn point(family: u8, series: u8, period: i32, value: i64) -> Term {
    Term { family, series, start: period, end: period + 1, value }
}

/// `[d, d + width)` for every day `d`, merged where they overlap.
fn windows(days: &[i32], width: i32, series: u8, out: &mut Vec<Term>) {
    let mut current: Option<(i32, i32)> = None;
    let term = |(start, end)| Term { family: ENGAGEMENT_FAMILY, series, start, end, value: 1 };
    for &d in days {
        match current {
            Some((s, e)) if d <= e => current = Some((s, e.max(d + width))),
            Some(range) => {
                out.push(term(range));
                current = Some((d, d + width));
            }
            None => current = Some((d, d + width)),
        }
    }
    if let Some(range) = current {
        out.push(term(range));
    }
}

/// Counts per day, as engagement terms. `buf` is scratch space, reused between calls.
fn per_day(days: impl Iterator<Item = i32>, series: u8, buf: &mut Vec<i32>, out: &mut Vec<Term>) {
    buf.clear();
    buf.extend(days);
    // Nearly always in order already (which the sort checks in one pass); not always, as a
    // time zone may step back over midnight.
    buf.sort_unstable();
    let mut run: Option<(i32, i64)> = None;
    for &d in buf.iter() {
        run = match run {
            Some((day, n)) if day == d => Some((day, n + 1)),
            Some((day, n)) => {
                out.push(point(ENGAGEMENT_FAMILY, series, day, n));
                Some((d, 1))
            }
            None => Some((d, 1)),
        };
    }
    if let Some((day, n)) = run {
        out.push(point(ENGAGEMENT_FAMILY, series, day, n));
    }
}

pub fn activity(
    view: &ScopeView<'_>,
    cohort: Option<[i32; 3]>,
    join_ms: Option<i64>,
    cfg: &CommunityConfig,
) -> Activity {
    let tz = cfg.timezone;
    let mut days: Vec<i32> = view.participation().map(|(_, d)| d).collect();
    days.sort_unstable();
    days.dedup();
    let timeline = membership_timeline(view);
    // Room for the usual terms: per day active, its windows and counts, and a few per period.
    let mut terms = Vec::with_capacity(4 * days.len() + 2 * timeline.len() + 16);

    let e = &mut terms;
    for &d in &days {
        e.push(point(ENGAGEMENT_FAMILY, 0, d, 1));
    }
    windows(&days, cfg.wau_days as i32, 1, e);
    windows(&days, cfg.mau_days as i32, 2, e);
    let mut buf = Vec::new();
    for (series, t) in [(3, EventType::MessagePosted), (4, EventType::ReactionAdded), (5, EventType::Checkin)] {
        per_day(view.times(TypeSet::of(&[t])).map(|(_, d)| d), series, &mut buf, e);
    }
    per_day(view.join_times().map(|ts| local_day(ts, tz)), 6, &mut buf, e);
    if let Some(j) = join_ms {
        e.push(point(ENGAGEMENT_FAMILY, 7, local_day(j, tz), 1));
    }
    let (ending, member_days) = membership_by_period(view, &timeline, |t| local_day(t, tz));
    per_day(ending.iter().map(|x| x.0), 8, &mut buf, e);
    for (s, end) in member_days {
        e.push(Term { family: ENGAGEMENT_FAMILY, series: 9, start: s, end, value: 1 });
    }
    let moments = join_ms.map(|j| inactivity_moments(view, j, cfg)).unwrap_or_default();

    let (mut inactive, mut firsts) = (Vec::new(), Vec::new());
    let mut periods = Vec::with_capacity(days.len());
    for g in Granularity::ALL {
        periods.clear();
        periods.extend(days.iter().map(|&d| period_of_day(d, g)));
        periods.dedup();
        let lifecycle = lifecycle_family(g);
        for (i, &p) in periods.iter().enumerate() {
            let prev_active = i > 0 && periods[i - 1] == p - 1;
            let kind = if cohort.is_some_and(|c| c[g.idx()] == p) {
                0
            } else if prev_active {
                1
            } else {
                2
            };
            terms.push(point(lifecycle, kind, p, 1));
            let next_active = periods.get(i + 1) == Some(&(p + 1));
            if !next_active {
                terms.push(point(lifecycle, 3, p + 1, 1));
            }
        }
        let period = |t: i64| period_of_day(local_day(t, tz), g);
        let (ending, ranges) = membership_by_period(view, &timeline, period);
        let churn = churn_family(g);
        for &(s, end) in &ranges {
            // In at the end of s..end-1: in at the start of s+1..end; out at the end of `end`.
            let end_start = if end == OPEN { OPEN } else { end + 1 };
            terms.push(Term { family: churn, series: 0, start: s + 1, end: end_start, value: 1 });
            if end != OPEN {
                terms.push(point(churn, 1, end, 1));
            }
        }
        // Per period where the member ends out: the reason of the last membership-ending leave.
        let out_at_end = |p: i32| !ranges.iter().any(|&(s, e)| s <= p && (e == OPEN || p < e));
        let mut i = 0;
        while i < ending.len() {
            let p = ending[i].0;
            let last = ending[i..].iter().take_while(|x| x.0 == p).last().expect("non-empty");
            if out_at_end(p) {
                terms.push(point(churn, if last.1 == schemas::LeaveReason::Left { 2 } else { 3 }, p, 1));
            }
            i += ending[i..].iter().take_while(|x| x.0 == p).count();
        }
        // Distinct members with a moment in a period: the period's first moment gates it.
        firsts.clear();
        firsts.extend(moments.iter().map(|&m| (period(m), m)));
        firsts.sort_unstable();
        firsts.dedup_by_key(|x| x.0);
        inactive.extend(firsts.iter().map(|&(p, m)| (churn, p, m)));
    }
    Activity { terms, inactive }
}

/// Inactivity churn moments (SPEC 4.7): `t + T` for `t = j` and each participation time
/// `t >= j`, when there is no participation in `(t, t + T]` and the member is in at `t + T`.
/// Whether `t + T <= as_of` is left to the flush.
fn inactivity_moments(view: &ScopeView<'_>, j: i64, cfg: &CommunityConfig) -> Vec<i64> {
    let span = cfg.inactivity_days as i64 * crate::config::DAY_MS;
    let mut times: Vec<i64> = view.participation_from(j).map(|(t, _)| t).collect();
    times.dedup();
    let starts = std::iter::once(j).chain(times.iter().copied().filter(|&t| t != j));
    starts
        .filter(|&t| {
            let next = times.partition_point(|&x| x <= t);
            times.get(next).is_none_or(|&n| n > t + span)
        })
        .map(|t| t + span)
        .filter(|&m| view.groups.iter().any(|g| g.in_after(m)))
        .collect()
}

/// `(ts, 0 = join / 1 = leave, group, reason)`, sorted: joins apply before leaves at one instant.
fn membership_timeline(view: &ScopeView<'_>) -> Vec<(i64, u8, usize, schemas::LeaveReason)> {
    let mut timeline = Vec::new();
    for (gi, h) in view.groups.iter().enumerate() {
        timeline.extend(h.joins.iter().map(|&j| (j, 0u8, gi, schemas::LeaveReason::Left)));
        timeline.extend(h.leaves.iter().map(|l| (l.0, 1u8, gi, l.1)));
    }
    timeline.sort_unstable_by_key(|x| (x.0, x.1, x.2, x.3 as u8));
    timeline
}

/// Membership-ending leaves as `(period, reason)`, and ranges of periods at whose end the member is in.
type MembershipByPeriod = (Vec<(i32, schemas::LeaveReason)>, Vec<(i32, i32)>);

/// Membership-ending leaves (each leave that takes the member out of the scope) as
/// `(period, reason)` in time order, and the ranges of periods at whose end the member is in.
fn membership_by_period(
    view: &ScopeView<'_>,
    timeline: &[(i64, u8, usize, schemas::LeaveReason)],
    period: impl Fn(i64) -> i32,
) -> MembershipByPeriod {
    let mut in_group = vec![false; view.groups.len()];
    let mut inside = 0usize;
    let mut ending = Vec::new();
    let mut ranges = Vec::new();
    let mut open_since: Option<i32> = None;
    let mut i = 0;
    while i < timeline.len() {
        let p = period(timeline[i].0);
        while i < timeline.len() && period(timeline[i].0) == p {
            let (_, kind, gi, reason) = timeline[i];
            if kind == 0 && !in_group[gi] {
                in_group[gi] = true;
                inside += 1;
            } else if kind == 1 && in_group[gi] {
                in_group[gi] = false;
                inside -= 1;
                if inside == 0 {
                    ending.push((p, reason));
                }
            }
            i += 1;
        }
        match (inside > 0, open_since) {
            (true, None) => open_since = Some(p),
            (false, Some(s)) => {
                ranges.push((s, p));
                open_since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open_since {
        ranges.push((s, OPEN));
    }
    (ending, ranges)
}
