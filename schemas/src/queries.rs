//! Every SQL statement the services send, in one place, so that `examples/sql_catalog.rs` can
//! print them for a check against a current ClickHouse (`schemas/tests/check_current_clickhouse.py`)
//! while the end-to-end test runs them on 18.16. `?` marks a bound value.

/// `AND column >= toDate(?)` / `<= toDate(?)` for the optional `from` / `to` of a request.
pub fn date_filter(column: &str, from: bool, to: bool) -> String {
    let mut sql = String::new();
    if from {
        sql.push_str(&format!(" AND {column} >= toDate(?)"));
    }
    if to {
        sql.push_str(&format!(" AND {column} <= toDate(?)"));
    }
    sql
}

/// Binds: community, group ('' = community scope), granularity, [from], [to].
pub fn cohort_sizes(from: bool, to: bool) -> String {
    format!(
        "SELECT cohort, toUInt64(sum(size)) AS size FROM cohorts FINAL \
         WHERE community_id = ? AND group_id = ? AND granularity = ?{} \
         GROUP BY cohort HAVING size > 0 ORDER BY cohort",
        date_filter("cohort", from, to)
    )
}

/// Binds: community, group, granularity, mode, [from], [to].
pub fn retention_cells(from: bool, to: bool) -> String {
    format!(
        "SELECT cohort, period_offset, toUInt64(sum(members)) AS members FROM retention FINAL \
         WHERE community_id = ? AND group_id = ? AND granularity = ? AND mode = ?{} \
         GROUP BY cohort, period_offset ORDER BY cohort, period_offset",
        date_filter("cohort", from, to)
    )
}

/// `cohort_column` is one of `cohort_day`, `cohort_week`, `cohort_month` (never user input).
/// Binds: community, group, [from], [to].
pub fn activation(cohort_column: &str, from: bool, to: bool) -> String {
    format!(
        "SELECT {cohort_column} AS cohort, toUInt64(count()) AS n_members, toUInt64(sum(activated)) AS n_activated, \
         groupArrayIf(activation_ms, activated = 1) AS times, max(activation_window_end_ms) AS window_end \
         FROM member_facts FINAL WHERE community_id = ? AND group_id = ?{} \
         GROUP BY cohort ORDER BY cohort",
        date_filter(cohort_column, from, to)
    )
}

/// Conversion and funnel per cohort. Binds: community, group, [from], [to].
pub fn conversion(cohort_column: &str, from: bool, to: bool) -> String {
    format!(
        "SELECT {cohort_column} AS cohort, toUInt64(count()) AS n_members, toUInt64(sum(converted)) AS n_converted, \
         toInt64(sum(conversion_value_micros)) AS value_micros, toUInt64(sum(activated)) AS n_activated, \
         toUInt64(sum(activated_then_converted)) AS n_activated_then_converted, \
         max(conversion_window_end_ms) AS window_end \
         FROM member_facts FINAL WHERE community_id = ? AND group_id = ?{} \
         GROUP BY cohort ORDER BY cohort",
        date_filter(cohort_column, from, to)
    )
}

/// Cohort sizes and referred members. Binds: community, group, [from], [to].
pub fn referral_sizes(cohort_column: &str, from: bool, to: bool) -> String {
    format!(
        "SELECT {cohort_column} AS cohort, toUInt64(count()) AS n_members, toUInt64(sum(inviter_id != '')) AS n_referred \
         FROM member_facts FINAL WHERE community_id = ? AND group_id = ?{} \
         GROUP BY cohort ORDER BY cohort",
        date_filter(cohort_column, from, to)
    )
}

/// Members invited by members of each cohort within the inviter's referral window (the invitee's
/// earliest join names the inviter). Binds: community, group, community, group, [from], [to].
pub fn referral_invited(cohort_column: &str, from: bool, to: bool) -> String {
    format!(
        "SELECT cohort, toUInt64(count()) AS n_invited FROM \
         (SELECT inviter_id AS member_id, join_ms AS invitee_join_ms FROM member_facts FINAL \
          WHERE community_id = ? AND group_id = ? AND inviter_id != '') AS invitees \
         ALL INNER JOIN \
         (SELECT member_id, join_ms, referral_window_end_ms, {cohort_column} AS cohort FROM member_facts FINAL \
          WHERE community_id = ? AND group_id = ?) AS inviters \
         USING member_id \
         WHERE invitee_join_ms >= join_ms AND invitee_join_ms < referral_window_end_ms{} \
         GROUP BY cohort ORDER BY cohort",
        date_filter("cohort", from, to)
    )
}

/// Events counted, `as_of`, and the local days of the first event and of `as_of` (the range the
/// per-period tables list). Binds: community.
pub const COMMUNITY_STATS: &str = "SELECT toUInt64(sum(events_processed)) AS n, toInt64(max(max_ts_ms)) AS max_ts, \
     toUInt64(count()) AS partitions, min(first_day) AS first_day, max(last_day) AS last_day \
     FROM community_stats FINAL WHERE community_id = ?";

/// The views of migration 5, for analysts (docs/analyst.md).
pub const ANALYST_VIEWS: [&str; 2] = ["weekly_retention_by_invite", "group_activation"];

/// Binds: community. Groups with any engagement row (every group with a counted event has one).
pub const GROUPS: &str = "SELECT group_id FROM engagement WHERE community_id = ? AND group_id != '' \
     GROUP BY group_id ORDER BY group_id";

pub const CONSUMER_LAG: &str =
    "SELECT toInt64(sum(greatest(high_watermark - next_offset, 0))) AS lag FROM processor_progress FINAL";

/// Binds: partition. `table` is one of the derived tables (never user input).
pub fn max_version(table: &str) -> String {
    format!("SELECT toUInt64(max(version)) AS v FROM {table} WHERE partition = ?")
}

pub const DERIVED_TABLES: [&str; 7] =
    ["cohorts", "retention", "member_facts", "community_stats", "engagement", "lifecycle", "churn"];

/// Binds: community, group, [from], [to].
pub fn engagement(from: bool, to: bool) -> String {
    format!(
        "SELECT day, toUInt64(sum(dau)) AS dau, toUInt64(sum(wau)) AS wau, toUInt64(sum(mau)) AS mau, \
         toUInt64(sum(messages)) AS messages, toUInt64(sum(reactions)) AS reactions, \
         toUInt64(sum(checkins)) AS checkins, toUInt64(sum(joins)) AS joins, \
         toUInt64(sum(new_members)) AS new_members, toUInt64(sum(leaves)) AS leaves, \
         toUInt64(sum(members)) AS members \
         FROM engagement FINAL WHERE community_id = ? AND group_id = ?{} GROUP BY day ORDER BY day",
        date_filter("day", from, to)
    )
}

/// Binds: community, group, granularity, [from], [to].
pub fn lifecycle(from: bool, to: bool) -> String {
    format!(
        "SELECT period, toUInt64(sum(new)) AS new, toUInt64(sum(returning)) AS returning, \
         toUInt64(sum(resurrecting)) AS resurrecting, toUInt64(sum(dormant)) AS dormant \
         FROM lifecycle FINAL WHERE community_id = ? AND group_id = ? AND granularity = ?{} \
         GROUP BY period ORDER BY period",
        date_filter("period", from, to)
    )
}

/// Binds: community, group, granularity, [from], [to].
pub fn churn(from: bool, to: bool) -> String {
    format!(
        "SELECT period, toUInt64(sum(members_start)) AS members_start, toUInt64(sum(churned)) AS churned, \
         toUInt64(sum(left_members)) AS left_members, toUInt64(sum(removed_members)) AS removed_members, \
         toUInt64(sum(inactive)) AS inactive \
         FROM churn FINAL WHERE community_id = ? AND group_id = ? AND granularity = ?{} \
         GROUP BY period ORDER BY period",
        date_filter("period", from, to)
    )
}

/// `ARCHIVED_UNTIL` in another database (the served generation's, from which a replay copies).
pub fn archived_until_in(db: &str) -> String {
    format!("SELECT toInt64(max(next_offset)) AS o FROM {db}.processor_progress WHERE topic = ? AND partition = ?")
}

/// The events a replay takes from the served generation's archive by `copy_archive` instead of
/// encoding their rows again: those whose `ts` lies in `[COPY_TS_MIN_MS, COPY_TS_MAX_MS)`, where
/// ClickHouse's `toDateTime` and the processor's `local_day` agree with no clamping (two days
/// after the epoch, so no time zone's date falls before it; before 2100, well inside
/// `DateTime`'s range on every ClickHouse version). The replay encodes the others itself.
pub const COPY_TS_MIN_MS: i64 = 2 * 86_400_000;
pub const COPY_TS_MAX_MS: i64 = 4_102_444_800_000;

/// Copies archive rows from `src.events_raw` into this database's `events_raw`, with `local_day`
/// and `participation` computed for one community configuration, as the processor would write
/// them: `participation` lists its participation types (`type` values, as archived). Binds, in
/// order: the time zone (an IANA name), then `ranges` triples of (partition, first offset
/// copied, first offset not copied), then `communities` community ids, which the rows'
/// community must be in (`not_in`: must not be in; with none and `not_in`, every community).
/// Rows with `ts` below `ts_min_ms` (at least `COPY_TS_MIN_MS`: a replay's `counts_from` may
/// raise it) are left out.
pub fn copy_archive(
    src: &str,
    participation: &[&str],
    ranges: usize,
    communities: usize,
    not_in: bool,
    ts_min_ms: i64,
) -> String {
    let ts_min_ms = ts_min_ms.max(COPY_TS_MIN_MS);
    let participates = if participation.is_empty() {
        "0".to_string()
    } else {
        let types: Vec<String> = participation.iter().map(|t| format!("'{t}'")).collect();
        format!("is_bot = 0 AND type IN ({})", types.join(", "))
    };
    let ranges = vec!["(kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ?)"; ranges.max(1)].join(" OR ");
    let mut filter = format!("({ranges}) AND ts_ms >= {ts_min_ms} AND ts_ms < {COPY_TS_MAX_MS}");
    if communities > 0 {
        let ids = vec!["?"; communities].join(", ");
        filter.push_str(&format!(" AND community_id {}IN ({ids})", if not_in { "NOT " } else { "" }));
    }
    format!(
        "INSERT INTO events_raw (community_id, event_id, type, group_id, member_id, ts_ms, platform, is_bot, props, \
         kafka_partition, kafka_offset, local_day, participation) \
         SELECT community_id, event_id, type, group_id, member_id, ts_ms, platform, is_bot, props, kafka_partition, \
         kafka_offset, toDate(toDateTime(intDiv(ts_ms, 1000), ?)), toUInt8({participates}) \
         FROM {src}.events_raw WHERE {filter}"
    )
}

/// The rows of one partition written after a version (zero rows included: they overwrote
/// something), oldest version first: seeded in that order, the newest of a key wins, as `FINAL`
/// would choose, without `FINAL`'s merge of the whole table (seconds at millions of rows).
/// Binds: partition, version.
pub const WRITTEN_CHURN: &str = "SELECT community_id, group_id, granularity, period, partition, members_start, \
     churned, left_members, removed_members, inactive, version FROM churn WHERE partition = ? AND version > ? ORDER BY version";

/// The rows of one partition written after a version (zero rows included: they overwrote
/// something), oldest version first: seeded in that order, the newest of a key wins, as `FINAL`
/// would choose, without `FINAL`'s merge of the whole table (seconds at millions of rows).
/// Binds: partition, version.
pub const WRITTEN_ENGAGEMENT: &str = "SELECT community_id, group_id, day, partition, dau, wau, mau, messages, \
     reactions, checkins, joins, new_members, leaves, members, version FROM engagement WHERE partition = ? AND version > ? ORDER BY version";

/// The rows of one partition written after a version (zero rows included: they overwrote
/// something), oldest version first: seeded in that order, the newest of a key wins, as `FINAL`
/// would choose, without `FINAL`'s merge of the whole table (seconds at millions of rows).
/// Binds: partition, version.
pub const WRITTEN_LIFECYCLE: &str = "SELECT community_id, group_id, granularity, period, partition, new, returning, \
     resurrecting, dormant, version FROM lifecycle WHERE partition = ? AND version > ? ORDER BY version";

/// The `counts_from` recorded for a generation, and how many records there are (none: `n` = 0).
/// `db` is the base database. Binds: generation.
pub fn generation_counts_from(db: &str) -> String {
    format!(
        "SELECT toInt64(argMax(counts_from_ms, recorded_at_ms)) AS ms, count() AS n \
         FROM {db}.generation_counts_from WHERE generation = ?"
    )
}

/// The generation being served (0 when no switch was ever made). `db` is the base database.
pub fn serving_generation(db: &str) -> String {
    format!("SELECT toUInt32(argMax(generation, switched_at_ms)) AS g FROM {db}.serving")
}

/// Every processor instance's largest event time per community: the `as_of` they share.
pub const COMMUNITY_MAX_TS: &str =
    "SELECT community_id, toInt64(max(max_ts_ms)) AS ts FROM community_stats FINAL GROUP BY community_id";

/// Binds: topic, partition.
pub const ARCHIVED_UNTIL: &str =
    "SELECT toInt64(max(next_offset)) AS o FROM processor_progress WHERE topic = ? AND partition = ?";

/// The rows of one partition written after a version (zero rows included: they overwrote
/// something), oldest version first: seeded in that order, the newest of a key wins, as `FINAL`
/// would choose, without `FINAL`'s merge of the whole table (seconds at millions of rows).
/// Binds: partition, version.
pub const WRITTEN_COHORTS: &str = "SELECT community_id, group_id, granularity, cohort, partition, size, version \
     FROM cohorts WHERE partition = ? AND version > ? ORDER BY version";

/// The rows of one partition written after a version (zero rows included: they overwrote
/// something), oldest version first: seeded in that order, the newest of a key wins, as `FINAL`
/// would choose, without `FINAL`'s merge of the whole table (seconds at millions of rows).
/// Binds: partition, version.
pub const WRITTEN_RETENTION: &str = "SELECT community_id, group_id, granularity, mode, cohort, period_offset, period, \
     partition, members, version FROM retention WHERE partition = ? AND version > ? ORDER BY version";

use crate::ddl;

fn bind(sql: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut it = values.iter();
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            let v = it.next().expect("enough sample values");
            // Numbers bind unquoted, strings quoted, as the clickhouse crate does.
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(v);
            } else {
                out.push_str(&format!("'{v}'"));
            }
        }
        out.push_str(part);
    }
    out
}

/// Every statement with sample values bound: `("ddl" | "query", sql)`. Queries name tables
/// without the database, as the services do (they connect with `database=<db>`).
pub fn catalog(db: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut emit = |kind: &'static str, sql: String| out.push((kind, sql));
    emit("ddl", format!("CREATE DATABASE IF NOT EXISTS {db}"));
    emit("ddl", ddl::migrations_table(db));
    emit("ddl", ddl::serving_table(db));
    emit("ddl", ddl::generation_counts_from_table(db));
    for m in ddl::MIGRATIONS {
        for s in m.statements(db) {
            emit("ddl", s);
        }
    }
    for (from, to) in [(false, false), (true, false), (false, true), (true, true)] {
        let dates: Vec<&str> =
            [from.then_some("2024-01-01"), to.then_some("2024-03-31")].into_iter().flatten().collect();
        let mut b = vec!["demo", "", "week"];
        b.extend(&dates);
        emit("query", bind(&cohort_sizes(from, to), &b));
        let mut b = vec!["demo", "g1", "month", "on_or_after"];
        b.extend(&dates);
        emit("query", bind(&retention_cells(from, to), &b));
        for col in ["cohort_day", "cohort_week", "cohort_month"] {
            let mut b = vec!["demo", ""];
            b.extend(&dates);
            emit("query", bind(&activation(col, from, to), &b));
            emit("query", bind(&conversion(col, from, to), &b));
            emit("query", bind(&referral_sizes(col, from, to), &b));
            let mut b = vec!["demo", "", "demo", ""];
            b.extend(&dates);
            emit("query", bind(&referral_invited(col, from, to), &b));
        }
    }
    emit("query", bind(COMMUNITY_STATS, &["demo"]));
    emit("query", bind(GROUPS, &["demo"]));
    for view in ANALYST_VIEWS {
        emit("query", format!("SELECT * FROM {view}"));
    }
    for (from, to) in [(false, false), (true, true)] {
        let dates: Vec<&str> =
            [from.then_some("2024-01-01"), to.then_some("2024-03-31")].into_iter().flatten().collect();
        let mut b = vec!["demo", "g1"];
        b.extend(&dates);
        emit("query", bind(&engagement(from, to), &b));
        let mut b = vec!["demo", "", "week"];
        b.extend(&dates);
        emit("query", bind(&lifecycle(from, to), &b));
        emit("query", bind(&churn(from, to), &b));
    }
    emit("query", bind(WRITTEN_ENGAGEMENT, &["0", "0"]));
    emit("query", bind(WRITTEN_LIFECYCLE, &["0", "0"]));
    emit("query", bind(WRITTEN_CHURN, &["0", "0"]));
    emit("query", CONSUMER_LAG.to_string());
    emit("query", COMMUNITY_MAX_TS.to_string());
    emit("query", serving_generation(db));
    emit("query", bind(&generation_counts_from(db), &["0"]));
    for t in DERIVED_TABLES {
        emit("query", bind(&max_version(t), &["0"]));
    }
    emit("query", bind(ARCHIVED_UNTIL, &["engagement-events", "0"]));
    emit("query", bind(WRITTEN_COHORTS, &["0", "0"]));
    emit("query", bind(WRITTEN_RETENTION, &["0", "0"]));
    emit("query", bind(&archived_until_in(db), &["engagement-events", "0"]));
    // The copy from the archive into itself, of empty offset ranges: this list runs on live test
    // stacks, and a copy that matched rows would rewrite their `local_day` and `participation`.
    let copy = copy_archive(db, &["message_posted", "checkin"], 2, 1, false, COPY_TS_MIN_MS);
    emit("query", bind(&copy, &["Asia/Shanghai", "0", "0", "0", "1", "5", "5", "demo"]));
    emit("query", bind(&copy_archive(db, &[], 1, 1, true, 1_735_689_600_000), &["UTC", "0", "0", "0", "demo"]));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalog_binds_every_placeholder() {
        let c = super::catalog("db");
        assert!(c.len() > 30);
        assert!(c.iter().all(|(_, sql)| !sql.contains('?')));
    }
}
