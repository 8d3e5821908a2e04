//! ClickHouse DDL, as versioned migrations. The runner that applies them lives in the processor
//! (`processor migrate`); these are plain data so that tests can check them against any engine.

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    sql: &'static str,
}

impl Migration {
    /// The migration's statements for database `db`, one statement each (ClickHouse's HTTP
    /// interface takes one statement per request).
    pub fn statements(&self, db: &str) -> Vec<String> {
        split_statements(self.sql).into_iter().map(|s| s.replace("{db}", db)).collect()
    }
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "core", sql: include_str!("../clickhouse/0001_core.sql") },
    Migration {
        version: 2,
        name: "conversion_referral",
        sql: include_str!("../clickhouse/0002_conversion_referral.sql"),
    },
    Migration {
        version: 3,
        name: "engagement_lifecycle",
        sql: include_str!("../clickhouse/0003_engagement_lifecycle.sql"),
    },
    Migration { version: 4, name: "churn", sql: include_str!("../clickhouse/0004_churn.sql") },
    Migration { version: 5, name: "analyst_views", sql: include_str!("../clickhouse/0005_analyst_views.sql") },
];

/// `(table, column)` when `statement` is `ALTER TABLE db.table ADD COLUMN column ...`: the runner
/// skips it when the column exists, since ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`.
pub fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let (alter, table_kw, table, add, column_kw, column) =
        (words.next()?, words.next()?, words.next()?, words.next()?, words.next()?, words.next()?);
    let is_add = alter.eq_ignore_ascii_case("ALTER")
        && table_kw.eq_ignore_ascii_case("TABLE")
        && add.eq_ignore_ascii_case("ADD")
        && column_kw.eq_ignore_ascii_case("COLUMN");
    is_add.then(|| (table.rsplit('.').next().unwrap_or(table), column))
}

/// The bookkeeping table of the runner itself.
pub fn migrations_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, applied_at DateTime) \
         ENGINE = MergeTree ORDER BY version"
    )
}

/// Which generation of the derived tables the query API serves: an append-only log of switches in
/// the base database, the newest row winning (see docs/operations.md, "Replay").
pub fn serving_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.serving (generation UInt32, switched_at_ms Int64) \
         ENGINE = MergeTree ORDER BY switched_at_ms"
    )
}

/// The `counts_from` each generation was built with (`i64::MIN` for none: every event counts),
/// newest row winning: a processor refuses to write a generation with another value (see
/// docs/operations.md, "Replay from a timestamp"). In the base database, beside `serving`.
pub fn generation_counts_from_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.generation_counts_from (generation UInt32, counts_from_ms Int64, \
         recorded_at_ms Int64) ENGINE = MergeTree ORDER BY (generation, recorded_at_ms)"
    )
}

/// The database holding a generation's tables: the base database itself for generation 0, then
/// `<base>_g<N>`.
pub fn generation_database(base: &str, generation: u32) -> String {
    if generation == 0 {
        base.to_owned()
    } else {
        format!("{base}_g{generation}")
    }
}

fn split_statements(sql: &str) -> Vec<String> {
    let without_comments: String =
        sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_added_columns() {
        assert_eq!(
            added_column("ALTER TABLE db.member_facts ADD COLUMN inviter_id String"),
            Some(("member_facts", "inviter_id"))
        );
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS db.x (a UInt8)"), None);
    }

    #[test]
    fn versions_are_strictly_increasing_and_statements_are_idempotent() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last, "migration {} out of order", m.name);
            last = m.version;
            for s in m.statements("x") {
                let guarded = s.contains("IF NOT EXISTS") || s.contains("IF EXISTS") || added_column(&s).is_some();
                assert!(guarded, "not idempotent: {s}");
                assert!(!s.contains("{db}"));
            }
        }
    }
}
