-- Migration 3: daily engagement and lifecycle per period, and the local first/last day of each
-- community (the range those tables list). Rows are per Kafka partition: sum over `partition`.
ALTER TABLE {db}.community_stats ADD COLUMN min_ts_ms Int64;
ALTER TABLE {db}.community_stats ADD COLUMN first_day Date;
ALTER TABLE {db}.community_stats ADD COLUMN last_day Date;

CREATE TABLE IF NOT EXISTS {db}.engagement (
    community_id String,
    group_id String,
    day Date,
    partition UInt32,
    dau UInt64,
    wau UInt64,
    mau UInt64,
    messages UInt64,
    reactions UInt64,
    checkins UInt64,
    joins UInt64,
    new_members UInt64,
    leaves UInt64,
    members UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, day, partition);

CREATE TABLE IF NOT EXISTS {db}.lifecycle (
    community_id String,
    group_id String,
    granularity String,
    period Date,
    partition UInt32,
    new UInt64,
    returning UInt64,
    resurrecting UInt64,
    dormant UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, granularity, period, partition);
