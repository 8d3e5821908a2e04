-- Migration 1: raw archive, retention, cohort sizes, member facts (activation), community stats,
-- processor progress. Runs on ClickHouse 18.16 and on current releases.
-- `{db}` is replaced by the configured database name. One statement per block (split on ';').
-- Every derived table is a ReplacingMergeTree(version): rows hold absolute values, the newest
-- version of a key wins. Read with FINAL (or argMax) and sum over `partition`.

CREATE TABLE IF NOT EXISTS {db}.events_raw (
    community_id String,
    event_id String,
    type String,
    group_id String,
    member_id String,
    ts_ms Int64,
    platform String,
    is_bot UInt8,
    props String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
ORDER BY (community_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.cohorts (
    community_id String,
    group_id String,
    granularity String,
    cohort Date,
    partition UInt32,
    size UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, granularity, cohort, partition);

CREATE TABLE IF NOT EXISTS {db}.retention (
    community_id String,
    group_id String,
    granularity String,
    mode String,
    cohort Date,
    period_offset UInt32,
    period Date,
    partition UInt32,
    members UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, granularity, mode, cohort, period_offset, partition);

CREATE TABLE IF NOT EXISTS {db}.member_facts (
    community_id String,
    group_id String,
    member_id String,
    partition UInt32,
    join_ms Int64,
    cohort_day Date,
    cohort_week Date,
    cohort_month Date,
    activated UInt8,
    activation_ms Int64,
    activation_window_end_ms Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, member_id);

CREATE TABLE IF NOT EXISTS {db}.community_stats (
    community_id String,
    partition UInt32,
    events_processed UInt64,
    max_ts_ms Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, partition);

CREATE TABLE IF NOT EXISTS {db}.processor_progress (
    topic String,
    partition UInt32,
    next_offset Int64,
    high_watermark Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (topic, partition);
