//! ClickHouse row types of the derived tables (columns as documented in docs/tables.md).
//! `Date` columns travel as days since 1970-01-01 (their RowBinary form).

use clickhouse::Row;
use engine::period::date_to_day;
use engine::{ChurnRow, CohortRow, CommunityStat, EngagementRow, LifecycleRow, MemberFact, RetentionCell};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A column holding one of a few fixed names (granularity, mode, event type): borrowed when a row
/// is written (no allocation per row), owned when one is read back.
pub type Name = Cow<'static, str>;

pub fn days(d: chrono::NaiveDate) -> u16 {
    date_to_day(d).clamp(0, u16::MAX as i32) as u16
}

pub fn date(days: u16) -> chrono::NaiveDate {
    engine::period::day_to_date(days as i32)
}

/// An archive row, borrowing the decoded record's strings: it is encoded as soon as it is made
/// (on the thread that applied the record), so nothing here is allocated per event but `props`,
/// and only in the rare record whose props are not already in the archive's form.
#[derive(Debug, Clone, Row, Serialize)]
pub struct RawEventRow<'a> {
    pub community_id: &'a str,
    pub event_id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub ts_ms: i64,
    pub platform: &'a str,
    pub is_bot: u8,
    pub props: std::borrow::Cow<'a, str>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// Days since 1970-01-01 of the event's date in the community's time zone.
    pub local_day: u16,
    pub participation: u8,
}

impl<'a> RawEventRow<'a> {
    pub fn new(e: &schemas::EventView<'a>, config: &engine::CommunityConfig, partition: i32, offset: i64) -> Self {
        RawEventRow {
            community_id: e.community_id,
            event_id: e.event_id,
            event_type: e.event_type.as_str(),
            group_id: e.group_id,
            member_id: e.member_id,
            ts_ms: e.ts_ms,
            platform: e.platform.unwrap_or_default(),
            is_bot: e.is_bot as u8,
            props: e.props.to_archive_json(),
            kafka_partition: partition,
            kafka_offset: offset,
            local_day: engine::period::local_day(e.ts_ms, config.timezone).clamp(0, u16::MAX as i32) as u16,
            participation: (!e.is_bot && config.participation_types.contains(&e.event_type)) as u8,
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct CohortSizeRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Name,
    pub cohort: u16,
    pub partition: u32,
    pub size: u64,
    pub version: u64,
}

impl CohortSizeRow {
    pub fn new(r: CohortRow, partition: u32, version: u64) -> Self {
        CohortSizeRow {
            community_id: r.community_id,
            group_id: r.group_id,
            granularity: Cow::Borrowed(r.granularity.as_str()),
            cohort: days(r.cohort),
            partition,
            size: r.size,
            version,
        }
    }

    pub fn to_engine(&self) -> Option<CohortRow> {
        Some(CohortRow {
            community_id: self.community_id.clone(),
            group_id: self.group_id.clone(),
            granularity: engine::Granularity::parse(&self.granularity)?,
            cohort: date(self.cohort),
            size: self.size,
        })
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct RetentionRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Name,
    pub mode: Name,
    pub cohort: u16,
    pub period_offset: u32,
    pub period: u16,
    pub partition: u32,
    pub members: u64,
    pub version: u64,
}

impl RetentionRow {
    pub fn new(c: RetentionCell, partition: u32, version: u64) -> Self {
        RetentionRow {
            community_id: c.community_id,
            group_id: c.group_id,
            granularity: Cow::Borrowed(c.granularity.as_str()),
            mode: Cow::Borrowed(c.mode.as_str()),
            cohort: days(c.cohort),
            period_offset: c.offset,
            period: days(c.period),
            partition,
            members: c.members,
            version,
        }
    }

    pub fn to_engine(&self) -> Option<RetentionCell> {
        Some(RetentionCell {
            community_id: self.community_id.clone(),
            group_id: self.group_id.clone(),
            granularity: engine::Granularity::parse(&self.granularity)?,
            mode: engine::Mode::parse(&self.mode)?,
            cohort: date(self.cohort),
            offset: self.period_offset,
            period: date(self.period),
            members: self.members,
        })
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct MemberFactRow {
    pub community_id: String,
    pub group_id: String,
    pub member_id: String,
    pub partition: u32,
    pub join_ms: i64,
    pub cohort_day: u16,
    pub cohort_week: u16,
    pub cohort_month: u16,
    pub activated: u8,
    pub activation_ms: i64,
    pub activation_window_end_ms: i64,
    pub converted: u8,
    pub conversion_value_micros: i64,
    pub first_conversion_ms: i64,
    pub conversion_window_end_ms: i64,
    pub activated_then_converted: u8,
    pub inviter_id: String,
    pub referral_window_end_ms: i64,
    pub version: u64,
}

impl MemberFactRow {
    pub fn new(m: MemberFact, partition: u32, version: u64) -> Self {
        MemberFactRow {
            community_id: m.community_id,
            group_id: m.group_id,
            member_id: m.member_id,
            partition,
            join_ms: m.join_ms,
            cohort_day: days(m.cohort_day),
            cohort_week: days(m.cohort_week),
            cohort_month: days(m.cohort_month),
            activated: m.activated as u8,
            activation_ms: m.activation_ms,
            activation_window_end_ms: m.activation_window_end_ms,
            converted: m.converted as u8,
            conversion_value_micros: m.conversion_value_micros,
            first_conversion_ms: m.first_conversion_ms,
            conversion_window_end_ms: m.conversion_window_end_ms,
            activated_then_converted: m.activated_then_converted as u8,
            inviter_id: m.inviter_id,
            referral_window_end_ms: m.referral_window_end_ms,
            version,
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct CommunityStatRow {
    pub community_id: String,
    pub partition: u32,
    pub events_processed: u64,
    pub max_ts_ms: i64,
    pub version: u64,
    pub min_ts_ms: i64,
    pub first_day: u16,
    pub last_day: u16,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct EngagementDayRow {
    pub community_id: String,
    pub group_id: String,
    pub day: u16,
    pub partition: u32,
    pub dau: u64,
    pub wau: u64,
    pub mau: u64,
    pub messages: u64,
    pub reactions: u64,
    pub checkins: u64,
    pub joins: u64,
    pub new_members: u64,
    pub leaves: u64,
    pub members: u64,
    pub version: u64,
}

impl EngagementDayRow {
    pub fn new(r: EngagementRow, partition: u32, version: u64) -> Self {
        let v = r.values.map(|x| x.max(0) as u64);
        EngagementDayRow {
            community_id: r.community_id,
            group_id: r.group_id,
            day: days(r.day),
            partition,
            dau: v[0],
            wau: v[1],
            mau: v[2],
            messages: v[3],
            reactions: v[4],
            checkins: v[5],
            joins: v[6],
            new_members: v[7],
            leaves: v[8],
            members: v[9],
            version,
        }
    }

    pub fn to_engine(&self) -> EngagementRow {
        let v = [
            self.dau,
            self.wau,
            self.mau,
            self.messages,
            self.reactions,
            self.checkins,
            self.joins,
            self.new_members,
            self.leaves,
            self.members,
        ];
        EngagementRow {
            community_id: self.community_id.clone(),
            group_id: self.group_id.clone(),
            day: date(self.day),
            values: v.map(|x| x as i64),
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct LifecyclePeriodRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Name,
    pub period: u16,
    pub partition: u32,
    pub new: u64,
    pub returning: u64,
    pub resurrecting: u64,
    pub dormant: u64,
    pub version: u64,
}

impl LifecyclePeriodRow {
    pub fn new(r: LifecycleRow, partition: u32, version: u64) -> Self {
        let v = r.values.map(|x| x.max(0) as u64);
        LifecyclePeriodRow {
            community_id: r.community_id,
            group_id: r.group_id,
            granularity: Cow::Borrowed(r.granularity.as_str()),
            period: days(r.period),
            partition,
            new: v[0],
            returning: v[1],
            resurrecting: v[2],
            dormant: v[3],
            version,
        }
    }

    pub fn to_engine(&self) -> Option<LifecycleRow> {
        Some(LifecycleRow {
            community_id: self.community_id.clone(),
            group_id: self.group_id.clone(),
            granularity: engine::Granularity::parse(&self.granularity)?,
            period: date(self.period),
            values: [self.new, self.returning, self.resurrecting, self.dormant].map(|x| x as i64),
        })
    }
}

impl CommunityStatRow {
    pub fn new(s: CommunityStat, partition: u32, version: u64) -> Self {
        CommunityStatRow {
            community_id: s.community_id,
            partition,
            events_processed: s.events_processed,
            max_ts_ms: s.max_ts_ms,
            version,
            min_ts_ms: s.min_ts_ms,
            first_day: days(s.first_day),
            last_day: days(s.last_day),
        }
    }
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ProgressRow {
    pub topic: String,
    pub partition: u32,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub version: u64,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ChurnPeriodRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Name,
    pub period: u16,
    pub partition: u32,
    pub members_start: u64,
    pub churned: u64,
    pub left_members: u64,
    pub removed_members: u64,
    pub inactive: u64,
    pub version: u64,
}

impl ChurnPeriodRow {
    pub fn new(r: ChurnRow, partition: u32, version: u64) -> Self {
        let v = r.values.map(|x| x.max(0) as u64);
        ChurnPeriodRow {
            community_id: r.community_id,
            group_id: r.group_id,
            granularity: Cow::Borrowed(r.granularity.as_str()),
            period: days(r.period),
            partition,
            members_start: v[0],
            churned: v[1],
            left_members: v[2],
            removed_members: v[3],
            inactive: v[4],
            version,
        }
    }

    pub fn to_engine(&self) -> Option<ChurnRow> {
        let v = [self.members_start, self.churned, self.left_members, self.removed_members, self.inactive];
        Some(ChurnRow {
            community_id: self.community_id.clone(),
            group_id: self.group_id.clone(),
            granularity: engine::Granularity::parse(&self.granularity)?,
            period: date(self.period),
            values: v.map(|x| x as i64),
        })
    }
}
