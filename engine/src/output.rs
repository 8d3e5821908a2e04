//! What a flush produces: absolute values of every row that changed since the last flush.
//! The adapter stamps them with the partition and a version and writes them; re-writing a row is
//! harmless, so output is idempotent.

use crate::period::Granularity;
use chrono::NaiveDate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    On,
    OnOrAfter,
    Membership,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::On, Mode::OnOrAfter, Mode::Membership];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::OnOrAfter => "on_or_after",
            Mode::Membership => "membership",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// `group_id` is empty for the community scope (a real group id is never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Granularity,
    pub cohort: NaiveDate,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCell {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Granularity,
    pub mode: Mode,
    pub cohort: NaiveDate,
    pub offset: u32,
    pub period: NaiveDate,
    pub members: u64,
}

/// One member in one scope: join time, cohorts, activation, conversion, referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFact {
    pub community_id: String,
    pub group_id: String,
    pub member_id: String,
    pub join_ms: i64,
    pub cohort_day: NaiveDate,
    pub cohort_week: NaiveDate,
    pub cohort_month: NaiveDate,
    pub activated: bool,
    pub activation_ms: i64,
    pub activation_window_end_ms: i64,
    pub converted: bool,
    /// Sum of `props.value` of the conversions in the window, in millionths.
    pub conversion_value_micros: i64,
    /// First conversion in the window (0 when none).
    pub first_conversion_ms: i64,
    pub conversion_window_end_ms: i64,
    /// Activated, and converted with the first conversion at or after the activating event.
    pub activated_then_converted: bool,
    /// `inviter_id` of the earliest join ("" when none).
    pub inviter_id: String,
    pub referral_window_end_ms: i64,
}

/// One local day of engagement (values in `activity::ENGAGEMENT` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagementRow {
    pub community_id: String,
    pub group_id: String,
    pub day: NaiveDate,
    pub values: [i64; 10],
}

/// One period of lifecycle (values in `activity::LIFECYCLE` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Granularity,
    pub period: NaiveDate,
    pub values: [i64; 4],
}

/// One period of churn (values in `activity::CHURN` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnRow {
    pub community_id: String,
    pub group_id: String,
    pub granularity: Granularity,
    pub period: NaiveDate,
    pub values: [i64; 5],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityStat {
    pub community_id: String,
    pub events_processed: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
    /// Local dates (community time zone) of the first event and of the last.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub cohorts: Vec<CohortRow>,
    pub retention: Vec<RetentionCell>,
    pub members: Vec<MemberFact>,
    pub engagement: Vec<EngagementRow>,
    pub lifecycle: Vec<LifecycleRow>,
    pub churn: Vec<ChurnRow>,
    pub stats: Vec<CommunityStat>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    pub fn rows(&self) -> usize {
        self.cohorts.len()
            + self.retention.len()
            + self.members.len()
            + self.engagement.len()
            + self.lifecycle.len()
            + self.churn.len()
            + self.stats.len()
    }
}
