//! An in-memory stand-in for the ClickHouse tables: applies flush output the way a
//! `ReplacingMergeTree` read with `FINAL` does (the newest row of a key wins). Tests and the
//! bench use it to read the engine's final tables without a database.

use crate::output::{Mode, Output};
use crate::period::Granularity;
use chrono::NaiveDate;
use std::collections::BTreeMap;

type Cell = (String, String, Granularity, Mode, NaiveDate, u32);

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub cohorts: BTreeMap<(String, String, Granularity, NaiveDate), u64>,
    pub retention: BTreeMap<Cell, u64>,
    pub members: BTreeMap<(String, String, String), crate::output::MemberFact>,
    /// (community, group, day) -> engagement values
    pub engagement: BTreeMap<(String, String, NaiveDate), [i64; 10]>,
    /// (community, group, granularity, period) -> lifecycle values
    pub lifecycle: BTreeMap<(String, String, Granularity, NaiveDate), [i64; 4]>,
    /// (community, group, granularity, period) -> churn values
    pub churn: BTreeMap<(String, String, Granularity, NaiveDate), [i64; 5]>,
    pub stats: BTreeMap<String, (u64, i64)>,
}

impl Tables {
    pub fn apply(&mut self, out: &Output) {
        for r in &out.cohorts {
            self.cohorts.insert((r.community_id.clone(), r.group_id.clone(), r.granularity, r.cohort), r.size);
        }
        for c in &out.retention {
            let key = (c.community_id.clone(), c.group_id.clone(), c.granularity, c.mode, c.cohort, c.offset);
            self.retention.insert(key, c.members);
        }
        for m in &out.members {
            self.members.insert((m.community_id.clone(), m.group_id.clone(), m.member_id.clone()), m.clone());
        }
        for r in &out.engagement {
            self.engagement.insert((r.community_id.clone(), r.group_id.clone(), r.day), r.values);
        }
        for r in &out.lifecycle {
            self.lifecycle.insert((r.community_id.clone(), r.group_id.clone(), r.granularity, r.period), r.values);
        }
        for r in &out.churn {
            self.churn.insert((r.community_id.clone(), r.group_id.clone(), r.granularity, r.period), r.values);
        }
        for s in &out.stats {
            self.stats.insert(s.community_id.clone(), (s.events_processed, s.max_ts_ms));
        }
    }

    /// Adds another partition's tables (the query side's `sum(...) GROUP BY` over partitions).
    pub fn merge_sum(&mut self, other: &Tables) {
        for (k, v) in &other.cohorts {
            *self.cohorts.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.retention {
            *self.retention.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.members {
            self.members.insert(k.clone(), v.clone());
        }
        for (k, v) in &other.engagement {
            let e = self.engagement.entry(k.clone()).or_insert([0; 10]);
            e.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        for (k, v) in &other.lifecycle {
            let e = self.lifecycle.entry(k.clone()).or_insert([0; 4]);
            e.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        for (k, v) in &other.churn {
            let e = self.churn.entry(k.clone()).or_insert([0; 5]);
            e.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        for (k, (n, ts)) in &other.stats {
            let e = self.stats.entry(k.clone()).or_insert((0, i64::MIN));
            e.0 += n;
            e.1 = e.1.max(*ts);
        }
    }

    /// The retention row of a cohort: values for offsets 0..=max written, with zero rows dropped
    /// from the cohort table (only cohorts with size > 0 are listed).
    pub fn retention_row(
        &self,
        community: &str,
        group: &str,
        g: Granularity,
        mode: Mode,
        cohort: NaiveDate,
    ) -> Vec<u64> {
        let lo = (community.to_owned(), group.to_owned(), g, mode, cohort, 0);
        let hi = (community.to_owned(), group.to_owned(), g, mode, cohort, u32::MAX);
        self.retention.range(lo..=hi).map(|(_, v)| *v).collect()
    }
}

/// Activation of one cohort, from member-level facts: what the query API computes from the
/// `member_facts` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub size: u64,
    pub activated: u64,
    pub median_hours_to_activate: Option<f64>,
    pub complete: bool,
}

/// The median of the activation delays (milliseconds), in hours: the mean of the two middle
/// values when their count is even.
pub fn median_hours(mut activation_ms: Vec<i64>) -> Option<f64> {
    if activation_ms.is_empty() {
        return None;
    }
    activation_ms.sort_unstable();
    let n = activation_ms.len();
    let ms = if n % 2 == 1 {
        activation_ms[n / 2] as f64
    } else {
        (activation_ms[n / 2 - 1] + activation_ms[n / 2]) as f64 / 2.0
    };
    Some(ms / 3_600_000.0)
}

impl Tables {
    pub fn activation(
        &self,
        community: &str,
        group: &str,
        g: Granularity,
        as_of_ms: i64,
    ) -> BTreeMap<NaiveDate, Activation> {
        let mut per: BTreeMap<NaiveDate, (u64, Vec<i64>, i64)> = BTreeMap::new();
        for ((c, s, _), m) in &self.members {
            if c != community || s != group {
                continue;
            }
            let cohort = match g {
                Granularity::Day => m.cohort_day,
                Granularity::Week => m.cohort_week,
                Granularity::Month => m.cohort_month,
            };
            let e = per.entry(cohort).or_insert((0, vec![], i64::MIN));
            e.0 += 1;
            if m.activated {
                e.1.push(m.activation_ms);
            }
            e.2 = e.2.max(m.activation_window_end_ms);
        }
        per.into_iter()
            .map(|(cohort, (size, times, window_end))| {
                let activated = times.len() as u64;
                (
                    cohort,
                    Activation {
                        size,
                        activated,
                        median_hours_to_activate: median_hours(times),
                        complete: window_end <= as_of_ms,
                    },
                )
            })
            .collect()
    }
}

/// Conversion and the activation → conversion funnel of one cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionCohort {
    pub size: u64,
    pub converted: u64,
    pub value_micros: i64,
    pub activated: u64,
    pub activated_then_converted: u64,
    pub complete: bool,
}

/// Referral of one cohort.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralCohort {
    pub size: u64,
    pub referred: u64,
    pub invited: u64,
}

impl Tables {
    fn facts<'a>(
        &'a self,
        community: &'a str,
        group: &'a str,
    ) -> impl Iterator<Item = &'a crate::output::MemberFact> + 'a {
        self.members.iter().filter(move |((c, s, _), _)| c == community && s == group).map(|(_, m)| m)
    }

    pub fn conversion(
        &self,
        community: &str,
        group: &str,
        g: Granularity,
        as_of_ms: i64,
    ) -> BTreeMap<NaiveDate, ConversionCohort> {
        let mut per: BTreeMap<NaiveDate, ConversionCohort> = BTreeMap::new();
        for m in self.facts(community, group) {
            let e = per.entry(cohort_of(m, g)).or_insert(ConversionCohort {
                size: 0,
                converted: 0,
                value_micros: 0,
                activated: 0,
                activated_then_converted: 0,
                complete: true,
            });
            e.size += 1;
            e.converted += m.converted as u64;
            e.value_micros += m.conversion_value_micros;
            e.activated += m.activated as u64;
            e.activated_then_converted += m.activated_then_converted as u64;
            e.complete &= m.conversion_window_end_ms <= as_of_ms;
        }
        per
    }

    pub fn referral(&self, community: &str, group: &str, g: Granularity) -> BTreeMap<NaiveDate, ReferralCohort> {
        let facts: Vec<_> = self.facts(community, group).collect();
        let by_member: std::collections::HashMap<&str, &crate::output::MemberFact> =
            facts.iter().map(|m| (m.member_id.as_str(), *m)).collect();
        let mut per: BTreeMap<NaiveDate, ReferralCohort> = BTreeMap::new();
        for m in &facts {
            let e = per.entry(cohort_of(m, g)).or_insert(ReferralCohort { size: 0, referred: 0, invited: 0 });
            e.size += 1;
            e.referred += !m.inviter_id.is_empty() as u64;
        }
        for y in &facts {
            let Some(x) = by_member.get(y.inviter_id.as_str()) else { continue };
            if y.join_ms >= x.join_ms && y.join_ms < x.referral_window_end_ms {
                per.get_mut(&cohort_of(x, g)).expect("inviter's cohort listed").invited += 1;
            }
        }
        per
    }
}

fn cohort_of(m: &crate::output::MemberFact, g: Granularity) -> NaiveDate {
    match g {
        Granularity::Day => m.cohort_day,
        Granularity::Week => m.cohort_week,
        Granularity::Month => m.cohort_month,
    }
}
