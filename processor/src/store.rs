//! The ClickHouse side of the processor: writes a flush's rows, then the progress they cover,
//! and reads back what an earlier run left (versions, written cells, archived offsets).

use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::rows::*;
use clickhouse::{Client, Row};
use schemas::queries;
use serde::Deserialize;
use std::time::Instant;

/// Everything one flush writes. Progress goes last, in its own insert, after the rest succeeded.
#[derive(Default)]
pub struct Batch {
    pub raw: Vec<RawEventRow>,
    pub cohorts: Vec<CohortSizeRow>,
    pub retention: Vec<RetentionRow>,
    pub members: Vec<MemberFactRow>,
    pub engagement: Vec<EngagementDayRow>,
    pub lifecycle: Vec<LifecyclePeriodRow>,
    pub churn: Vec<ChurnPeriodRow>,
    pub stats: Vec<CommunityStatRow>,
    pub progress: Vec<ProgressRow>,
}

impl Batch {
    /// The derived rows of one partition's flush. The engine's rows are moved in, strings and
    /// all: a replay's round writes about a million rows, and cloning them doubled the
    /// allocations of the flush.
    pub fn from_output(out: engine::Output, partition: u32, version: u64) -> Batch {
        // Destructured, so that a table added to `Output` cannot be forgotten here.
        let engine::Output { cohorts, retention, members, engagement, lifecycle, churn, stats } = out;
        Batch {
            cohorts: cohorts.into_iter().map(|r| CohortSizeRow::new(r, partition, version)).collect(),
            retention: retention.into_iter().map(|r| RetentionRow::new(r, partition, version)).collect(),
            members: members.into_iter().map(|r| MemberFactRow::new(r, partition, version)).collect(),
            engagement: engagement.into_iter().map(|r| EngagementDayRow::new(r, partition, version)).collect(),
            lifecycle: lifecycle.into_iter().map(|r| LifecyclePeriodRow::new(r, partition, version)).collect(),
            churn: churn.into_iter().map(|r| ChurnPeriodRow::new(r, partition, version)).collect(),
            stats: stats.into_iter().map(|r| CommunityStatRow::new(r, partition, version)).collect(),
            ..Batch::default()
        }
    }

    /// Moves `other`'s rows to the end of this batch's.
    pub fn append(&mut self, other: Batch) {
        // Destructured, so that a table added to `Batch` cannot be forgotten here.
        let Batch { raw, cohorts, retention, members, engagement, lifecycle, churn, stats, progress } = other;
        self.raw.extend(raw);
        self.cohorts.extend(cohorts);
        self.retention.extend(retention);
        self.members.extend(members);
        self.engagement.extend(engagement);
        self.lifecycle.extend(lifecycle);
        self.churn.extend(churn);
        self.stats.extend(stats);
        self.progress.extend(progress);
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

    async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[T],
    ) -> Result<(), ProcessorError> {
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut insert = self.client.insert::<T>(table).await?;
        for r in rows {
            insert.write(r).await?;
        }
        insert.end().await?;
        self.metrics.clickhouse_insert_seconds.with_label_values(&[table]).observe(started.elapsed().as_secs_f64());
        self.metrics.rows_written.with_label_values(&[table]).inc_by(rows.len() as u64);
        Ok(())
    }

    /// Writes derived rows and the raw archive, then the progress rows. A failure anywhere leaves
    /// progress where it was, so the same rows are written again on retry or restart.
    ///
    /// Seven tables are written concurrently (one HTTP request each): a flush then waits for the
    /// slowest insert rather than for the sum of them. Rows are absolute values with a version,
    /// so the order among them does not matter. `community_stats` comes after them: it is what
    /// `/freshness` reports as counted, so it must not show events whose rows are still in
    /// flight. Progress comes last.
    #[tracing::instrument(name = "clickhouse.write", skip_all, fields(rows = batch.rows()))]
    pub async fn write(&self, batch: &Batch) -> Result<(), ProcessorError> {
        tokio::try_join!(
            self.insert("events_raw", &batch.raw),
            self.insert("cohorts", &batch.cohorts),
            self.insert("retention", &batch.retention),
            self.insert("member_facts", &batch.members),
            self.insert("engagement", &batch.engagement),
            self.insert("lifecycle", &batch.lifecycle),
            self.insert("churn", &batch.churn),
        )?;
        self.insert("community_stats", &batch.stats).await?;
        self.insert("processor_progress", &batch.progress).await?;
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

    /// The rows of one derived table this partition wrote after `after_version` (zeros
    /// included): `sql` is one of `queries::WRITTEN_*`, `T` that table's row.
    pub async fn written<T>(&self, sql: &str, partition: u32, after_version: u64) -> Result<Vec<T>, ProcessorError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        Ok(self.client.query(sql).bind(partition).bind(after_version).fetch_all::<T>().await?)
    }
}
