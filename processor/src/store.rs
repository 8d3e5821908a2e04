//! The ClickHouse side of the processor: writes a flush's rows, then the progress they cover,
//! and reads back what an earlier run left (versions, written cells, archived offsets).

use crate::backoff::Backoff;
use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::pieces::KeyColumn::{self, String as Str, UInt16, UInt32};
use crate::pieces::{Piece, Sorted};
use crate::rowbinary::EncodedRows;
use crate::rows::*;
use clickhouse::{Client, Row};
use schemas::queries;
use serde::Deserialize;
use std::time::Instant;

/// Everything one flush writes, encoded (see `rowbinary`). Progress goes last, in its own insert,
/// after the rest succeeded.
#[derive(Default)]
pub struct Batch {
    pub raw: EncodedRows,
    pub cohorts: EncodedRows,
    pub retention: EncodedRows,
    pub members: EncodedRows,
    pub engagement: EncodedRows,
    pub lifecycle: EncodedRows,
    pub churn: EncodedRows,
    pub stats: EncodedRows,
    pub progress: EncodedRows,
}

/// Encodes each of `rows` as the table's row type.
fn encode<E, R: serde::Serialize>(rows: Vec<E>, row: impl Fn(E) -> R) -> EncodedRows {
    let mut out = EncodedRows::default();
    for r in rows {
        out.push(&row(r));
    }
    out
}

impl Batch {
    /// The derived rows of one partition's flush, encoded on the thread that flushed its engine.
    /// The engine's rows are moved in, strings and all.
    pub fn from_output(out: engine::Output, partition: u32, version: u64) -> Batch {
        // Destructured, so that a table added to `Output` cannot be forgotten here.
        let engine::Output { cohorts, retention, members, engagement, lifecycle, churn, stats } = out;
        Batch {
            cohorts: encode(cohorts, |r| CohortSizeRow::new(r, partition, version)),
            retention: encode(retention, |r| RetentionRow::new(r, partition, version)),
            members: encode(members, |r| MemberFactRow::new(r, partition, version)),
            engagement: encode(engagement, |r| EngagementDayRow::new(r, partition, version)),
            lifecycle: encode(lifecycle, |r| LifecyclePeriodRow::new(r, partition, version)),
            churn: encode(churn, |r| ChurnPeriodRow::new(r, partition, version)),
            stats: encode(stats, |r| CommunityStatRow::new(r, partition, version)),
            ..Batch::default()
        }
    }

    /// Moves `other`'s rows to the end of this batch's.
    pub fn append(&mut self, other: Batch) {
        // Destructured, so that a table added to `Batch` cannot be forgotten here.
        let Batch { raw, cohorts, retention, members, engagement, lifecycle, churn, stats, progress } = other;
        self.raw.append(raw);
        self.cohorts.append(cohorts);
        self.retention.append(retention);
        self.members.append(members);
        self.engagement.append(engagement);
        self.lifecycle.append(lifecycle);
        self.churn.append(churn);
        self.stats.append(stats);
        self.progress.append(progress);
    }

    pub fn rows(&self) -> usize {
        self.raw.len()
            + self.cohorts.len()
            + self.retention.len()
            + self.members.len()
            + self.engagement.len()
            + self.lifecycle.len()
            + self.churn.len()
            + self.stats.len()
    }
}

/// A table's rows are inserted in pieces of at least this size (see `Store::insert`).
const INSERT_PIECE_BYTES: usize = 32 << 20;

/// The archive's sorting key (`ORDER BY` in `schemas/clickhouse/0001_core.sql`), which its rows
/// begin with: each piece is sent in this order, so that ClickHouse need not sort it (see
/// `pieces`).
pub const ARCHIVE_KEY: [&str; 2] = ["community_id", "event_id"];

/// A derived table's sorting key as its rows lead with it: each piece is sent in this order too.
pub type SortKey = &'static [(&'static str, KeyColumn)];

/// The derived tables' keys (`ORDER BY` in `schemas/clickhouse/`). Retention's also holds
/// `period`, which sits in the row before `partition`: it is `cohort + period_offset` in the
/// cohort's granularity, so it does not change the order.
pub const SORT_KEYS: [(&str, SortKey); 7] = [
    (
        "cohorts",
        &[("community_id", Str), ("group_id", Str), ("granularity", Str), ("cohort", UInt16), ("partition", UInt32)],
    ),
    (
        "retention",
        &[
            ("community_id", Str),
            ("group_id", Str),
            ("granularity", Str),
            ("mode", Str),
            ("cohort", UInt16),
            ("period_offset", UInt32),
            ("period", UInt16),
            ("partition", UInt32),
        ],
    ),
    ("member_facts", &[("community_id", Str), ("group_id", Str), ("member_id", Str)]),
    ("engagement", &[("community_id", Str), ("group_id", Str), ("day", UInt16), ("partition", UInt32)]),
    (
        "lifecycle",
        &[("community_id", Str), ("group_id", Str), ("granularity", Str), ("period", UInt16), ("partition", UInt32)],
    ),
    (
        "churn",
        &[("community_id", Str), ("group_id", Str), ("granularity", Str), ("period", UInt16), ("partition", UInt32)],
    ),
    ("community_stats", &[("community_id", Str), ("partition", UInt32)]),
];

/// A piece this small (a running processor's flush, mostly) is sorted on the insert's own task,
/// in well under a millisecond, rather than handed to a blocking thread.
const SORT_ON_TASK_BYTES: usize = 256 << 10;

/// The order a table's rows are sent in.
#[derive(Clone, Copy)]
enum Order {
    AsPushed,
    Archive,
    Key(SortKey),
}

impl Order {
    fn of(table: &str) -> Order {
        if table == "events_raw" {
            return Order::Archive;
        }
        SORT_KEYS.iter().find(|(t, _)| *t == table).map_or(Order::AsPushed, |(_, key)| Order::Key(key))
    }

    /// Rows that do not lead with the key (a row type changed without its key) go as they are.
    fn checked(self, columns: &[&str]) -> Order {
        let leads = match self {
            Order::AsPushed => true,
            Order::Archive => columns.starts_with(&ARCHIVE_KEY),
            Order::Key(key) => {
                key.len() <= columns.len() && key.iter().zip(columns).all(|((name, _), column)| name == column)
            }
        };
        if leads {
            self
        } else {
            Order::AsPushed
        }
    }

    /// The piece's rows in this order, copied (when they must be) a chunk at a time as the
    /// insert takes them.
    fn apply(self, piece: Piece) -> Sorted {
        match self {
            Order::AsPushed => Sorted::from(piece),
            Order::Archive => piece.sorted_by_first_two_strings(),
            Order::Key(key) => piece.sorted_by_key(&key.iter().map(|(_, column)| *column).collect::<Vec<_>>()),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    metrics: Metrics,
}

impl Store {
    pub fn new(client: Client, metrics: Metrics) -> Self {
        Store { client, metrics }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One table's rows, inserted by tasks of their own: the `clickhouse` crate compresses a
    /// body where it is sent, so the flush's inserts compress on the runtime's threads rather
    /// than all on the flush's. Rows beyond `INSERT_PIECE_BYTES` are split over several inserts:
    /// ClickHouse handles an insert on one thread, and a replay's round archives a million rows.
    /// A table with a sorting key has each piece sorted first, a large one on a blocking thread.
    pub(crate) fn insert(
        &self,
        table: &'static str,
        rows: &EncodedRows,
    ) -> Vec<tokio::task::JoinHandle<Result<(), ProcessorError>>> {
        let sql = rows.insert_sql(table);
        let order = Order::of(table).checked(rows.columns());
        rows.pieces(INSERT_PIECE_BYTES)
            .into_iter()
            .map(|piece| {
                let (client, metrics, sql) = (self.client.clone(), self.metrics.clone(), sql.clone());
                tokio::spawn(async move {
                    let (n, bytes) = (piece.rows(), piece.bytes());
                    let chunks = if bytes <= SORT_ON_TASK_BYTES {
                        order.apply(piece)
                    } else {
                        tokio::task::spawn_blocking(move || order.apply(piece))
                            .await
                            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                    };
                    // From here the insert's time includes copying the rows into their order,
                    // a chunk at a time, as well as compressing and sending them.
                    let started = Instant::now();
                    let mut insert = client.insert_formatted_with(sql);
                    for chunk in chunks {
                        insert.send(chunk).await?;
                    }
                    insert.end().await?;
                    let elapsed = started.elapsed();
                    tracing::debug!(table, rows = n, bytes, elapsed_ms = elapsed.as_millis() as u64, "inserted");
                    metrics.clickhouse_insert_seconds.with_label_values(&[table]).observe(elapsed.as_secs_f64());
                    metrics.rows_written.with_label_values(&[table]).inc_by(n as u64);
                    Ok(())
                })
            })
            .collect()
    }

    /// Waits for every task, also after one failed: none may still be running when the caller
    /// retries or gives the partitions up. The first error is returned; a task that panicked
    /// re-raises its panic here.
    pub(crate) async fn finished(
        tasks: Vec<tokio::task::JoinHandle<Result<(), ProcessorError>>>,
    ) -> Result<(), ProcessorError> {
        let mut result = Ok(());
        for task in tasks {
            let done = task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            result = result.and(done);
        }
        result
    }

    /// Writes derived rows and the raw archive, then the progress rows. A failure anywhere leaves
    /// progress where it was, so the same rows are written again on retry or restart.
    ///
    /// Seven tables are written concurrently (an HTTP request each, several for a large one): a
    /// flush then waits for the slowest insert rather than for the sum of them. Rows are absolute
    /// values with a version, so the order among them does not matter. `community_stats` comes after them: it is what
    /// `/freshness` reports as counted, so it must not show events whose rows are still in
    /// flight. Progress comes last.
    #[tracing::instrument(name = "clickhouse.write", skip_all, fields(rows = batch.rows()))]
    pub async fn write(&self, batch: &Batch) -> Result<(), ProcessorError> {
        let first = [
            self.insert("events_raw", &batch.raw),
            self.insert("cohorts", &batch.cohorts),
            self.insert("retention", &batch.retention),
            self.insert("member_facts", &batch.members),
            self.insert("engagement", &batch.engagement),
            self.insert("lifecycle", &batch.lifecycle),
            self.insert("churn", &batch.churn),
        ];
        Self::finished(first.into_iter().flatten().collect()).await?;
        Self::finished(self.insert("community_stats", &batch.stats)).await?;
        Self::finished(self.insert("processor_progress", &batch.progress)).await?;
        Ok(())
    }

    /// The highest version any derived row of `partition` carries: the next run continues above it.
    pub async fn max_version(&self, partition: u32) -> Result<u64, ProcessorError> {
        #[derive(Row, Deserialize)]
        struct V {
            v: u64,
        }
        let mut max = 0;
        // Progress rows carry the flush's version too, also when it wrote no derived row.
        for table in queries::DERIVED_TABLES.iter().chain(&["processor_progress"]) {
            let rows = self.client.query(&queries::max_version(table)).bind(partition).fetch_all::<V>().await?;
            max = max.max(rows.first().map(|r| r.v).unwrap_or(0));
        }
        Ok(max)
    }

    /// The largest event time every instance has written, per community (the shared `as_of`).
    pub async fn community_max_ts(&self) -> Result<Vec<(String, i64)>, ProcessorError> {
        #[derive(Row, Deserialize)]
        struct M {
            community_id: String,
            ts: i64,
        }
        let rows = self.client.query(queries::COMMUNITY_MAX_TS).fetch_all::<M>().await?;
        Ok(rows.into_iter().map(|m| (m.community_id, m.ts)).collect())
    }

    /// Offsets below this were archived (and their derived rows written) by an earlier run.
    pub async fn archived_until(&self, topic: &str, partition: u32) -> Result<i64, ProcessorError> {
        #[derive(Row, Deserialize)]
        struct O {
            o: i64,
        }
        let rows = self.client.query(queries::ARCHIVED_UNTIL).bind(topic).bind(partition).fetch_all::<O>().await?;
        Ok(rows.first().map(|r| r.o).unwrap_or(0))
    }

    /// `archived_until` as the database `db` (another generation's) has it.
    pub async fn archived_until_in(&self, db: &str, topic: &str, partition: u32) -> Result<i64, ProcessorError> {
        #[derive(Row, Deserialize)]
        struct O {
            o: i64,
        }
        let sql = queries::archived_until_in(db);
        let rows = self.client.query(&sql).bind(topic).bind(partition).fetch_all::<O>().await?;
        Ok(rows.first().map(|r| r.o).unwrap_or(0))
    }

    /// Copies the archive rows of `src` (another generation's database) in each partition's
    /// offsets `ranges` (partition, from, until) into this database's archive, with `local_day`
    /// and `participation` computed by ClickHouse for `configs`: one `INSERT ... SELECT` per
    /// distinct (time zone, participation types) among the communities, so ClickHouse moves the
    /// rows column by column instead of the processor decoding and encoding each event again.
    /// Rows with `ts` below `ts_min_ms` are not copied (nor below `queries::COPY_TS_MIN_MS`).
    ///
    /// A statement ClickHouse fails (an outage, a restart) is sent again after `backoff`'s next
    /// delay, until it succeeds, as the writes are: a replay waits out an outage instead of
    /// ending. One that failed part way may have inserted some of its rows; the archive's
    /// `ReplacingMergeTree` keeps one row per event of the copies (`FINAL`, or once merged).
    /// The caller stops it by dropping it (a replay stopped during its copy aborts it).
    pub async fn copy_archive(
        &self,
        src: &str,
        configs: &engine::Configs,
        ranges: &[(i32, i64, i64)],
        ts_min_ms: i64,
        mut backoff: Backoff,
    ) -> Result<(), ProcessorError> {
        let ranges: Vec<(i32, i64, i64)> = ranges.iter().copied().filter(|&(_, from, until)| until > from).collect();
        if ranges.is_empty() {
            return Ok(());
        }
        type Key = (String, Vec<&'static str>);
        let key = |c: &engine::CommunityConfig| -> Key {
            let mut types: Vec<&'static str> = c.participation_types.iter().map(|t| t.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            (c.timezone.name().to_string(), types)
        };
        let default = key(&configs.default);
        // Communities configured unlike the default, by their configuration.
        let mut groups: std::collections::BTreeMap<Key, Vec<&str>> = std::collections::BTreeMap::new();
        for (id, c) in &configs.communities {
            let k = key(c);
            if k != default {
                groups.entry(k).or_default().push(id);
            }
        }
        // Sorted: the same configuration always makes the same statements.
        groups.values_mut().for_each(|ids| ids.sort_unstable());
        let mut others: Vec<&str> = groups.values().flatten().copied().collect();
        others.sort_unstable();
        let statements = groups.iter().map(|(k, ids)| (k, ids, false)).chain([(&default, &others, true)]);
        for ((tz, types), ids, not_in) in statements {
            let sql = queries::copy_archive(src, types, ranges.len(), ids.len(), not_in, ts_min_ms);
            let mut attempts = 0u32;
            loop {
                let mut q = self.client.query(&sql).bind(tz.as_str());
                for &(p, from, until) in &ranges {
                    q = q.bind(p).bind(from).bind(until);
                }
                for id in ids {
                    q = q.bind(*id);
                }
                match q.execute().await {
                    Ok(()) => break,
                    Err(e) => {
                        attempts += 1;
                        self.metrics.write_failures.inc();
                        let delay = backoff.next_delay();
                        tracing::warn!(
                            error = %e,
                            timezone = %tz,
                            attempts,
                            retry_in_ms = delay.as_millis() as u64,
                            "archive copy failed"
                        );
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The rows of one derived table this partition wrote after `after_version` (zeros
    /// included): `sql` is one of `queries::WRITTEN_*`, `T` that table's row.
    pub async fn written<T>(&self, sql: &str, partition: u32, after_version: u64) -> Result<Vec<T>, ProcessorError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        Ok(self.client.query(sql).bind(partition).bind(after_version).fetch_all::<T>().await?)
    }
}
