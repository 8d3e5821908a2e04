//! The reference computation: SPEC section 4 read literally, with plain loops over the event list.
//! Slow (quadratic in places) and written without looking at the engine, so that the engine, the
//! processor and the query API can be checked against it. Shares nothing with the engine but the
//! event type.

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use schemas::{Event, EventType};
use std::collections::{BTreeMap, BTreeSet, HashSet};

#[derive(Debug, Clone)]
pub struct Params {
    pub tz: Tz,
    pub participation: Vec<EventType>,
    pub activation_types: Vec<EventType>,
    pub activation_window_days: i64,
    pub activation_min: usize,
    pub conversion_window_days: i64,
    pub referral_window_days: i64,
    pub wau_days: i64,
    pub mau_days: i64,
    pub inactivity_days: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            tz: Tz::UTC,
            participation: vec![
                EventType::MessagePosted,
                EventType::ReactionAdded,
                EventType::Checkin,
                EventType::ActivityParticipated,
            ],
            activation_types: vec![EventType::MessagePosted],
            activation_window_days: 7,
            activation_min: 1,
            conversion_window_days: 30,
            referral_window_days: 30,
            wau_days: 7,
            mau_days: 28,
            inactivity_days: 30,
        }
    }
}

pub const GRANULARITIES: [&str; 3] = ["day", "week", "month"];
pub const MODES: [&str; 3] = ["on", "on_or_after", "membership"];

#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRow {
    pub size: u64,
    pub activated: u64,
    pub median_hours_to_activate: Option<f64>,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConversionRow {
    pub size: u64,
    pub converted: u64,
    /// Sum of `props.value`, summed in millionths then divided once.
    pub value: f64,
    pub activated: u64,
    pub activated_then_converted: u64,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRow {
    pub size: u64,
    pub referred: u64,
    pub invited: u64,
    pub k_factor: f64,
}

/// Everything the reference computes for one community.
#[derive(Debug, Default, Clone)]
pub struct Reference {
    pub as_of_ms: Option<i64>,
    pub events_processed: u64,
    /// (group or "" for community, granularity, cohort) -> size
    pub sizes: BTreeMap<(String, String, NaiveDate), u64>,
    /// (group, granularity, mode, cohort) -> one value per period from the cohort to as_of
    pub retention: BTreeMap<(String, String, String, NaiveDate), Vec<u64>>,
    /// (group, granularity, cohort) -> activation
    pub activation: BTreeMap<(String, String, NaiveDate), ActivationRow>,
    /// (group, granularity, cohort) -> conversion and funnel
    pub conversion: BTreeMap<(String, String, NaiveDate), ConversionRow>,
    /// (group, granularity, cohort) -> referral
    pub referral: BTreeMap<(String, String, NaiveDate), ReferralRow>,
    /// (group, day) -> dau, wau, mau, messages, reactions, checkins, joins, new_members, leaves,
    /// members; every day from the community's first event to as_of
    pub engagement: BTreeMap<(String, NaiveDate), [u64; 10]>,
    /// (group, granularity, period) -> new, returning, resurrecting, dormant; every period from the
    /// community's first event to as_of
    pub lifecycle: BTreeMap<(String, String, NaiveDate), [u64; 4]>,
    /// (group, granularity, period) -> members_start, churned (in at the start, out at the end),
    /// left, removed, inactive; every period from the community's first event to as_of
    pub churn: BTreeMap<(String, String, NaiveDate), [u64; 5]>,
}

/// The local date of an instant.
fn local_date(ts_ms: i64, tz: Tz) -> NaiveDate {
    Utc.timestamp_millis_opt(ts_ms).unwrap().with_timezone(&tz).date_naive()
}

/// The first day of the period holding `d`.
fn period_start(d: NaiveDate, g: &str) -> NaiveDate {
    match g {
        "day" => d,
        "week" => d - Duration::days(d.weekday().num_days_from_monday() as i64),
        "month" => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap(),
        _ => panic!("granularity {g}"),
    }
}

/// The first day of the period after the one starting on `start`.
fn next_period(start: NaiveDate, g: &str) -> NaiveDate {
    match g {
        "day" => start + Duration::days(1),
        "week" => start + Duration::days(7),
        "month" => {
            if start.month() == 12 {
                NaiveDate::from_ymd_opt(start.year() + 1, 1, 1).unwrap()
            } else {
                NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1).unwrap()
            }
        }
        _ => panic!("granularity {g}"),
    }
}

/// The UTC instant of local midnight on `d` (the first existing local minute if midnight is skipped).
fn start_instant(d: NaiveDate, tz: Tz) -> i64 {
    let mut t = d.and_hms_opt(0, 0, 0).unwrap();
    loop {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.timestamp_millis();
        }
        t += Duration::minutes(1);
    }
}

/// Whole periods from the period starting at `from` to the one starting at `to`, counted one by one.
fn periods_between(from: NaiveDate, to: NaiveDate, g: &str) -> usize {
    let mut n = 0;
    let mut p = from;
    while p < to {
        p = next_period(p, g);
        n += 1;
    }
    assert_eq!(p, to, "period starts must align");
    n
}

fn is_in(member_events: &[&Event], groups: &[String], x: i64) -> bool {
    groups.iter().any(|g| {
        // In a group after the last of its join/leave events with ts <= x, joins before leaves at one ts.
        let mut changes: Vec<(i64, u8)> = member_events
            .iter()
            .filter(|e| &e.group_id == g && e.ts_ms <= x)
            .filter_map(|e| match e.event_type {
                EventType::MemberJoined => Some((e.ts_ms, 0)),
                EventType::MemberLeft => Some((e.ts_ms, 1)),
                _ => None,
            })
            .collect();
        changes.sort();
        changes.last().is_some_and(|c| c.1 == 0)
    })
}

/// Median of millisecond delays, in hours (the mean of the two middle values when even). Computed
/// in milliseconds first so that the one rounding is the final division.
fn median(mut xs: Vec<i64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort();
    let n = xs.len();
    let ms = if n % 2 == 1 { xs[n / 2] as f64 } else { (xs[n / 2 - 1] + xs[n / 2]) as f64 / 2.0 };
    Some(ms / 3_600_000.0)
}

/// Computes the reference tables of `community` from any list of events (duplicates and other
/// communities' events allowed).
pub fn compute(all: &[Event], community: &str, p: &Params) -> Reference {
    let mut seen = HashSet::new();
    let accepted: Vec<&Event> =
        all.iter().filter(|e| e.community_id == community).filter(|e| seen.insert(e.event_id.clone())).collect();
    let mut r = Reference { events_processed: accepted.len() as u64, ..Default::default() };
    r.as_of_ms = accepted.iter().map(|e| e.ts_ms).max();
    let Some(as_of) = r.as_of_ms else { return r };
    let accepted_min_ts = accepted.iter().map(|e| e.ts_ms).min().expect("non-empty");
    let events: Vec<&Event> = accepted.into_iter().filter(|e| !e.is_bot).collect();
    let events = &events;

    let groups: BTreeSet<String> = events.iter().map(|e| e.group_id.clone()).collect();
    let mut scopes: Vec<(String, Vec<String>)> = groups.iter().map(|g| (g.clone(), vec![g.clone()])).collect();
    scopes.push((String::new(), groups.iter().cloned().collect()));

    for (scope, scope_groups) in &scopes {
        let in_scope: Vec<&Event> = events.iter().copied().filter(|e| scope_groups.contains(&e.group_id)).collect();
        let members: BTreeSet<&str> = in_scope.iter().map(|e| e.member_id.as_str()).collect();
        for member in members {
            let mine: Vec<&Event> = in_scope.iter().copied().filter(|e| e.member_id == member).collect();
            let Some(j) = mine.iter().filter(|e| e.event_type == EventType::MemberJoined).map(|e| e.ts_ms).min() else {
                continue;
            };
            let participation: Vec<i64> = mine
                .iter()
                .filter(|e| p.participation.contains(&e.event_type) && e.ts_ms >= j)
                .map(|e| e.ts_ms)
                .collect();
            for g in GRANULARITIES {
                let cohort = period_start(local_date(j, p.tz), g);
                *r.sizes.entry((scope.clone(), g.into(), cohort)).or_default() += 1;
                let last = period_start(local_date(as_of, p.tz), g);
                let n = periods_between(cohort, last, g) + 1;
                let mut period = cohort;
                for k in 0..n {
                    let next = next_period(period, g);
                    let (lo, hi) = (start_instant(period, p.tz), start_instant(next, p.tz));
                    let on = participation.iter().any(|&t| t >= lo && t < hi);
                    let on_or_after = participation.iter().any(|&t| t >= lo);
                    let member_at_end = is_in(&mine, scope_groups, hi - 1);
                    for (mode, hit) in [("on", on), ("on_or_after", on_or_after), ("membership", member_at_end)] {
                        let row = r
                            .retention
                            .entry((scope.clone(), g.into(), mode.into(), cohort))
                            .or_insert_with(|| vec![0; n]);
                        if hit {
                            row[k] += 1;
                        }
                    }
                    period = next;
                }
            }
        }
    }

    // Activation, from the member list again so that it does not lean on the loop above.
    for (scope, scope_groups) in &scopes {
        let in_scope: Vec<&Event> = events.iter().copied().filter(|e| scope_groups.contains(&e.group_id)).collect();
        let members: BTreeSet<&str> = in_scope.iter().map(|e| e.member_id.as_str()).collect();
        for g in GRANULARITIES {
            let mut per_cohort: BTreeMap<NaiveDate, (u64, Vec<i64>, bool)> = BTreeMap::new();
            for member in &members {
                let mine: Vec<&Event> = in_scope.iter().copied().filter(|e| e.member_id == *member).collect();
                let Some(j) = mine.iter().filter(|e| e.event_type == EventType::MemberJoined).map(|e| e.ts_ms).min()
                else {
                    continue;
                };
                let window_end = j + p.activation_window_days * 86_400_000;
                let mut times: Vec<i64> = mine
                    .iter()
                    .filter(|e| p.activation_types.contains(&e.event_type) && e.ts_ms >= j && e.ts_ms < window_end)
                    .map(|e| e.ts_ms)
                    .collect();
                times.sort();
                let cohort = period_start(local_date(j, p.tz), g);
                let entry = per_cohort.entry(cohort).or_insert((0, vec![], true));
                entry.0 += 1;
                if times.len() >= p.activation_min {
                    entry.1.push(times[p.activation_min - 1] - j);
                }
                if window_end > as_of {
                    entry.2 = false;
                }
            }
            for (cohort, (size, hours, complete)) in per_cohort {
                r.activation.insert(
                    (scope.clone(), g.into(), cohort),
                    ActivationRow {
                        size,
                        activated: hours.len() as u64,
                        median_hours_to_activate: median(hours),
                        complete,
                    },
                );
            }
        }
    }
    conversion_and_referral(events, &scopes, as_of, p, &mut r);
    let first = accepted_min_ts;
    engagement_and_lifecycle(events, &scopes, first, as_of, p, &mut r);
    churn(events, &scopes, first, as_of, p, &mut r);
    r
}

/// Membership-ending leaves of one member in a scope: leaves after which the member is in no
/// group of the scope while they were in one just before (joins first at one instant).
fn ending_leaves(mine: &[&Event], groups: &[String]) -> Vec<(i64, schemas::LeaveReason)> {
    let mut changes: Vec<(i64, u8, &str, u8, schemas::LeaveReason)> = mine
        .iter()
        .filter(|e| groups.contains(&e.group_id))
        .filter_map(|e| match e.event_type {
            EventType::MemberJoined => Some((e.ts_ms, 0, e.group_id.as_str(), 0, e.leave_reason)),
            EventType::MemberLeft => Some((e.ts_ms, 1, e.group_id.as_str(), e.leave_reason as u8, e.leave_reason)),
            _ => None,
        })
        .collect();
    changes.sort_by_key(|c| (c.0, c.1, c.2.to_owned(), c.3));
    let mut inside: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for (ts, kind, g, _, reason) in changes {
        if kind == 0 {
            inside.insert(g);
        } else if inside.remove(g) && inside.is_empty() {
            out.push((ts, reason));
        }
    }
    out
}

/// A member's events in a scope, membership-ending leaves, and inactivity churn moments.
type MemberChurn<'a> = (Vec<&'a Event>, Vec<(i64, schemas::LeaveReason)>, Vec<i64>);

fn churn(events: &[&Event], scopes: &[(String, Vec<String>)], first: i64, as_of: i64, p: &Params, r: &mut Reference) {
    let span = p.inactivity_days * 86_400_000;
    let (first_day, last_day) = (local_date(first, p.tz), local_date(as_of, p.tz));
    for (scope, scope_groups) in scopes {
        let in_scope: Vec<&Event> = events.iter().copied().filter(|e| scope_groups.contains(&e.group_id)).collect();
        let members: BTreeSet<&str> = in_scope.iter().map(|e| e.member_id.as_str()).collect();
        // Per member: events, membership-ending leaves, inactivity churn moments (all <= as_of).
        let per_member: Vec<MemberChurn> = members
            .iter()
            .map(|m| {
                let mine: Vec<&Event> = in_scope.iter().copied().filter(|e| e.member_id == *m).collect();
                let leaves = ending_leaves(&mine, scope_groups);
                let j = mine.iter().filter(|e| e.event_type == EventType::MemberJoined).map(|e| e.ts_ms).min();
                let mut moments = Vec::new();
                if let Some(j) = j {
                    let times: Vec<i64> = mine
                        .iter()
                        .filter(|e| p.participation.contains(&e.event_type) && e.ts_ms >= j)
                        .map(|e| e.ts_ms)
                        .collect();
                    for t in std::iter::once(j).chain(times.iter().copied()) {
                        let quiet = !times.iter().any(|&x| x > t && x <= t + span);
                        if quiet && t + span <= as_of && is_in(&mine, scope_groups, t + span) {
                            moments.push(t + span);
                        }
                    }
                }
                (mine, leaves, moments)
            })
            .collect();
        for g in GRANULARITIES {
            let mut period = period_start(first_day, g);
            while period <= last_day {
                let next = next_period(period, g);
                let (lo, hi) = (start_instant(period, p.tz), start_instant(next, p.tz));
                let mut row = [0u64; 5];
                for (mine, leaves, moments) in &per_member {
                    let at_start = is_in(mine, scope_groups, lo - 1);
                    let at_end = is_in(mine, scope_groups, hi - 1);
                    row[0] += at_start as u64;
                    row[1] += (at_start && !at_end) as u64;
                    if !at_end {
                        if let Some((_, reason)) = leaves.iter().rfind(|l| l.0 >= lo && l.0 < hi) {
                            if *reason == schemas::LeaveReason::Left {
                                row[2] += 1;
                            } else {
                                row[3] += 1;
                            }
                        }
                    }
                    row[4] += moments.iter().any(|&m| m >= lo && m < hi) as u64;
                }
                r.churn.insert((scope.clone(), g.into(), period), row);
                period = next;
            }
        }
    }
}

/// A member's events in a scope, join time, active days and days of membership-ending leaves.
type MemberDays<'a> = (Vec<&'a Event>, Option<i64>, Vec<NaiveDate>, Vec<NaiveDate>);

fn engagement_and_lifecycle(
    events: &[&Event],
    scopes: &[(String, Vec<String>)],
    first: i64,
    as_of: i64,
    p: &Params,
    r: &mut Reference,
) {
    let first_day = local_date(first, p.tz);
    let last_day = local_date(as_of, p.tz);
    for (scope, scope_groups) in scopes {
        let in_scope: Vec<&Event> = events.iter().copied().filter(|e| scope_groups.contains(&e.group_id)).collect();
        let members: BTreeSet<&str> = in_scope.iter().map(|e| e.member_id.as_str()).collect();
        let per_member: Vec<MemberDays> = members
            .iter()
            .map(|m| {
                let mine: Vec<&Event> = in_scope.iter().copied().filter(|e| e.member_id == *m).collect();
                let j = mine.iter().filter(|e| e.event_type == EventType::MemberJoined).map(|e| e.ts_ms).min();
                let active: Vec<NaiveDate> = mine
                    .iter()
                    .filter(|e| p.participation.contains(&e.event_type))
                    .map(|e| local_date(e.ts_ms, p.tz))
                    .collect();
                let ending: Vec<NaiveDate> =
                    ending_leaves(&mine, scope_groups).into_iter().map(|(t, _)| local_date(t, p.tz)).collect();
                (mine, j, active, ending)
            })
            .collect();
        let mut d = first_day;
        while d <= last_day {
            let mut row = [0u64; 10];
            let end_of_day = start_instant(d + Duration::days(1), p.tz) - 1;
            for (mine, j, active, ending) in &per_member {
                let within = |n: i64| active.iter().any(|a| *a <= d && *a > d - Duration::days(n));
                row[0] += within(1) as u64;
                row[1] += within(p.wau_days) as u64;
                row[2] += within(p.mau_days) as u64;
                for (i, t) in [
                    (3, EventType::MessagePosted),
                    (4, EventType::ReactionAdded),
                    (5, EventType::Checkin),
                    (6, EventType::MemberJoined),
                ] {
                    row[i] +=
                        mine.iter().filter(|e| e.event_type == t && local_date(e.ts_ms, p.tz) == d).count() as u64;
                }
                row[7] += j.is_some_and(|j| local_date(j, p.tz) == d) as u64;
                row[8] += ending.iter().filter(|x| **x == d).count() as u64;
                row[9] += is_in(mine, scope_groups, end_of_day) as u64;
            }
            r.engagement.insert((scope.clone(), d), row);
            d += Duration::days(1);
        }
        for g in GRANULARITIES {
            let mut period = period_start(first_day, g);
            let mut previous: Option<NaiveDate> = None;
            while period <= last_day {
                let mut row = [0u64; 4];
                let active_in =
                    |active: &[NaiveDate], start: NaiveDate| active.iter().any(|a| period_start(*a, g) == start);
                for (_, j, active, _) in &per_member {
                    let now = active_in(active, period);
                    let before = previous.is_some_and(|prev| active_in(active, prev));
                    let is_new = j.is_some_and(|j| period_start(local_date(j, p.tz), g) == period);
                    if now && is_new {
                        row[0] += 1;
                    } else if now && before {
                        row[1] += 1;
                    } else if now {
                        row[2] += 1;
                    }
                    if before && !now {
                        row[3] += 1;
                    }
                }
                r.lifecycle.insert((scope.clone(), g.into(), period), row);
                previous = Some(period);
                period = next_period(period, g);
            }
        }
    }
}

/// One member's join facts in a scope, read straight off their events.
struct Joined {
    member: String,
    j: i64,
    inviter: Option<String>,
}

fn joined_members(in_scope: &[&Event]) -> Vec<Joined> {
    let members: BTreeSet<&str> = in_scope.iter().map(|e| e.member_id.as_str()).collect();
    let mut out = Vec::new();
    for m in members {
        let joins: Vec<&&Event> =
            in_scope.iter().filter(|e| e.member_id == m && e.event_type == EventType::MemberJoined).collect();
        let Some(j) = joins.iter().map(|e| e.ts_ms).min() else { continue };
        // The earliest join's inviter; if several joins share that instant, the smallest inviter.
        let inviter = joins.iter().filter(|e| e.ts_ms == j).filter_map(|e| e.inviter_id.clone()).min();
        out.push(Joined { member: m.to_owned(), j, inviter });
    }
    out
}

fn conversion_and_referral(
    events: &[&Event],
    scopes: &[(String, Vec<String>)],
    as_of: i64,
    p: &Params,
    r: &mut Reference,
) {
    let day = 86_400_000;
    for (scope, scope_groups) in scopes {
        let in_scope: Vec<&Event> = events.iter().copied().filter(|e| scope_groups.contains(&e.group_id)).collect();
        let joined = joined_members(&in_scope);
        for g in GRANULARITIES {
            let cohort_of = |j: i64| period_start(local_date(j, p.tz), g);
            let mut conv: BTreeMap<NaiveDate, (u64, u64, i64, u64, u64, bool)> = BTreeMap::new();
            let mut refr: BTreeMap<NaiveDate, (u64, u64, u64)> = BTreeMap::new();
            for m in &joined {
                let mine: Vec<&Event> = in_scope.iter().copied().filter(|e| e.member_id == m.member).collect();
                let cw_end = m.j + p.conversion_window_days * day;
                let conversions: Vec<&Event> = mine
                    .iter()
                    .copied()
                    .filter(|e| e.event_type == EventType::Conversion && e.ts_ms >= m.j && e.ts_ms < cw_end)
                    .collect();
                let value: i64 =
                    conversions.iter().map(|e| e.conversion_value.map(|v| (v * 1e6).round() as i64).unwrap_or(0)).sum();
                let first_conversion = conversions.iter().map(|e| e.ts_ms).min();
                let aw_end = m.j + p.activation_window_days * day;
                let mut act: Vec<i64> = mine
                    .iter()
                    .filter(|e| p.activation_types.contains(&e.event_type) && e.ts_ms >= m.j && e.ts_ms < aw_end)
                    .map(|e| e.ts_ms)
                    .collect();
                act.sort();
                let activated_at = act.get(p.activation_min - 1).copied();
                let e = conv.entry(cohort_of(m.j)).or_insert((0, 0, 0, 0, 0, true));
                e.0 += 1;
                if first_conversion.is_some() {
                    e.1 += 1;
                    e.2 += value;
                }
                if let Some(a) = activated_at {
                    e.3 += 1;
                    if first_conversion.is_some_and(|f| f >= a) {
                        e.4 += 1;
                    }
                }
                if cw_end > as_of {
                    e.5 = false;
                }
                let rf = refr.entry(cohort_of(m.j)).or_insert((0, 0, 0));
                rf.0 += 1;
                if m.inviter.is_some() {
                    rf.1 += 1;
                }
                // Members of any cohort whose earliest join names this member, within the window.
                let window_end = m.j + p.referral_window_days * day;
                rf.2 += joined
                    .iter()
                    .filter(|y| y.inviter.as_deref() == Some(m.member.as_str()) && y.j >= m.j && y.j < window_end)
                    .count() as u64;
            }
            for (c, (size, converted, value, activated, atc, complete)) in conv {
                r.conversion.insert(
                    (scope.clone(), g.into(), c),
                    ConversionRow {
                        size,
                        converted,
                        value: value as f64 / 1e6,
                        activated,
                        activated_then_converted: atc,
                        complete,
                    },
                );
            }
            for (c, (size, referred, invited)) in refr {
                r.referral.insert(
                    (scope.clone(), g.into(), c),
                    ReferralRow { size, referred, invited, k_factor: invited as f64 / size as f64 },
                );
            }
        }
    }
}
