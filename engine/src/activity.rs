//! One member's contribution to the per-period tables of one scope (SPEC section 4, items 8 and
//! 9): daily engagement and lifecycle. Unlike cohort metrics these count every member with
//! activity, joined or not, and every participation event whatever its time relative to the join.

use crate::config::CommunityConfig;
use crate::contribution::{ScopeView, OPEN};
use crate::period::{local_day, period_of_day, Granularity};
use schemas::EventType;

/// Engagement series, in the column order of the `engagement` table.
pub const ENGAGEMENT: [&str; 10] =
    ["dau", "wau", "mau", "messages", "reactions", "checkins", "joins", "new_members", "leaves", "members"];
/// Lifecycle series, in the column order of the `lifecycle` table.
pub const LIFECYCLE: [&str; 4] = ["new", "returning", "resurrecting", "dormant"];

/// A term of a series: `value` on every period in `[start, end)` (`end == OPEN`: up to `as_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub series: u8,
    pub start: i32,
    pub end: i32,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Activity {
    /// Terms over local days.
    pub engagement: Vec<Term>,
    /// Terms over periods, per granularity.
    pub lifecycle: [Vec<Term>; 3],
}

fn point(series: usize, day: i32, value: i64) -> Term {
    Term { series: series as u8, start: day, end: day + 1, value }
}

/// `[d, d + width)` for every day `d`, merged where they overlap.
fn windows(days: &[i32], width: i32, series: usize, out: &mut Vec<Term>) {
    let mut current: Option<(i32, i32)> = None;
    for &d in days {
        match current {
            Some((s, e)) if d <= e => current = Some((s, e.max(d + width))),
            Some((s, e)) => {
                out.push(Term { series: series as u8, start: s, end: e, value: 1 });
                current = Some((d, d + width));
            }
            None => current = Some((d, d + width)),
        }
    }
    if let Some((s, e)) = current {
        out.push(Term { series: series as u8, start: s, end: e, value: 1 });
    }
}

/// Counts per day of the given timestamps (sorted days in, terms out).
fn per_day(mut days: Vec<i32>, series: usize, out: &mut Vec<Term>) {
    days.sort_unstable();
    let mut i = 0;
    while i < days.len() {
        let j = days[i..].iter().take_while(|&&d| d == days[i]).count();
        out.push(point(series, days[i], j as i64));
        i += j;
    }
}

pub fn activity(
    view: &ScopeView<'_>,
    cohort: Option<[i32; 3]>,
    join_ms: Option<i64>,
    cfg: &CommunityConfig,
) -> Activity {
    let tz = cfg.timezone;
    let mut act = Activity::default();
    let mut days: Vec<i32> = view.participation().map(|t| local_day(t, tz)).collect();
    days.sort_unstable();
    days.dedup();

    let e = &mut act.engagement;
    for &d in &days {
        e.push(point(0, d, 1));
    }
    windows(&days, cfg.wau_days as i32, 1, e);
    windows(&days, cfg.mau_days as i32, 2, e);
    for (series, t) in [(3, EventType::MessagePosted), (4, EventType::ReactionAdded), (5, EventType::Checkin)] {
        per_day(view.counted(t).map(|ts| local_day(ts, tz)).collect(), series, e);
    }
    per_day(view.join_times().map(|ts| local_day(ts, tz)).collect(), 6, e);
    if let Some(j) = join_ms {
        e.push(point(7, local_day(j, tz), 1));
    }
    let (ending, member_days) = membership_by_day(view, cfg);
    per_day(ending, 8, e);
    for (s, end) in member_days {
        e.push(Term { series: 9, start: s, end, value: 1 });
    }

    for g in Granularity::ALL {
        let mut periods: Vec<i32> = days.iter().map(|&d| period_of_day(d, g)).collect();
        periods.dedup();
        let l = &mut act.lifecycle[g.idx()];
        for (i, &p) in periods.iter().enumerate() {
            let prev_active = i > 0 && periods[i - 1] == p - 1;
            let kind = if cohort.is_some_and(|c| c[g.idx()] == p) {
                0
            } else if prev_active {
                1
            } else {
                2
            };
            l.push(point(kind, p, 1));
            let next_active = periods.get(i + 1) == Some(&(p + 1));
            if !next_active {
                l.push(point(3, p + 1, 1));
            }
        }
    }
    act
}

/// The days of membership-ending leaves (one per leave that takes the member out of the scope),
/// and the ranges of days at whose end the member is in.
fn membership_by_day(view: &ScopeView<'_>, cfg: &CommunityConfig) -> (Vec<i32>, Vec<(i32, i32)>) {
    // (ts, 0 = join / 1 = leave, group): joins apply before leaves at one instant.
    let mut timeline: Vec<(i64, u8, usize)> = Vec::new();
    for (gi, h) in view.groups.iter().enumerate() {
        timeline.extend(h.joins.iter().map(|j| (j.0, 0, gi)));
        timeline.extend(h.leaves.iter().map(|l| (l.0, 1, gi)));
    }
    timeline.sort_unstable();
    let mut in_group = vec![false; view.groups.len()];
    let mut inside = 0usize;
    let mut ending = Vec::new();
    let mut ranges = Vec::new();
    let mut open_since: Option<i32> = None;
    let mut i = 0;
    while i < timeline.len() {
        let day = local_day(timeline[i].0, cfg.timezone);
        while i < timeline.len() && local_day(timeline[i].0, cfg.timezone) == day {
            let (_, kind, gi) = timeline[i];
            if kind == 0 && !in_group[gi] {
                in_group[gi] = true;
                inside += 1;
            } else if kind == 1 && in_group[gi] {
                in_group[gi] = false;
                inside -= 1;
                if inside == 0 {
                    ending.push(day);
                }
            }
            i += 1;
        }
        match (inside > 0, open_since) {
            (true, None) => open_since = Some(day),
            (false, Some(s)) => {
                ranges.push((s, day));
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
