-- Migration 5: views for common analyst questions. The archive gains each event's local day (in
-- the community's time zone) and whether it counts as participation under the community's
-- configuration (bots never do), both as the processor saw them; rows archived before this
-- migration hold 1970-01-01 and 0 until a replay rewrites them.
ALTER TABLE {db}.events_raw ADD COLUMN local_day Date;
ALTER TABLE {db}.events_raw ADD COLUMN participation UInt8;

-- Weekly "on" retention (SPEC 4.2, community scope) split by whether the member's earliest join
-- named an inviter: one row per (community, cohort week, invited, week offset) for every offset
-- from 0 to the week of as_of, zeros included. Summed over `invited` it equals the `retention`
-- table's weekly "on" cells.
CREATE VIEW IF NOT EXISTS {db}.weekly_retention_by_invite AS
SELECT
    community_id,
    cohort_week,
    invited,
    period_offset,
    cohort_members,
    retained_members,
    retained_members / cohort_members AS retention_rate
FROM (
    SELECT
        community_id,
        cohort_week,
        invited,
        cohort_members,
        arrayJoin(range(toUInt32(toRelativeWeekNum(as_of_week) - toRelativeWeekNum(cohort_week) + 1))) AS period_offset
    FROM (
        SELECT community_id, cohort_week, toUInt8(inviter_id != '') AS invited, toUInt64(count()) AS cohort_members
        FROM {db}.member_facts FINAL
        WHERE group_id = ''
        GROUP BY community_id, cohort_week, invited
    ) AS sizes
    ANY LEFT JOIN (
        SELECT community_id, toMonday(max(last_day)) AS as_of_week
        FROM {db}.community_stats FINAL
        GROUP BY community_id
    ) AS stats USING (community_id)
) AS cells
ANY LEFT JOIN (
    SELECT
        community_id,
        cohort_week,
        invited,
        toUInt32(toRelativeWeekNum(week) - toRelativeWeekNum(cohort_week)) AS period_offset,
        toUInt64(uniqExact(member_id)) AS retained_members
    FROM (
        SELECT community_id, member_id, toMonday(local_day) AS week, ts_ms
        FROM {db}.events_raw
        WHERE participation = 1
    ) AS activity
    ALL INNER JOIN (
        SELECT community_id, member_id, cohort_week, join_ms, toUInt8(inviter_id != '') AS invited
        FROM {db}.member_facts FINAL
        WHERE group_id = ''
    ) AS joined USING (community_id, member_id)
    WHERE ts_ms >= join_ms
    GROUP BY community_id, cohort_week, invited, period_offset
) AS retained USING (community_id, cohort_week, invited, period_offset);

-- How well each group activates the members who join it (SPEC 4.5, group scope, all cohorts):
-- the rate counts only members whose activation window has closed by the community's as_of, so
-- groups with many recent joiners are not penalised.
CREATE VIEW IF NOT EXISTS {db}.group_activation AS
SELECT
    community_id,
    group_id,
    toUInt64(count()) AS new_members,
    toUInt64(sum(activated)) AS activated_members,
    toUInt64(countIf(activation_window_end_ms <= as_of_ms)) AS window_closed,
    toUInt64(countIf(activated = 1 AND activation_window_end_ms <= as_of_ms)) AS activated_window_closed,
    activated_window_closed / window_closed AS activation_rate,
    avgIf(activation_ms / 3600000, activated = 1) AS avg_hours_to_activate
FROM {db}.member_facts FINAL
ANY LEFT JOIN (
    SELECT community_id, max(max_ts_ms) AS as_of_ms
    FROM {db}.community_stats FINAL
    GROUP BY community_id
) AS stats USING (community_id)
WHERE group_id != ''
GROUP BY community_id, group_id;
