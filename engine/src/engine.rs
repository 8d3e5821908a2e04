//! The engine of one Kafka partition: member histories, the aggregate cells they add up to, and
//! what was last written, so that a flush emits only changed rows.

use crate::config::Configs;
use crate::contribution::{contribution, ScopeContribution, ScopeView, OPEN};
use crate::history::GroupHistory;
use crate::output::{CohortRow, CommunityStat, MemberFact, Mode, Output, RetentionCell};
use crate::period::{period_of_ts, period_start_date, Granularity};
use schemas::{Event, EventType};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// `""` is the community scope; anything else is a group id.
type Scope = Arc<str>;

/// A member's contribution in each of its scopes.
type Contributions = Vec<(Scope, Option<ScopeContribution>)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CohortKey {
    scope: Scope,
    gran: Granularity,
    cohort: i32,
}

/// Sums of member contributions for one cohort, as difference arrays over the offset `k`
/// (value at k = prefix sum up to k), so a member adds or retracts in O(ranges), and an open
/// membership range extends by itself as `as_of` moves.
#[derive(Debug, Default, Clone)]
struct CohortAgg {
    size: i64,
    diff: [Vec<i64>; 3],
}

impl CohortAgg {
    fn add(&mut self, mode: Mode, k: i32, delta: i64) {
        let d = &mut self.diff[mode as usize];
        let k = k as usize;
        if d.len() <= k {
            d.resize(k + 1, 0);
        }
        d[k] += delta;
    }

    fn add_range(&mut self, mode: Mode, start: i32, end: i32, sign: i64) {
        self.add(mode, start, sign);
        if end != OPEN {
            self.add(mode, end, -sign);
        }
    }

    fn apply(&mut self, c: &crate::contribution::GranContribution, sign: i64) {
        self.size += sign;
        for &k in &c.active {
            self.add_range(Mode::On, k, k + 1, sign);
        }
        if let Some(&last) = c.active.last() {
            self.add_range(Mode::OnOrAfter, 0, last + 1, sign);
        }
        for &(s, e) in &c.membership {
            self.add_range(Mode::Membership, s, e, sign);
        }
    }

    fn values(&self, mode: Mode, upto: usize) -> Vec<i64> {
        let d = &self.diff[mode as usize];
        let mut acc = 0;
        (0..=upto)
            .map(|k| {
                acc += d.get(k).copied().unwrap_or(0);
                acc
            })
            .collect()
    }
}

#[derive(Debug, Default, Clone)]
struct Written {
    size: i64,
    values: [Vec<i64>; 3],
}

#[derive(Debug, Default)]
struct MemberState {
    groups: Vec<(Scope, GroupHistory)>,
}

impl MemberState {
    fn group_mut(&mut self, scope: &Scope) -> &mut GroupHistory {
        let i = match self.groups.iter().position(|(s, _)| s == scope) {
            Some(i) => i,
            None => {
                self.groups.push((scope.clone(), GroupHistory::default()));
                self.groups.len() - 1
            }
        };
        &mut self.groups[i].1
    }

    fn sort(&mut self) {
        for (_, h) in &mut self.groups {
            h.ensure_sorted();
        }
    }

    /// Contributions for every scope the member has: each group, then the community (`""`).
    fn contributions(&self, cfg: &crate::config::CommunityConfig) -> Vec<(Scope, Option<ScopeContribution>)> {
        let mut out: Vec<(Scope, Option<ScopeContribution>)> =
            self.groups.iter().map(|(s, h)| (s.clone(), contribution(&ScopeView { groups: vec![h] }, cfg))).collect();
        let all = ScopeView { groups: self.groups.iter().map(|(_, h)| h).collect() };
        out.push((Scope::from(""), contribution(&all, cfg)));
        out
    }
}

#[derive(Default)]
struct Community {
    seen: HashSet<u128>,
    events_processed: u64,
    max_ts: i64,
    stats_dirty: bool,
    scopes: HashMap<String, Scope>,
    members: HashMap<String, MemberState>,
    /// Members changed since the last flush, with their contribution before the first change.
    touched: HashMap<String, Contributions>,
    cohorts: HashMap<CohortKey, CohortAgg>,
    dirty_cohorts: HashSet<CohortKey>,
    written: HashMap<CohortKey, Written>,
    /// The `as_of` period per granularity at the last flush; a change re-materialises every cohort.
    materialized_at: [Option<i32>; 3],
}

impl Community {
    fn scope(&mut self, group_id: &str) -> Scope {
        if let Some(s) = self.scopes.get(group_id) {
            return s.clone();
        }
        let s: Scope = Arc::from(group_id);
        self.scopes.insert(group_id.to_owned(), s.clone());
        s
    }
}

/// The engine of one partition of the event log.
pub struct Engine {
    configs: Configs,
    communities: HashMap<String, Community>,
}

impl Engine {
    pub fn new(configs: Configs) -> Self {
        Engine { configs, communities: HashMap::new() }
    }

    pub fn configs(&self) -> &Configs {
        &self.configs
    }

    /// Applies one event. Returns false for a duplicate `(community_id, event_id)`, which changes
    /// nothing.
    pub fn apply(&mut self, ev: &Event) -> bool {
        let cfg = self.configs.get(&ev.community_id);
        let comm = match self.communities.get_mut(&ev.community_id) {
            Some(c) => c,
            None => self.communities.entry(ev.community_id.clone()).or_default(),
        };
        if !comm.seen.insert(xxhash_rust::xxh3::xxh3_128(ev.event_id.as_bytes())) {
            return false;
        }
        comm.events_processed += 1;
        comm.max_ts = if comm.events_processed == 1 { ev.ts_ms } else { comm.max_ts.max(ev.ts_ms) };
        comm.stats_dirty = true;
        if ev.is_bot {
            return true;
        }
        let relevant = matches!(ev.event_type, EventType::MemberJoined | EventType::MemberLeft | EventType::Conversion)
            || cfg.is_participation(ev.event_type)
            || cfg.is_activation(ev.event_type);
        if !relevant {
            return true;
        }
        let scope = comm.scope(&ev.group_id);
        let member = comm.members.entry(ev.member_id.clone()).or_default();
        if !comm.touched.contains_key(&ev.member_id) {
            member.sort();
            comm.touched.insert(ev.member_id.clone(), member.contributions(cfg));
        }
        let h = member.group_mut(&scope);
        match ev.event_type {
            EventType::MemberJoined => h.joins.push((ev.ts_ms, ev.inviter_id.as_deref().map(Box::from))),
            EventType::MemberLeft => h.leaves.push((ev.ts_ms, ev.leave_reason)),
            EventType::Conversion => {
                h.conversions.push((ev.ts_ms, crate::contribution::value_micros(ev.conversion_value)))
            }
            _ => {}
        }
        if cfg.is_participation(ev.event_type) {
            h.participation.push(ev.ts_ms);
        }
        if cfg.is_activation(ev.event_type) {
            h.activation.push(ev.ts_ms);
        }
        h.mark_unsorted();
        true
    }

    /// The largest `ts` this partition has seen for the community.
    pub fn max_ts(&self, community_id: &str) -> Option<i64> {
        self.communities.get(community_id).filter(|c| c.events_processed > 0).map(|c| c.max_ts)
    }

    pub fn community_ids(&self) -> impl Iterator<Item = &String> {
        self.communities.keys()
    }

    /// Declares rows that storage already holds for this partition (from an earlier run), so
    /// that the next flushes overwrite them where the rebuilt state differs.
    pub fn seed_written(&mut self, cohorts: &[CohortRow], cells: &[RetentionCell]) {
        for row in cohorts {
            let (comm, key) = self.written_key(&row.community_id, &row.group_id, row.granularity, row.cohort);
            comm.written.entry(key.clone()).or_default().size = row.size as i64;
            comm.dirty_cohorts.insert(key);
        }
        for cell in cells {
            let (comm, key) = self.written_key(&cell.community_id, &cell.group_id, cell.granularity, cell.cohort);
            let values = &mut comm.written.entry(key.clone()).or_default().values[cell.mode as usize];
            let k = cell.offset as usize;
            if values.len() <= k {
                values.resize(k + 1, 0);
            }
            values[k] = cell.members as i64;
            comm.dirty_cohorts.insert(key);
        }
    }

    fn written_key(
        &mut self,
        community_id: &str,
        group_id: &str,
        g: Granularity,
        cohort: chrono::NaiveDate,
    ) -> (&mut Community, CohortKey) {
        let comm = self.communities.entry(community_id.to_owned()).or_default();
        let scope = comm.scope(group_id);
        let day = crate::period::date_to_day(cohort);
        (comm, CohortKey { scope, gran: g, cohort: crate::period::period_of_day(day, g) })
    }

    /// Emits every row whose value changed since the last flush. `as_of` gives the community-wide
    /// `as_of` (which may be later than what this partition has seen); retention rows run from the
    /// cohort to the period of `as_of`.
    pub fn flush(&mut self, as_of: &dyn Fn(&str) -> Option<i64>) -> Output {
        let mut out = Output::default();
        let mut ids: Vec<&String> = self.communities.keys().collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        for id in ids {
            let cfg = self.configs.get(&id).clone();
            let comm = self.communities.get_mut(&id).expect("listed");
            flush_members(&id, comm, &cfg, &mut out);
            let local = (comm.events_processed > 0).then_some(comm.max_ts);
            let as_of_ms = match (local, as_of(&id)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(as_of_ms) = as_of_ms {
                materialize(&id, comm, &cfg, as_of_ms, &mut out);
            }
            if comm.stats_dirty {
                comm.stats_dirty = false;
                out.stats.push(CommunityStat {
                    community_id: id.clone(),
                    events_processed: comm.events_processed,
                    max_ts_ms: comm.max_ts,
                });
            }
        }
        out
    }
}

fn flush_members(id: &str, comm: &mut Community, cfg: &crate::config::CommunityConfig, out: &mut Output) {
    let mut touched: Vec<(String, Contributions)> = comm.touched.drain().collect();
    touched.sort_by(|a, b| a.0.cmp(&b.0));
    for (member_id, before) in touched {
        let member = comm.members.get_mut(&member_id).expect("touched members exist");
        member.sort();
        let after = member.contributions(cfg);
        for (scope, new) in &after {
            let old = before.iter().find(|(s, _)| s == scope).and_then(|(_, c)| c.as_ref());
            if old == new.as_ref() {
                continue;
            }
            for (c, sign) in [(old, -1), (new.as_ref(), 1)] {
                let Some(c) = c else { continue };
                for g in Granularity::ALL {
                    let gc = &c.grans[g.idx()];
                    let key = CohortKey { scope: scope.clone(), gran: g, cohort: gc.cohort };
                    comm.cohorts.entry(key.clone()).or_default().apply(gc, sign);
                    comm.dirty_cohorts.insert(key);
                }
            }
            if let Some(c) = new {
                let fact = member_fact(id, scope, &member_id, c);
                if old.map(|o| member_fact(id, scope, &member_id, o)) != Some(fact.clone()) {
                    out.members.push(fact);
                }
            }
        }
    }
}

fn member_fact(id: &str, scope: &str, member_id: &str, c: &ScopeContribution) -> MemberFact {
    let date = |g: Granularity| period_start_date(c.grans[g.idx()].cohort, g);
    MemberFact {
        community_id: id.to_owned(),
        group_id: scope.to_owned(),
        member_id: member_id.to_owned(),
        join_ms: c.join_ms,
        cohort_day: date(Granularity::Day),
        cohort_week: date(Granularity::Week),
        cohort_month: date(Granularity::Month),
        activated: c.activation_ms.is_some(),
        activation_ms: c.activation_ms.unwrap_or(0),
        activation_window_end_ms: c.activation_window_end_ms,
        converted: c.conversion.first_ms.is_some(),
        conversion_value_micros: c.conversion.value_micros,
        first_conversion_ms: c.conversion.first_ms.unwrap_or(0),
        conversion_window_end_ms: c.conversion.window_end_ms,
        activated_then_converted: match (c.activation_ms, c.conversion.first_ms) {
            (Some(a), Some(f)) => f >= c.join_ms + a,
            _ => false,
        },
        inviter_id: c.inviter_id.as_deref().unwrap_or("").to_owned(),
        referral_window_end_ms: c.referral_window_end_ms,
    }
}

fn materialize(id: &str, comm: &mut Community, cfg: &crate::config::CommunityConfig, as_of_ms: i64, out: &mut Output) {
    for g in Granularity::ALL {
        let p = period_of_ts(as_of_ms, cfg.timezone, g);
        if comm.materialized_at[g.idx()] != Some(p) {
            comm.materialized_at[g.idx()] = Some(p);
            let all: Vec<CohortKey> = comm.cohorts.keys().filter(|k| k.gran == g).cloned().collect();
            comm.dirty_cohorts.extend(all);
        }
    }
    let mut dirty: Vec<CohortKey> = comm.dirty_cohorts.drain().collect();
    dirty.sort();
    let empty = CohortAgg::default();
    for key in dirty {
        let agg = comm.cohorts.get(&key).unwrap_or(&empty);
        let as_of_period = comm.materialized_at[key.gran.idx()].expect("set above");
        let written = comm.written.entry(key.clone()).or_default();
        let cohort_date = period_start_date(key.cohort, key.gran);
        if agg.size != written.size {
            written.size = agg.size;
            out.cohorts.push(CohortRow {
                community_id: id.to_owned(),
                group_id: key.scope.to_string(),
                granularity: key.gran,
                cohort: cohort_date,
                size: agg.size as u64,
            });
        }
        for mode in Mode::ALL {
            let w = &mut written.values[mode as usize];
            // A cohort with no members keeps no row except zeros over what was written before.
            let span = if agg.size > 0 { (as_of_period - key.cohort).max(0) as usize + 1 } else { 0 };
            let upto = span.max(w.len());
            if upto == 0 {
                continue;
            }
            let values = agg.values(mode, upto - 1);
            if w.len() < upto {
                w.resize(upto, -1);
            }
            for (k, &v) in values.iter().enumerate() {
                if w[k] != v {
                    w[k] = v;
                    out.retention.push(RetentionCell {
                        community_id: id.to_owned(),
                        group_id: key.scope.to_string(),
                        granularity: key.gran,
                        mode,
                        cohort: cohort_date,
                        offset: k as u32,
                        period: period_start_date(key.cohort + k as i32, key.gran),
                        members: v.max(0) as u64,
                    });
                }
            }
        }
        if agg.size == 0 && comm.cohorts.get(&key).is_some_and(|a| a.diff.iter().all(|d| d.iter().all(|&x| x == 0))) {
            comm.cohorts.remove(&key);
        }
    }
}
