-- Migration 4: churn per period (SPEC 4.7). churn_rate = sum(churned) / sum(members_start).
CREATE TABLE IF NOT EXISTS {db}.churn (
    community_id String,
    group_id String,
    granularity String,
    period Date,
    partition UInt32,
    members_start UInt64,
    churned UInt64,
    left_members UInt64,
    removed_members UInt64,
    inactive UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (community_id, group_id, granularity, period, partition);
