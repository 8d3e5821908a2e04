//! The engine of one Kafka partition: member histories, the aggregate cells they add up to, and
//! what was last written, so that a flush emits only changed rows.

use crate::activity::{activity, Activity, Term, INACTIVE};
use crate::config::Configs;
use crate::contribution::{contribution, ScopeContribution, ScopeView, OPEN};
use crate::event_ids::{id_hash, EventIds};
use crate::history::{stamp, GroupHistory, COUNTED};
use crate::output::{
    ChurnRow, CohortRow, CommunityStat, EngagementRow, LifecycleRow, MemberFact, Mode, Output, RetentionCell,
};
use crate::pending::PendingPoints;
use crate::period::{period_of_ts, period_start_date, Granularity};
use crate::series::DiffSeries;
use schemas::{Event, EventType, EventView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Hash maps keyed by ids and cells: foldhash is several times faster than SipHash on short
/// keys and still seeded per process, so crafted member ids cannot force collisions.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// `""` is the community scope; anything else is a group id. Shared by every member of the group
/// (interned per community), and saved in checkpoints as the plain string. An `Arc<String>`, one
/// pointer, rather than an `Arc<str>`, two: each group of each member holds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope(Arc<String>);

impl From<&str> for Scope {
    fn from(s: &str) -> Self {
        Scope(Arc::new(s.to_owned()))
    }
}

impl std::ops::Deref for Scope {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Scope::from(String::deserialize(d)?.as_str()))
    }
}

/// A member's contribution in each of its scopes: to cohort tables (if joined) and to period tables.
type Contributions = Vec<(Scope, Option<ScopeContribution>, Activity)>;

/// A family of per-period series written as one table row per period: engagement (by day), or
/// lifecycle at one granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
enum FamilyKind {
    Engagement,
    Lifecycle(Granularity),
    Churn(Granularity),
}

const FAMILIES: [FamilyKind; 7] = [
    FamilyKind::Engagement,
    FamilyKind::Lifecycle(Granularity::Day),
    FamilyKind::Lifecycle(Granularity::Week),
    FamilyKind::Lifecycle(Granularity::Month),
    FamilyKind::Churn(Granularity::Day),
    FamilyKind::Churn(Granularity::Week),
    FamilyKind::Churn(Granularity::Month),
];

impl FamilyKind {
    fn granularity(self) -> Granularity {
        match self {
            FamilyKind::Engagement => Granularity::Day,
            FamilyKind::Lifecycle(g) | FamilyKind::Churn(g) => g,
        }
    }

    fn width(self) -> usize {
        match self {
            FamilyKind::Engagement => crate::activity::ENGAGEMENT.len(),
            FamilyKind::Lifecycle(_) => crate::activity::LIFECYCLE.len(),
            FamilyKind::Churn(_) => crate::activity::CHURN.len(),
        }
    }

    /// Position in `FAMILIES`.
    fn idx(self) -> usize {
        match self {
            FamilyKind::Engagement => 0,
            FamilyKind::Lifecycle(g) => 1 + g.idx(),
            FamilyKind::Churn(g) => 4 + g.idx(),
        }
    }
}

type FamilyKey = (Scope, FamilyKind);

/// The families of one scope together: a member's change then costs one map lookup per scope,
/// not one per family.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ScopeFamilies([Family; FAMILIES.len()]);

/// Which families of a scope changed since the last flush, one bit per `FAMILIES` entry.
type DirtyMask = u8;
const ALL_FAMILIES: DirtyMask = (1 << FAMILIES.len()) - 1;

/// Difference maps over the period index, one per series: a term adds at its start and removes
/// at its end, so open terms (still a member) extend by themselves as `as_of` moves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Family {
    diffs: Vec<DiffSeries>,
    /// Inactivity points whose moment `as_of` has not reached (churn families only). A point is
    /// in `diffs` exactly when its moment is at or before `applied_as_of`.
    pending: PendingPoints,
    applied_as_of: Option<i64>,
}

impl Family {
    fn apply(&mut self, width: usize, t: &Term, sign: i64) {
        Family::add_to(&mut self.diffs, width, t.series, t.start, t.end, sign * t.value);
    }

    /// Adds one member to the `inactive` series of `period` from `moment` on (`sign` -1 takes
    /// it back).
    fn apply_inactive(&mut self, width: usize, period: i32, moment: i64, sign: i32) {
        if self.applied_as_of.is_some_and(|a| moment <= a) {
            Family::add_to(&mut self.diffs, width, INACTIVE, period, period + 1, sign as i64);
        } else {
            self.pending.add(moment, period, sign);
        }
    }

    /// Moves the points whose moment `as_of` has reached into the sums; true when any moved.
    fn advance(&mut self, width: usize, as_of: i64) -> bool {
        if self.applied_as_of.is_some_and(|a| a >= as_of) {
            return false;
        }
        self.applied_as_of = Some(as_of);
        let Family { diffs, pending, .. } = self;
        pending.take_due(as_of, |period, count| {
            Family::add_to(diffs, width, INACTIVE, period, period + 1, count);
        })
    }

    fn add_to(diffs: &mut Vec<DiffSeries>, width: usize, series: u8, start: i32, end: i32, value: i64) {
        if diffs.len() < width {
            diffs.resize(width, DiffSeries::default());
        }
        let d = &mut diffs[series as usize];
        d.add(start, value);
        if end != OPEN {
            d.add(end, -value);
        }
    }

    fn first(&self) -> Option<i32> {
        self.diffs.iter().filter_map(DiffSeries::first).min()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct CohortKey {
    scope: Scope,
    gran: Granularity,
    cohort: i32,
}

/// Sums of member contributions for one cohort, as difference arrays over the offset `k`
/// (value at k = prefix sum up to k), so a member adds or retracts in O(ranges), and an open
/// membership range extends by itself as `as_of` moves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Written {
    size: i64,
    values: [Vec<i64>; 3],
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MemberState {
    /// Bot events' ids too: they count in `events_processed` once.
    ids: EventIds,
    groups: crate::thin_list::ThinList<(Scope, GroupHistory)>,
}

impl MemberState {
    /// The member's history in `group_id`; `scope` (the community's shared copy of the id) is
    /// asked for only when the member is new to the group, so that an event in a known group
    /// costs no lookup in the community's scopes.
    fn group_mut(&mut self, group_id: &str, scope: impl FnOnce() -> Scope) -> &mut GroupHistory {
        let i = match self.groups.iter().position(|(s, _)| **s == *group_id) {
            Some(i) => i,
            None => {
                // Most members are in one or two groups: growing by one keeps no spare slots,
                // which at 56 bytes each would cost as much as the history itself.
                self.groups.reserve_exact(1);
                self.groups.push((scope(), GroupHistory::default()));
                self.groups.len() - 1
            }
        };
        &mut self.groups[i].1
    }

    /// Sorts each history, and the groups by id: simultaneous leaves from several groups then
    /// apply in group-id order whatever order the events arrived in. Also gives back the slots
    /// the lists grew by since the last flush (a list that doubled keeps up to half of its slots
    /// spare, which over a replay would be every member's). A member with a new event grows
    /// again, so a live flush pays two small reallocations per changed member.
    fn settle(&mut self) {
        self.groups.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, h) in &mut self.groups {
            h.sort();
            h.shrink_to_fit();
        }
        self.ids.shrink_to_fit();
    }

    /// Contributions for every scope the member has: each group, then the community
    /// (`community`, the community's interned `""`: keys compared by pointer, not by contents).
    fn contributions(&self, cfg: &crate::config::CommunityConfig, community: &Scope) -> Contributions {
        let both = |view: &ScopeView<'_>| {
            let c = contribution(view, cfg);
            let cohort = c.as_ref().map(|c| c.grans.clone().map(|g| g.cohort));
            let a = activity(view, cohort, c.as_ref().map(|c| c.join_ms), cfg);
            (c, a)
        };
        let mut out: Contributions = self
            .groups
            .iter()
            .map(|(s, h)| {
                let one = [h];
                let (c, a) = both(&ScopeView::new(&one, cfg));
                (s.clone(), c, a)
            })
            .collect();
        // Most members are in one group, whose view is then the community's view too.
        let (c, a) = match &out[..] {
            [(_, c, a)] => (c.clone(), a.clone()),
            _ => {
                let all: Vec<&GroupHistory> = self.groups.iter().map(|(_, h)| h).collect();
                both(&ScopeView::new(&all, cfg))
            }
        };
        out.push((community.clone(), c, a));
        out
    }
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Community {
    events_processed: u64,
    min_ts: i64,
    max_ts: i64,
    stats_dirty: bool,
    scopes: FastMap<String, Scope>,
    members: FastMap<crate::thin_str::ThinStr, MemberState>,
    /// Members changed since the last flush, with their contribution before the first change.
    touched: FastMap<String, Contributions>,
    cohorts: FastMap<CohortKey, CohortAgg>,
    dirty_cohorts: FastSet<CohortKey>,
    written: FastMap<CohortKey, Written>,
    /// The `as_of` period per granularity at the last flush; a change re-materialises every cohort.
    materialized_at: [Option<i32>; 3],
    families: FastMap<Scope, ScopeFamilies>,
    dirty_families: FastMap<Scope, DirtyMask>,
    written_families: FastMap<FamilyKey, BTreeMap<i32, Vec<i64>>>,
}

impl Community {
    fn scope(&mut self, group_id: &str) -> Scope {
        intern(&mut self.scopes, group_id)
    }

    /// Marks the members changed since the last flush (a checkpoint keeps them in `touched`, not
    /// the marks).
    pub(crate) fn mark_touched(&mut self) {
        for id in self.touched.keys() {
            let member = self.members.get_mut(id.as_str()).expect("touched members exist");
            member.groups.set_mark(true);
        }
    }

    /// After loading from a checkpoint every member holds its own copy of each group id: share
    /// them again (at a million members the copies would cost tens of megabytes).
    pub(crate) fn intern_scopes(&mut self) {
        let scopes = &mut self.scopes;
        for member in self.members.values_mut() {
            for (s, _) in &mut member.groups {
                *s = intern(scopes, s);
            }
        }
    }
}

fn intern(scopes: &mut FastMap<String, Scope>, group_id: &str) -> Scope {
    if let Some(s) = scopes.get(group_id) {
        return s.clone();
    }
    let s = Scope::from(group_id);
    scopes.insert(group_id.to_owned(), s.clone());
    s
}

/// The engine of one partition of the event log.
pub struct Engine {
    configs: Configs,
    communities: FastMap<String, Community>,
}

impl Engine {
    pub fn new(configs: Configs) -> Self {
        Engine { configs, communities: FastMap::default() }
    }

    pub(crate) fn parts(&self) -> (&Configs, &FastMap<String, Community>) {
        (&self.configs, &self.communities)
    }

    pub(crate) fn from_parts(configs: Configs, mut communities: FastMap<String, Community>) -> Self {
        for c in communities.values_mut() {
            c.intern_scopes();
            c.mark_touched();
        }
        Engine { configs, communities }
    }

    /// The largest `ts` seen per community, for every community this engine holds.
    pub fn max_ts_by_community(&self) -> impl Iterator<Item = (&str, i64)> {
        self.communities.iter().filter(|(_, c)| c.events_processed > 0).map(|(id, c)| (id.as_str(), c.max_ts))
    }

    /// Applies one event. Returns false for a duplicate `(community_id, event_id)`, which changes
    /// nothing.
    pub fn apply(&mut self, ev: &Event) -> bool {
        self.apply_view(&ev.view())
    }

    /// `apply` for an event borrowed from its record (`schemas::parse_event_view`).
    pub fn apply_view(&mut self, ev: &EventView<'_>) -> bool {
        let cfg = self.configs.get(ev.community_id);
        let comm = match self.communities.get_mut(ev.community_id) {
            Some(c) => c,
            None => self.communities.entry(ev.community_id.to_owned()).or_default(),
        };
        let member = match comm.members.get_mut(ev.member_id) {
            Some(m) => m,
            None => comm.members.entry(ev.member_id.into()).or_default(),
        };
        if !member.ids.insert(id_hash(ev.event_id)) {
            return false;
        }
        comm.events_processed += 1;
        comm.max_ts = if comm.events_processed == 1 { ev.ts_ms } else { comm.max_ts.max(ev.ts_ms) };
        comm.min_ts = if comm.events_processed == 1 { ev.ts_ms } else { comm.min_ts.min(ev.ts_ms) };
        comm.stats_dirty = true;
        if ev.is_bot {
            return true;
        }
        // Marked: changed since the last flush, and in `touched` (the mark saves that map a
        // lookup per event).
        let first_change = !member.groups.is_marked();
        if first_change {
            // A member with no history yet contributes nothing: no need to compute that.
            let before = if member.groups.is_empty() {
                Contributions::new()
            } else {
                member.settle();
                member.contributions(cfg, &intern(&mut comm.scopes, ""))
            };
            comm.touched.insert(ev.member_id.to_owned(), before);
        }
        let h = member.group_mut(ev.group_id, || intern(&mut comm.scopes, ev.group_id));
        match ev.event_type {
            EventType::MemberJoined => {
                h.joins.push(ev.ts_ms);
                if let Some(inviter) = ev.inviter_id {
                    h.invites.push((ev.ts_ms, Box::from(inviter)));
                }
            }
            EventType::MemberLeft => h.leaves.push((ev.ts_ms, ev.leave_reason)),
            EventType::Conversion => {
                h.conversions.push((ev.ts_ms, crate::contribution::value_micros(ev.conversion_value)))
            }
            EventType::MessagePosted
            | EventType::ReactionAdded
            | EventType::Checkin
            | EventType::ActivityParticipated => {}
        }
        if COUNTED.has(ev.event_type) || cfg.is_participation(ev.event_type) || cfg.is_activation(ev.event_type) {
            h.stamps.push(stamp(ev.ts_ms, ev.event_type));
        }
        if first_change {
            // The group list has an allocation now: the member is in at least this group.
            member.groups.set_mark(true);
        }
        true
    }

    /// The largest `ts` this partition has seen for the community.
    pub fn max_ts(&self, community_id: &str) -> Option<i64> {
        self.communities.get(community_id).filter(|c| c.events_processed > 0).map(|c| c.max_ts)
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

    /// Like `seed_written`, for the per-period tables (engagement, lifecycle).
    pub fn seed_written_periods(
        &mut self,
        engagement: &[EngagementRow],
        lifecycle: &[LifecycleRow],
        churn: &[ChurnRow],
    ) {
        let rows = engagement
            .iter()
            .map(|r| (&r.community_id, &r.group_id, FamilyKind::Engagement, r.day, r.values.to_vec()))
            .chain(lifecycle.iter().map(|r| {
                (&r.community_id, &r.group_id, FamilyKind::Lifecycle(r.granularity), r.period, r.values.to_vec())
            }))
            .chain(churn.iter().map(|r| {
                (&r.community_id, &r.group_id, FamilyKind::Churn(r.granularity), r.period, r.values.to_vec())
            }));
        for (community_id, group_id, kind, date, values) in rows {
            let comm = self.communities.entry(community_id.clone()).or_default();
            let key = (comm.scope(group_id), kind);
            let p = crate::period::period_of_day(crate::period::date_to_day(date), kind.granularity());
            comm.written_families.entry(key.clone()).or_default().insert(p, values);
            *comm.dirty_families.entry(key.0).or_default() |= 1 << kind.idx();
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
            let local = (comm.events_processed > 0).then_some(comm.max_ts);
            let as_of_ms = match (local, as_of(&id)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            flush_members(&id, comm, &cfg, as_of_ms, &mut out);
            if let Some(as_of_ms) = as_of_ms {
                materialize(&id, comm, &cfg, as_of_ms, &mut out);
                materialize_families(&id, comm, as_of_ms, &mut out);
            }
            if comm.stats_dirty {
                comm.stats_dirty = false;
                let day = |t: i64| crate::period::day_to_date(crate::period::local_day(t, cfg.timezone));
                out.stats.push(CommunityStat {
                    community_id: id.clone(),
                    events_processed: comm.events_processed,
                    min_ts_ms: comm.min_ts,
                    max_ts_ms: comm.max_ts,
                    first_day: day(comm.min_ts),
                    last_day: day(comm.max_ts),
                });
            }
        }
        out
    }
}

fn flush_members(
    id: &str,
    comm: &mut Community,
    cfg: &crate::config::CommunityConfig,
    as_of_ms: Option<i64>,
    out: &mut Output,
) {
    // Taken, not drained: a drained map keeps its capacity, sized for the busiest flush.
    let mut touched: Vec<(String, Contributions)> = std::mem::take(&mut comm.touched).into_iter().collect();
    touched.sort_by(|a, b| a.0.cmp(&b.0));
    let community = intern(&mut comm.scopes, "");
    for (member_id, before) in touched {
        let member = comm.members.get_mut(member_id.as_str()).expect("touched members exist");
        member.groups.set_mark(false);
        member.settle();
        let after = member.contributions(cfg, &community);
        for (scope, new, new_activity) in &after {
            let old_entry = before.iter().find(|(s, _, _)| s == scope);
            let old_activity = old_entry.map(|(_, _, a)| a);
            if old_activity != Some(new_activity) {
                let families = comm.families.entry(scope.clone()).or_default();
                // Moments `as_of` has reached then go straight into the sums, not through
                // `pending` (the scope is marked dirty below either way).
                if let Some(as_of_ms) = as_of_ms {
                    for kind in FAMILIES {
                        families.0[kind.idx()].advance(kind.width(), as_of_ms);
                    }
                }
                for (a, sign) in [(old_activity, -1), (Some(new_activity), 1)] {
                    let Some(a) = a else { continue };
                    for t in &a.terms {
                        let f = t.family as usize;
                        families.0[f].apply(FAMILIES[f].width(), t, sign as i64);
                    }
                    for &(f, period, moment) in &a.inactive {
                        let f = f as usize;
                        families.0[f].apply_inactive(FAMILIES[f].width(), period, moment, sign);
                    }
                }
                *comm.dirty_families.entry(scope.clone()).or_default() |= ALL_FAMILIES;
            }
            let old = old_entry.and_then(|(_, c, _)| c.as_ref());
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
                if !old.is_some_and(|o| same_fact(o, c)) {
                    out.members.push(member_fact(id, scope, &member_id, c));
                }
            }
        }
    }
}

/// Whether two contributions give the same `member_facts` row: everything but the offsets
/// (destructured, so that a field added to `ScopeContribution` cannot be forgotten here).
fn same_fact(a: &ScopeContribution, b: &ScopeContribution) -> bool {
    let ScopeContribution {
        join_ms,
        activation_ms,
        activation_window_end_ms,
        conversion,
        inviter_id,
        referral_window_end_ms,
        grans,
    } = a;
    *join_ms == b.join_ms
        && *activation_ms == b.activation_ms
        && *activation_window_end_ms == b.activation_window_end_ms
        && *conversion == b.conversion
        && *inviter_id == b.inviter_id
        && *referral_window_end_ms == b.referral_window_end_ms
        && grans.iter().zip(&b.grans).all(|(x, y)| x.cohort == y.cohort)
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
            let mask = FAMILIES.iter().filter(|k| k.granularity() == g).fold(0, |m, k| m | 1 << k.idx());
            for scope in comm.families.keys() {
                *comm.dirty_families.entry(scope.clone()).or_default() |= mask;
            }
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

/// Emits every period row of the dirty families whose values changed, from the family's first
/// period to the period of `as_of` (already set in `materialized_at`).
fn materialize_families(id: &str, comm: &mut Community, as_of_ms: i64, out: &mut Output) {
    for (scope, families) in comm.families.iter_mut() {
        for kind in FAMILIES {
            if families.0[kind.idx()].advance(kind.width(), as_of_ms) {
                *comm.dirty_families.entry(scope.clone()).or_default() |= 1 << kind.idx();
            }
        }
    }
    let mut dirty: Vec<FamilyKey> = comm
        .dirty_families
        .drain()
        .flat_map(|(scope, mask)| {
            FAMILIES.into_iter().filter(move |k| mask & (1 << k.idx()) != 0).map(move |k| (scope.clone(), k))
        })
        .collect();
    dirty.sort();
    let empty = Family::default();
    for key in dirty {
        let kind = key.1;
        let g = kind.granularity();
        let Some(hi) = comm.materialized_at[g.idx()] else { continue };
        let family = comm.families.get(&key.0).map_or(&empty, |f| &f.0[kind.idx()]);
        let written = comm.written_families.entry(key.clone()).or_default();
        let lo = match (family.first(), written.keys().next().copied()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(x) => x,
                None => continue,
            },
        };
        let width = kind.width();
        let mut iters: Vec<_> = (0..width)
            .map(|s| family.diffs.get(s).map(|d| d.entries().take_while(|&(k, _)| k <= hi).peekable()))
            .collect();
        let mut acc = vec![0i64; width];
        for p in lo..=hi {
            for (s, it) in iters.iter_mut().enumerate() {
                if let Some(it) = it {
                    while let Some((_, v)) = it.next_if(|&(k, _)| k <= p) {
                        acc[s] += v;
                    }
                }
            }
            let before = written.get(&p);
            let unchanged = match before {
                Some(w) => *w == acc,
                None => acc.iter().all(|&v| v == 0),
            };
            if unchanged {
                continue;
            }
            written.insert(p, acc.clone());
            let group_id = key.0.to_string();
            match kind {
                FamilyKind::Engagement => out.engagement.push(EngagementRow {
                    community_id: id.to_owned(),
                    group_id,
                    day: period_start_date(p, g),
                    values: acc.clone().try_into().expect("engagement width"),
                }),
                FamilyKind::Lifecycle(g) => out.lifecycle.push(LifecycleRow {
                    community_id: id.to_owned(),
                    group_id,
                    granularity: g,
                    period: period_start_date(p, g),
                    values: acc.clone().try_into().expect("lifecycle width"),
                }),
                FamilyKind::Churn(g) => out.churn.push(ChurnRow {
                    community_id: id.to_owned(),
                    group_id,
                    granularity: g,
                    period: period_start_date(p, g),
                    values: acc.clone().try_into().expect("churn width"),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paid once per member and once per group of each member (docs/performance.md).
    #[test]
    fn a_member_and_its_groups_stay_small() {
        assert_eq!(std::mem::size_of::<(crate::thin_str::ThinStr, MemberState)>(), 24);
        assert_eq!(std::mem::size_of::<(Scope, GroupHistory)>(), 48);
    }

    #[test]
    fn each_family_sits_at_its_index() {
        for (i, k) in FAMILIES.iter().enumerate() {
            assert_eq!(k.idx(), i, "{k:?}");
        }
        // The numbers the activity's terms carry.
        assert_eq!(FamilyKind::Engagement.idx(), crate::activity::ENGAGEMENT_FAMILY as usize);
        for g in Granularity::ALL {
            assert_eq!(FamilyKind::Lifecycle(g).idx(), crate::activity::lifecycle_family(g) as usize);
            assert_eq!(FamilyKind::Churn(g).idx(), crate::activity::churn_family(g) as usize);
        }
    }
}
