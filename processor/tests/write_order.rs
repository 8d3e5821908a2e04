//! The order of a flush's inserts, against a stand-in for ClickHouse's HTTP interface that
//! records when each insert starts and ends (and can refuse one): the seven derived tables and
//! the archive first, `community_stats` only once all of them succeeded, progress last; and after
//! a failed insert neither of the last two. This is the order the effectively-once output and
//! `/freshness` rely on (docs/design.md), checked without timing luck: the slowest insert is
//! made slow on purpose.

mod support;

use engine::{Configs, Engine};
use processor::rows::*;
use processor::store::Batch;
use schemas::{parse_event_value, Limits};
use std::sync::Arc;
use std::time::Duration;
use support::{store_against, table_of, Recorder};

/// A batch with rows in every table, from a small community run through the engine.
fn full_batch() -> Batch {
    let mut events = Vec::new();
    for (i, (t, member, ts)) in [
        ("member_joined", "a", "2024-01-01T10:00:00Z"),
        ("message_posted", "a", "2024-01-02T10:00:00Z"),
        ("conversion", "a", "2024-01-03T10:00:00Z"),
        ("member_left", "a", "2024-03-01T10:00:00Z"),
        ("member_joined", "b", "2024-01-05T10:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let v = serde_json::json!({"event_id": format!("e{i}"), "type": t, "community_id": "c",
                                   "group_id": "g", "member_id": member, "ts": ts, "props": {}});
        events.push(parse_event_value(&v, None, &Limits::default()).unwrap());
    }
    let configs = Configs::default();
    let mut engine = Engine::new(configs.clone());
    let mut batch = Batch::default();
    for (offset, e) in events.iter().enumerate() {
        engine.apply(e);
        batch.raw.push(&RawEventRow::new(&e.view(), configs.get("c"), 0, offset as i64));
    }
    let out = engine.flush(&|_| None);
    batch.append(Batch::from_output(out, 0, 1));
    batch.progress.push(&ProgressRow {
        topic: "events".into(),
        partition: 0,
        next_offset: events.len() as i64,
        high_watermark: events.len() as i64,
        version: 1,
    });
    batch
}

const FIRST: [&str; 7] = ["events_raw", "cohorts", "retention", "member_facts", "engagement", "lifecycle", "churn"];

fn position(log: &[(String, &str)], table: &str, what: &str) -> usize {
    log.iter().position(|(t, w)| t == table && *w == what).unwrap_or_else(|| panic!("no {what} of {table} in {log:?}"))
}

#[tokio::test]
async fn stats_follow_every_derived_table_and_progress_comes_last() {
    let batch = full_batch();
    for table in FIRST {
        let rows = match table {
            "events_raw" => batch.raw.len(),
            "cohorts" => batch.cohorts.len(),
            "retention" => batch.retention.len(),
            "member_facts" => batch.members.len(),
            "engagement" => batch.engagement.len(),
            "lifecycle" => batch.lifecycle.len(),
            _ => batch.churn.len(),
        };
        assert!(rows > 0, "the batch has {table} rows");
    }
    // Each of the seven in turn is the slowest: stats must still wait for it.
    for slow in FIRST {
        let rec = Arc::new(Recorder { slow: Some((slow, Duration::from_millis(150))), ..Recorder::default() });
        let store = store_against(rec.clone()).await;
        store.write(&batch).await.unwrap();
        let log = rec.log.lock().unwrap().clone();
        let stats = position(&log, "community_stats", "start");
        for table in FIRST {
            assert!(position(&log, table, "end") < stats, "{table} ended before stats began ({slow} slow): {log:?}");
        }
        assert!(position(&log, "community_stats", "end") < position(&log, "processor_progress", "start"));
        assert_eq!(log.len(), 2 * 9, "one insert per table: {log:?}");
    }
}

#[tokio::test]
async fn a_refused_insert_writes_neither_stats_nor_progress() {
    let batch = full_batch();
    for refused in FIRST.into_iter().chain(["community_stats"]) {
        let rec = Arc::new(Recorder { refuse: Some(refused), ..Recorder::default() });
        let store = store_against(rec.clone()).await;
        assert!(store.write(&batch).await.is_err(), "{refused} refused: the write fails");
        let log = rec.log.lock().unwrap().clone();
        assert!(!log.iter().any(|(t, _)| t == "processor_progress"), "{refused} refused: no progress written: {log:?}");
        if refused != "community_stats" {
            assert!(!log.iter().any(|(t, _)| t == "community_stats"), "{refused} refused: no stats: {log:?}");
        }
    }
}

#[test]
fn table_names_are_read_from_the_insert_query() {
    assert_eq!(table_of("INSERT INTO engagement.cohorts(a,b) FORMAT RowBinary"), "cohorts");
    assert_eq!(table_of("INSERT INTO `db`.`churn` (a) FORMAT RowBinary"), "churn");
    assert_eq!(table_of("INSERT INTO member_facts (a) FORMAT RowBinary"), "member_facts");
}
