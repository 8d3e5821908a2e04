//! Calendar periods in a community's time zone (SPEC section 3). Period indexes come from the
//! local date, never from dividing UTC milliseconds, so 23- and 25-hour days are handled.

use chrono::{Datelike, LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Granularity::Day, Granularity::Week, Granularity::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.as_str() == s)
    }

    pub fn idx(self) -> usize {
        self as usize
    }
}

const DAY_MS: i64 = 86_400_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// Days since 1970-01-01 of the local date of `ts_ms` in `tz`.
pub fn local_day(ts_ms: i64, tz: Tz) -> i32 {
    if tz == Tz::UTC {
        return ts_ms.div_euclid(DAY_MS) as i32;
    }
    let utc = chrono::DateTime::from_timestamp_millis(ts_ms).expect("timestamp in chrono's range");
    let date = utc.with_timezone(&tz).date_naive();
    date.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

pub fn day_to_date(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day + UNIX_EPOCH_CE_DAYS).expect("day in chrono's range")
}

pub fn date_to_day(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

/// The index of the period holding local day `day`: days since 1970-01-01, ISO weeks since the
/// week of 1969-12-29 (a Monday), or months since year 0.
pub fn period_of_day(day: i32, g: Granularity) -> i32 {
    match g {
        Granularity::Day => day,
        // 1970-01-01 was a Thursday: day -3 is Monday 1969-12-29.
        Granularity::Week => (day + 3).div_euclid(7),
        Granularity::Month => month_of_day(day),
    }
}

/// `year * 12 + month0` of a day since 1970-01-01: the civil-from-days conversion of
/// <https://howardhinnant.github.io/date_algorithms.html>, in integers (chrono's date
/// conversion was a fifth of the engine's per-member work).
fn month_of_day(day: i32) -> i32 {
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // March-based month `mp`: January and February belong to the next year.
    let (month0, year) = if mp < 10 { (mp + 2, yoe + era * 400) } else { (mp - 10, yoe + era * 400 + 1) };
    (year * 12 + month0) as i32
}

pub fn period_of_ts(ts_ms: i64, tz: Tz, g: Granularity) -> i32 {
    period_of_day(local_day(ts_ms, tz), g)
}

/// The local date of the first day of period `index`: the name of the period.
pub fn period_start_date(index: i32, g: Granularity) -> NaiveDate {
    match g {
        Granularity::Day => day_to_date(index),
        Granularity::Week => day_to_date(index * 7 - 3),
        Granularity::Month => {
            NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1).expect("valid month")
        }
    }
}

/// The instant (UTC ms) at which period `index` starts: local midnight of its first day. Where a
/// time-zone change skips midnight, the first local instant of that day.
pub fn period_start_ms(index: i32, g: Granularity, tz: Tz) -> i64 {
    let date = period_start_date(index, g);
    local_midnight_ms(date, tz)
}

pub fn local_midnight_ms(date: NaiveDate, tz: Tz) -> i64 {
    if tz == Tz::UTC {
        return date_to_day(date) as i64 * DAY_MS;
    }
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight");
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(earliest, _) => earliest.timestamp_millis(),
        LocalResult::None => {
            // Midnight falls in a gap: the day starts at the first minute that exists.
            (1..=24 * 60)
                .find_map(|m| tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m))).earliest())
                .map(|t| t.timestamp_millis())
                .expect("a local day has at least one valid minute")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn months_of_days_agree_with_chrono() {
        // Every day from year 0 to 9999 (the validator's range), and some beyond.
        for day in (-719_528..2_932_897).chain([-800_000, 3_000_000]) {
            let d = day_to_date(day);
            assert_eq!(month_of_day(day), d.year() * 12 + d.month0() as i32, "{d}");
        }
    }

    #[test]
    fn weeks_start_on_monday_in_the_local_zone() {
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        // Sunday 2024-01-07 23:30 in Shanghai is 15:30Z: still the week of Monday 2024-01-01.
        let w = period_of_ts(ms("2024-01-07T15:30:00Z"), sh, Granularity::Week);
        assert_eq!(period_start_date(w, Granularity::Week), NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
        // 16:30Z is Monday 00:30 local: the next week.
        let w2 = period_of_ts(ms("2024-01-07T16:30:00Z"), sh, Granularity::Week);
        assert_eq!(w2, w + 1);
        assert_eq!(period_start_ms(w2, Granularity::Week, sh), ms("2024-01-07T16:00:00Z"));
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let d = period_of_ts(ms("2024-03-10T12:00:00Z"), ny, Granularity::Day);
        let len = period_start_ms(d + 1, Granularity::Day, ny) - period_start_ms(d, Granularity::Day, ny);
        assert_eq!(len, 23 * 3_600_000);
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let d = period_of_ts(ms("2024-10-27T12:00:00Z"), berlin, Granularity::Day);
        let len = period_start_ms(d + 1, Granularity::Day, berlin) - period_start_ms(d, Granularity::Day, berlin);
        assert_eq!(len, 25 * 3_600_000);
    }

    #[test]
    fn utc_midnights_take_the_short_way_to_chrono_s_answer() {
        for day in [-1000, -1, 0, 1, 19_000, 20_000] {
            let date = day_to_date(day);
            let midnight = date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
            assert_eq!(local_midnight_ms(date, Tz::UTC), midnight);
            // A zone that is UTC under another name goes the long way, to the same instant.
            assert_eq!(local_midnight_ms(date, Tz::Etc__UTC), midnight);
        }
    }

    #[test]
    fn months_and_days_round_trip() {
        for day in [-1000, -1, 0, 1, 19_000, 20_000] {
            for g in Granularity::ALL {
                let p = period_of_day(day, g);
                let start = date_to_day(period_start_date(p, g));
                assert!(start <= day, "{g:?} {day}");
                assert_eq!(period_of_day(start, g), p);
                assert_eq!(period_of_day(start - 1, g), p - 1);
            }
        }
    }
}
