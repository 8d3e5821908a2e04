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
    let events: Vec<&Event> = accepted.into_iter().filter(|e| !e.is_bot).collect();

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
    r
}
