//! The rows a restarted processor reads back (those written after its checkpoint) come oldest
//! version first from every derived table, whatever parts they sit in: the engine seeds them in
//! that order, so the newest row of a key wins, as `FINAL` would choose (docs/design.md). Each
//! row is inserted on its own, newest first, and the tables' sort keys order them newest first
//! too, so neither the parts nor a background merge can hand them over oldest first by chance.

use e2e_tests::Stack;
use schemas::queries;

const PARTITION: u32 = 7;

/// The versions `sql` (a `queries::WRITTEN_*` read-back, version as its last column) returns for
/// `PARTITION` after `after`.
fn read_back(stack: &Stack, sql: &str, after: u64) -> Vec<u64> {
    let q = sql.replacen('?', &PARTITION.to_string(), 1).replacen('?', &after.to_string(), 1);
    let out = stack.sql(&format!("{q} FORMAT TSV")).expect("read-back query runs");
    out.lines().map(|l| l.rsplit('\t').next().unwrap().parse().expect("a version")).collect()
}

#[test]
fn read_back_rows_come_oldest_version_first_from_every_part() {
    let stack = Stack::start("read-back", 1).expect("stack starts");
    for (table, sql) in [
        ("cohorts", queries::WRITTEN_COHORTS),
        ("retention", queries::WRITTEN_RETENTION),
        ("engagement", queries::WRITTEN_ENGAGEMENT),
        ("lifecycle", queries::WRITTEN_LIFECYCLE),
        ("churn", queries::WRITTEN_CHURN),
    ] {
        for version in (1..=6u64).rev() {
            // Community ids sort against version order: c3 holds version 6, c8 version 1.
            let community = format!("c{}", 9 - version);
            stack
                .sql(&format!(
                    "INSERT INTO {table} (community_id, partition, version) VALUES ('{community}', {PARTITION}, {version})"
                ))
                .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
        }
        assert_eq!(read_back(&stack, sql, 0), vec![1, 2, 3, 4, 5, 6], "{table}");
        assert_eq!(read_back(&stack, sql, 4), vec![5, 6], "{table}, after version 4");
    }
}
