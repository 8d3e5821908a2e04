//! Events of one community as a polars frame, once per scope: every event appears with
//! `scope = group_id` and again with `scope = ""` (the community). Per-row facts that need a time
//! zone or the community's configuration are computed here, once, so the batch computation is
//! column arithmetic: the local day and its week and month indexes, and flags for the event kinds.

use crate::BatchError;
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use engine::CommunityConfig;
use polars::prelude::*;
use schemas::{Event, EventType, LeaveReason};
use std::collections::HashSet;

/// `kind` codes.
pub const JOIN: i32 = 0;
pub const LEAVE: i32 = 1;
pub const MESSAGE: i32 = 2;
pub const REACTION: i32 = 3;
pub const CHECKIN: i32 = 4;
pub const CONVERSION: i32 = 5;
pub const OTHER: i32 = 6;

/// The period columns of the frame, by granularity.
pub const PERIOD_COLUMNS: [(&str, &str); 3] = [("day", "d"), ("week", "w"), ("month", "m")];

/// Days since 1970-01-01 of the local date of `ts_ms` in `tz` (independent of the engine's own).
pub fn local_day(ts_ms: i64, tz: Tz) -> i32 {
    let date = Utc.timestamp_millis_opt(ts_ms).single().expect("valid instant").with_timezone(&tz).date_naive();
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

pub fn day_date(day: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(day as i64)
}

/// The index of the period holding local day `day`: days, Monday weeks, or months since 1970.
pub fn period_index(day: i32, column: &str) -> i32 {
    match column {
        "d" => day,
        // 1970-01-01 was a Thursday: shift so that weeks start on Mondays.
        "w" => (day + 3).div_euclid(7),
        _ => {
            let d = day_date(day);
            d.year() * 12 + d.month0() as i32
        }
    }
}

/// The first local date of period `index`.
pub fn period_date(index: i32, column: &str) -> NaiveDate {
    match column {
        "d" => day_date(index),
        "w" => day_date(index * 7 - 3),
        _ => NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1).expect("month"),
    }
}

fn kind(t: EventType) -> i32 {
    match t {
        EventType::MemberJoined => JOIN,
        EventType::MemberLeft => LEAVE,
        EventType::MessagePosted => MESSAGE,
        EventType::ReactionAdded => REACTION,
        EventType::Checkin => CHECKIN,
        EventType::Conversion => CONVERSION,
        EventType::ActivityParticipated => OTHER,
    }
}

fn reason_code(r: LeaveReason) -> i32 {
    match r {
        LeaveReason::Left => 0,
        LeaveReason::Removed => 1,
        LeaveReason::Banned => 2,
    }
}

/// What the computation needs besides the frame.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Newest and oldest `ts` of the community's distinct events, bots included (SPEC: as_of).
    pub as_of_ms: i64,
    pub first_ms: i64,
    pub events: u64,
}

/// The community's distinct events (by `event_id`, first seen wins) as a scoped frame of non-bot
/// events, with the bounds; `None` when the community has no event.
pub fn scoped_frame(
    events: &[Event],
    community: &str,
    config: &CommunityConfig,
) -> Result<Option<(DataFrame, Bounds)>, BatchError> {
    let mut seen = HashSet::new();
    let distinct: Vec<&Event> =
        events.iter().filter(|e| e.community_id == community && seen.insert(e.event_id.as_str())).collect();
    let (Some(as_of_ms), Some(first_ms)) =
        (distinct.iter().map(|e| e.ts_ms).max(), distinct.iter().map(|e| e.ts_ms).min())
    else {
        return Ok(None);
    };
    let bounds = Bounds { as_of_ms, first_ms, events: distinct.len() as u64 };
    let rows: Vec<&Event> = distinct.into_iter().filter(|e| !e.is_bot).collect();
    let n = rows.len() * 2;
    let mut scope = Vec::with_capacity(n);
    let mut group = Vec::with_capacity(n);
    let mut member = Vec::with_capacity(n);
    let (mut ts, mut d, mut w, mut m) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut kinds, mut reason, mut part, mut act) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut value, mut inviter) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for e in &rows {
        let day = local_day(e.ts_ms, config.timezone);
        for s in [e.group_id.as_str(), ""] {
            scope.push(s.to_owned());
            group.push(e.group_id.clone());
            member.push(e.member_id.clone());
            ts.push(e.ts_ms);
            d.push(day);
            w.push(period_index(day, "w"));
            m.push(period_index(day, "m"));
            kinds.push(kind(e.event_type));
            reason.push(reason_code(e.leave_reason));
            part.push(config.participation_types.contains(&e.event_type));
            act.push(config.activation_types.contains(&e.event_type));
            value.push(e.conversion_value.map(|v| (v * 1e6).round() as i64));
            inviter.push(e.inviter_id.clone());
        }
    }
    let columns = vec![
        Column::new("scope".into(), scope),
        Column::new("group".into(), group),
        Column::new("member".into(), member),
        Column::new("ts".into(), ts),
        Column::new("d".into(), d),
        Column::new("w".into(), w),
        Column::new("m".into(), m),
        Column::new("kind".into(), kinds),
        Column::new("reason".into(), reason),
        Column::new("participation".into(), part),
        Column::new("activation".into(), act),
        Column::new("value_micros".into(), value),
        Column::new("inviter".into(), inviter),
    ];
    Ok(Some((DataFrame::new(n, columns)?, bounds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_indexes_round_trip_to_their_first_day() {
        for day in -800..800 {
            for c in ["d", "w", "m"] {
                let start = period_date(period_index(day, c), c);
                assert!(start <= day_date(day));
                assert_eq!(period_index((start - day_date(0)).num_days() as i32, c), period_index(day, c));
            }
            assert_eq!(period_date(period_index(day, "w"), "w").weekday(), chrono::Weekday::Mon);
        }
    }
}
