//! Where the numbers come from. `ClickHouseSource` reads the processor's tables: each derived
//! row is a partition's partial value, so cells are `sum(...)` over partitions of the `FINAL`
//! (newest-version) rows. The trait lets the HTTP layer be tested without a database.

use crate::error::QueryError;
use crate::params::Selection;
use chrono::NaiveDate;
use clickhouse::{Client, Row};
use engine::{Granularity, Mode};
use schemas::queries;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone, PartialEq)]
pub struct CohortValues {
    pub cohort: NaiveDate,
    pub size: u64,
    pub values: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRow {
    pub cohort: NaiveDate,
    pub size: u64,
    pub activated: u64,
    pub median_hours_to_activate: Option<f64>,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConversionRow {
    pub cohort: NaiveDate,
    pub size: u64,
    pub converted: u64,
    /// Sum of `props.value` (summed exactly in millionths).
    pub value: f64,
    pub activated: u64,
    pub activated_then_converted: u64,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRow {
    pub cohort: NaiveDate,
    pub size: u64,
    pub referred: u64,
    pub invited: u64,
    pub k_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Freshness {
    pub as_of_ms: Option<i64>,
    pub events_processed: u64,
    pub lag_events: i64,
    /// Local days of the community's first event and of `as_of`: the range period tables list.
    pub days: Option<(NaiveDate, NaiveDate)>,
}

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueryError>> + Send + 'a>>;

pub trait Source: Send + Sync + 'static {
    fn retention<'a>(&'a self, sel: &'a Selection, mode: Mode) -> BoxFut<'a, Vec<CohortValues>>;
    fn activation<'a>(&'a self, sel: &'a Selection, as_of_ms: Option<i64>) -> BoxFut<'a, Vec<ActivationRow>>;
    fn conversion<'a>(&'a self, sel: &'a Selection, as_of_ms: Option<i64>) -> BoxFut<'a, Vec<ConversionRow>>;
    fn referral<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<ReferralRow>>;
    /// Engagement rows that have any partition's row (the caller fills the other days with zeros).
    fn engagement<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 10])>>;
    /// Lifecycle rows that have any partition's row.
    fn lifecycle<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 4])>>;
    /// Churn rows (members_start, churned, left, removed, inactive) that have any partition's row.
    fn churn<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 5])>>;
    /// The community's counts and day range; `lag_events` is left 0 (see `lag`).
    fn freshness<'a>(&'a self, community: &'a str) -> BoxFut<'a, Freshness>;
    /// Records still waiting in Kafka, topic-wide (only `/freshness` needs it).
    fn lag(&self) -> BoxFut<'_, i64>;
    /// The groups of a community that have any engagement row, sorted.
    fn groups<'a>(&'a self, community: &'a str) -> BoxFut<'a, Vec<String>>;
    fn ping(&self) -> BoxFut<'_, ()>;
}

pub struct ClickHouseSource {
    /// The configured database's client; queries go through `client()`, which picks the served
    /// generation's database.
    base_client: Client,
    metrics: crate::metrics::Metrics,
    /// The base database, when the served generation is to be looked up (see `serving`).
    base: Option<String>,
    /// The generation last read from `<base>.serving`, and when.
    serving: std::sync::Mutex<Option<(std::time::Instant, u32)>>,
}

/// How long the served generation is taken as known: a switch reaches every request within it.
const SERVING_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl ClickHouseSource {
    /// A source that reads the client's database as it is.
    pub fn new(client: Client, metrics: crate::metrics::Metrics) -> Self {
        ClickHouseSource { base_client: client, metrics, base: None, serving: Default::default() }
    }

    /// A source that reads whichever generation of the tables `processor switch` made current:
    /// the client's database for generation 0, `<database>_g<N>` for N.
    pub fn following_generations(client: Client, base: &str, metrics: crate::metrics::Metrics) -> Self {
        ClickHouseSource { base_client: client, metrics, base: Some(base.to_owned()), serving: Default::default() }
    }

    /// The client of the served generation. Each query asks again, so one request can straddle
    /// a switch only between two of its queries, within `SERVING_TTL`.
    async fn client(&self) -> Client {
        let Some(base) = &self.base else { return self.base_client.clone() };
        let cached = *self.serving.lock().expect("never poisoned");
        let generation = match cached {
            Some((at, g)) if at.elapsed() < SERVING_TTL => g,
            _ => {
                #[derive(Row, Deserialize)]
                struct G {
                    g: u32,
                }
                let read = self.base_client.query(&queries::serving_generation(base)).fetch_all::<G>().await;
                // Before any processor created the table, or while ClickHouse hiccups: keep
                // what was served last (generation 0 at first).
                let g = match read {
                    Ok(rows) => rows.first().map(|r| r.g).unwrap_or(0),
                    Err(_) => cached.map(|(_, g)| g).unwrap_or(0),
                };
                *self.serving.lock().expect("never poisoned") = Some((std::time::Instant::now(), g));
                g
            }
        };
        if generation == 0 {
            self.base_client.clone()
        } else {
            self.base_client.clone().with_database(schemas::ddl::generation_database(base, generation))
        }
    }

    /// A query on the served generation whose first two placeholders are the selection's
    /// community and scope.
    async fn scoped_query(&self, sql: &str, sel: &Selection) -> clickhouse::query::Query {
        self.client().await.query(sql).bind(&sel.community).bind(sel.scope_key())
    }

    fn timer(&self, what: &str) -> prometheus::HistogramTimer {
        self.metrics.clickhouse_query_seconds.with_label_values(&[what]).start_timer()
    }
}

fn date(days: u16) -> NaiveDate {
    engine::period::day_to_date(days as i32)
}

fn bind_dates(mut q: clickhouse::query::Query, sel: &Selection) -> clickhouse::query::Query {
    if let Some(f) = sel.from {
        q = q.bind(f.to_string());
    }
    if let Some(t) = sel.to {
        q = q.bind(t.to_string());
    }
    q
}

/// The `member_facts` column that holds the cohort of a granularity (a fixed list, never input).
fn cohort_column(g: Granularity) -> &'static str {
    match g {
        Granularity::Day => "cohort_day",
        Granularity::Week => "cohort_week",
        Granularity::Month => "cohort_month",
    }
}

impl Source for ClickHouseSource {
    fn retention<'a>(&'a self, sel: &'a Selection, mode: Mode) -> BoxFut<'a, Vec<CohortValues>> {
        Box::pin(async move {
            let _t = self.timer("retention");
            #[derive(Row, Deserialize)]
            struct Size {
                cohort: u16,
                size: u64,
            }
            #[derive(Row, Deserialize)]
            struct Cell {
                cohort: u16,
                period_offset: u32,
                members: u64,
            }
            let sql = queries::cohort_sizes(sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await.bind(sel.granularity.as_str());
            let sizes = bind_dates(q, sel).fetch_all::<Size>().await?;
            let sql = queries::retention_cells(sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await.bind(sel.granularity.as_str()).bind(mode.as_str());
            let cells = bind_dates(q, sel).fetch_all::<Cell>().await?;
            let mut rows: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
            for c in cells {
                let v = rows.entry(c.cohort).or_default();
                let k = c.period_offset as usize;
                if v.len() <= k {
                    v.resize(k + 1, 0);
                }
                v[k] = c.members;
            }
            Ok(sizes
                .into_iter()
                .map(|s| CohortValues {
                    cohort: date(s.cohort),
                    size: s.size,
                    values: rows.remove(&s.cohort).unwrap_or_default(),
                })
                .collect())
        })
    }

    fn activation<'a>(&'a self, sel: &'a Selection, as_of_ms: Option<i64>) -> BoxFut<'a, Vec<ActivationRow>> {
        Box::pin(async move {
            let _t = self.timer("activation");
            #[derive(Row, Deserialize)]
            struct Agg {
                cohort: u16,
                n_members: u64,
                n_activated: u64,
                times: Vec<i64>,
                window_end: i64,
            }
            let col = cohort_column(sel.granularity);
            let sql = queries::activation(col, sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await;
            let rows = bind_dates(q, sel).fetch_all::<Agg>().await?;
            Ok(rows
                .into_iter()
                .map(|a| ActivationRow {
                    cohort: date(a.cohort),
                    size: a.n_members,
                    activated: a.n_activated,
                    median_hours_to_activate: engine::table::median_hours(a.times),
                    complete: as_of_ms.is_some_and(|t| a.window_end <= t),
                })
                .collect())
        })
    }

    fn conversion<'a>(&'a self, sel: &'a Selection, as_of_ms: Option<i64>) -> BoxFut<'a, Vec<ConversionRow>> {
        Box::pin(async move {
            let _t = self.timer("conversion");
            #[derive(Row, Deserialize)]
            struct Agg {
                cohort: u16,
                n_members: u64,
                n_converted: u64,
                value_micros: i64,
                n_activated: u64,
                n_activated_then_converted: u64,
                window_end: i64,
            }
            let col = cohort_column(sel.granularity);
            let sql = queries::conversion(col, sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await;
            let rows = bind_dates(q, sel).fetch_all::<Agg>().await?;
            Ok(rows
                .into_iter()
                .map(|a| ConversionRow {
                    cohort: date(a.cohort),
                    size: a.n_members,
                    converted: a.n_converted,
                    value: a.value_micros as f64 / 1e6,
                    activated: a.n_activated,
                    activated_then_converted: a.n_activated_then_converted,
                    complete: as_of_ms.is_some_and(|t| a.window_end <= t),
                })
                .collect())
        })
    }

    fn referral<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<ReferralRow>> {
        Box::pin(async move {
            let _t = self.timer("referral");
            #[derive(Row, Deserialize)]
            struct Sizes {
                cohort: u16,
                n_members: u64,
                n_referred: u64,
            }
            #[derive(Row, Deserialize)]
            struct Invited {
                cohort: u16,
                n_invited: u64,
            }
            let col = cohort_column(sel.granularity);
            let (from, to) = (sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&queries::referral_sizes(col, from, to), sel).await;
            let sizes = bind_dates(q, sel).fetch_all::<Sizes>().await?;
            let q = self
                .scoped_query(&queries::referral_invited(col, from, to), sel)
                .await
                .bind(&sel.community)
                .bind(sel.scope_key());
            let invited: BTreeMap<u16, u64> =
                bind_dates(q, sel).fetch_all::<Invited>().await?.into_iter().map(|i| (i.cohort, i.n_invited)).collect();
            Ok(sizes
                .into_iter()
                .map(|s| {
                    let invited = invited.get(&s.cohort).copied().unwrap_or(0);
                    ReferralRow {
                        cohort: date(s.cohort),
                        size: s.n_members,
                        referred: s.n_referred,
                        invited,
                        k_factor: invited as f64 / s.n_members as f64,
                    }
                })
                .collect())
        })
    }

    fn engagement<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 10])>> {
        Box::pin(async move {
            let _t = self.timer("engagement");
            #[derive(Row, Deserialize)]
            struct Day {
                day: u16,
                dau: u64,
                wau: u64,
                mau: u64,
                messages: u64,
                reactions: u64,
                checkins: u64,
                joins: u64,
                new_members: u64,
                leaves: u64,
                members: u64,
            }
            let sql = queries::engagement(sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await;
            let rows = bind_dates(q, sel).fetch_all::<Day>().await?;
            Ok(rows
                .into_iter()
                .map(|d| {
                    let v = [
                        d.dau,
                        d.wau,
                        d.mau,
                        d.messages,
                        d.reactions,
                        d.checkins,
                        d.joins,
                        d.new_members,
                        d.leaves,
                        d.members,
                    ];
                    (date(d.day), v)
                })
                .collect())
        })
    }

    fn lifecycle<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 4])>> {
        Box::pin(async move {
            let _t = self.timer("lifecycle");
            #[derive(Row, Deserialize)]
            struct Period {
                period: u16,
                new: u64,
                returning: u64,
                resurrecting: u64,
                dormant: u64,
            }
            let sql = queries::lifecycle(sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await.bind(sel.granularity.as_str());
            let rows = bind_dates(q, sel).fetch_all::<Period>().await?;
            Ok(rows.into_iter().map(|p| (date(p.period), [p.new, p.returning, p.resurrecting, p.dormant])).collect())
        })
    }

    fn churn<'a>(&'a self, sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 5])>> {
        Box::pin(async move {
            let _t = self.timer("churn");
            #[derive(Row, Deserialize)]
            struct Period {
                period: u16,
                members_start: u64,
                churned: u64,
                left_members: u64,
                removed_members: u64,
                inactive: u64,
            }
            let sql = queries::churn(sel.from.is_some(), sel.to.is_some());
            let q = self.scoped_query(&sql, sel).await.bind(sel.granularity.as_str());
            let rows = bind_dates(q, sel).fetch_all::<Period>().await?;
            Ok(rows
                .into_iter()
                .map(|p| (date(p.period), [p.members_start, p.churned, p.left_members, p.removed_members, p.inactive]))
                .collect())
        })
    }

    fn freshness<'a>(&'a self, community: &'a str) -> BoxFut<'a, Freshness> {
        Box::pin(async move {
            let _t = self.timer("freshness");
            #[derive(Row, Deserialize)]
            struct Stats {
                n: u64,
                max_ts: i64,
                partitions: u64,
                first_day: u16,
                last_day: u16,
            }
            let stats =
                self.client().await.query(queries::COMMUNITY_STATS).bind(community).fetch_all::<Stats>().await?;
            let s = stats.first().filter(|s| s.partitions > 0);
            Ok(Freshness {
                as_of_ms: s.map(|s| s.max_ts),
                events_processed: s.map(|s| s.n).unwrap_or(0),
                lag_events: 0,
                days: s.map(|s| (date(s.first_day), date(s.last_day))),
            })
        })
    }

    fn lag(&self) -> BoxFut<'_, i64> {
        Box::pin(async move {
            let _t = self.timer("lag");
            #[derive(Row, Deserialize)]
            struct Lag {
                lag: i64,
            }
            let lag = self.client().await.query(queries::CONSUMER_LAG).fetch_all::<Lag>().await?;
            Ok(lag.first().map(|l| l.lag).unwrap_or(0))
        })
    }

    fn groups<'a>(&'a self, community: &'a str) -> BoxFut<'a, Vec<String>> {
        Box::pin(async move {
            let _t = self.timer("groups");
            #[derive(Row, Deserialize)]
            struct Group {
                group_id: String,
            }
            let rows = self.client().await.query(queries::GROUPS).bind(community).fetch_all::<Group>().await?;
            Ok(rows.into_iter().map(|g| g.group_id).collect())
        })
    }

    fn ping(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.base_client.query("SELECT 1").execute().await?;
            Ok(())
        })
    }
}
