//! The processor's own RowBinary encoder (`processor::rowbinary`) against the `clickhouse`
//! crate's: for every table the processor writes, rows made by the engine from a small community
//! are sent both ways to a stand-in for ClickHouse's HTTP interface, which keeps each request's
//! statement and body. The bodies must be equal byte for byte, and the statements must name the
//! same columns in the same order.

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::Router;
use clickhouse::Client;
use common::{BodyCompression, ClickHouseConfig};
use engine::{Configs, Engine};
use processor::metrics::Metrics;
use processor::pieces::KeyColumn;
use processor::rowbinary::EncodedRows;
use processor::rows::*;
use processor::store::{Batch, Store, ARCHIVE_KEY, SORT_KEYS};
use schemas::{parse_event_value, Event, Limits};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn keep(
    State(requests): State<Requests>,
    Query(params): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> &'static str {
    requests.lock().unwrap().push((params.get("query").cloned().unwrap_or_default(), body.to_vec()));
    ""
}

/// A client without compression (so that bodies can be compared) on a stand-in that keeps every
/// request.
async fn stand_in() -> (Client, Requests) {
    let requests = Requests::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(keep).layer(DefaultBodyLimit::disable()).with_state(requests.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = ClickHouseConfig {
        url: format!("http://{addr}"),
        compression: BodyCompression::None,
        ..ClickHouseConfig::default()
    };
    (cfg.client(), requests)
}

/// The column list of `INSERT INTO t (`a`,`b`) FORMAT RowBinary`, however it is spaced.
fn columns(sql: &str) -> Vec<String> {
    let inside = &sql[sql.find('(').unwrap() + 1..sql.rfind(')').unwrap()];
    inside.split(',').map(|c| c.trim().trim_matches('`').to_owned()).collect()
}

fn events() -> Vec<Event> {
    let mut events = Vec::new();
    let spec = [
        ("member_joined", "a", "2024-01-01T10:00:00Z", serde_json::json!({})),
        ("message_posted", "a", "2024-01-02T10:00:00Z", serde_json::json!({"len": 12, "text": "é ✓"})),
        ("reaction_added", "b", "2024-01-02T11:00:00Z", serde_json::json!({})),
        ("conversion", "a", "2024-01-03T10:00:00Z", serde_json::json!({"value": 19.5})),
        ("member_joined", "b", "2024-01-05T10:00:00Z", serde_json::json!({"inviter_id": "a"})),
        ("checkin", "b", "2024-02-05T10:00:00Z", serde_json::json!({})),
        ("member_left", "a", "2024-03-01T10:00:00Z", serde_json::json!({"reason": "removed"})),
    ];
    for (i, (t, member, ts, props)) in spec.into_iter().enumerate() {
        let v = serde_json::json!({"event_id": format!("e{i}"), "type": t, "community_id": "c",
                                   "group_id": if i % 2 == 0 { "g" } else { "h" }, "member_id": member,
                                   "ts": ts, "platform": "discord", "is_bot": i == 2, "props": props});
        events.push(parse_event_value(&v, None, &Limits::default()).unwrap());
    }
    events
}

/// Sends `rows` to `table` through the crate's `Insert` and through `EncodedRows`, and compares.
macro_rules! same_bytes {
    ($client:expr, $requests:expr, $table:expr, $ty:ty, $rows:expr) => {{
        let rows = $rows;
        assert!(!rows.is_empty(), "{}: rows to compare", $table);
        let mut insert = $client.insert::<$ty>($table).await.unwrap();
        for r in &rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
        let mut encoded = EncodedRows::default();
        for r in &rows {
            encoded.push(r);
        }
        let mut insert = $client.insert_formatted_with(encoded.insert_sql($table));
        for chunk in encoded.chunks() {
            insert.send(chunk).await.unwrap();
        }
        insert.end().await.unwrap();
        let mut requests = $requests.lock().unwrap();
        let (ours, theirs) = (requests.pop().unwrap(), requests.pop().unwrap());
        assert_eq!(columns(&ours.0), columns(&theirs.0), "{}: columns ({} / {})", $table, ours.0, theirs.0);
        assert!(ours.0.contains(&format!("`{}`", $table)) && ours.0.ends_with("FORMAT RowBinary"), "{}", ours.0);
        assert_eq!(ours.1, theirs.1, "{}: {} rows encoded alike", $table, rows.len());
        rows.len()
    }};
}

#[tokio::test]
async fn every_table_is_encoded_as_the_clickhouse_crate_encodes_it() {
    let (client, requests) = stand_in().await;
    let configs = Configs::default();
    let events = events();
    let mut engine = Engine::new(configs.clone());
    for e in &events {
        engine.apply(e);
    }
    let raw: Vec<RawEventRow> = events
        .iter()
        .enumerate()
        .map(|(offset, e)| RawEventRow::new(&e.view(), configs.get("c"), 3, offset as i64))
        .collect();
    same_bytes!(client, requests, "events_raw", RawEventRow, raw);
    let out = engine.flush(&|_| None);
    let (p, v) = (3, 7);
    same_bytes!(
        client,
        requests,
        "cohorts",
        CohortSizeRow,
        out.cohorts.into_iter().map(|r| CohortSizeRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "retention",
        RetentionRow,
        out.retention.into_iter().map(|r| RetentionRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "member_facts",
        MemberFactRow,
        out.members.into_iter().map(|r| MemberFactRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "engagement",
        EngagementDayRow,
        out.engagement.into_iter().map(|r| EngagementDayRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "lifecycle",
        LifecyclePeriodRow,
        out.lifecycle.into_iter().map(|r| LifecyclePeriodRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "churn",
        ChurnPeriodRow,
        out.churn.into_iter().map(|r| ChurnPeriodRow::new(r, p, v)).collect::<Vec<_>>()
    );
    same_bytes!(
        client,
        requests,
        "community_stats",
        CommunityStatRow,
        out.stats.into_iter().map(|r| CommunityStatRow::new(r, p, v)).collect::<Vec<_>>()
    );
    let progress =
        vec![ProgressRow { topic: "events".into(), partition: p, next_offset: 9, high_watermark: 12, version: v }];
    same_bytes!(client, requests, "processor_progress", ProgressRow, progress);
}

#[tokio::test]
async fn rows_spread_over_many_chunks_arrive_as_one_body() {
    let (client, requests) = stand_in().await;
    let configs = Configs::default();
    let event = &events()[1];
    let ids: Vec<String> = (0..30_000).map(|i| format!("event-{i:06}-{}", "x".repeat(i % 50))).collect();
    let raw: Vec<RawEventRow> = ids
        .iter()
        .enumerate()
        .map(|(offset, id)| {
            let mut view = event.view();
            view.event_id = id;
            RawEventRow::new(&view, configs.get("c"), 0, offset as i64)
        })
        .collect();
    let mut encoded = EncodedRows::default();
    for r in &raw {
        encoded.push(r);
    }
    assert!(encoded.chunks().count() > 1, "the rows fill more than one chunk");
    let n = same_bytes!(client, requests, "events_raw", RawEventRow, raw);
    assert_eq!(n, 30_000);
}

/// The store sends each archive insert sorted by `ARCHIVE_KEY`, read from the rows' leading
/// columns: those must be the table's key, in its order, and strings.
#[test]
fn archive_rows_begin_with_the_archive_tables_sorting_key() {
    let configs = Configs::default();
    let mut rows = EncodedRows::default();
    rows.push(&RawEventRow::new(&events()[0].view(), configs.get("c"), 0, 0));
    assert!(rows.columns().starts_with(&ARCHIVE_KEY), "{:?}", rows.columns());
    let statements = schemas::ddl::MIGRATIONS[0].statements("db");
    let table = statements.iter().find(|s| s.contains("db.events_raw (")).expect("the archive's DDL");
    assert!(
        table.trim_end_matches([';', '\n']).ends_with(&format!("ORDER BY ({})", ARCHIVE_KEY.join(", "))),
        "{table}"
    );
    assert!(table.contains("community_id String,\n    event_id String,"), "both columns are strings");
}

/// The same for each derived table's `SORT_KEYS` entry: the row type leads with it, the DDL gives
/// each of its columns the type it is read as, and its `ORDER BY` is the key (retention's `period`
/// aside, which the key holds only because the row has it before `partition`).
#[test]
fn derived_rows_begin_with_their_tables_sorting_keys() {
    let mut engine = Engine::new(Configs::default());
    for e in &events() {
        engine.apply(e);
    }
    let batch = Batch::from_output(engine.flush(&|_| None), 3, 7);
    let ddl: Vec<String> = schemas::ddl::MIGRATIONS.iter().flat_map(|m| m.statements("db")).collect();
    for (table, key) in SORT_KEYS {
        let rows = match table {
            "cohorts" => &batch.cohorts,
            "retention" => &batch.retention,
            "member_facts" => &batch.members,
            "engagement" => &batch.engagement,
            "lifecycle" => &batch.lifecycle,
            "churn" => &batch.churn,
            "community_stats" => &batch.stats,
            other => panic!("no rows for {other}"),
        };
        assert!(!rows.is_empty(), "{table}: the community makes rows");
        let names: Vec<&str> = key.iter().map(|(name, _)| *name).collect();
        assert!(rows.columns().starts_with(&names), "{table}: {:?}", rows.columns());
        let create = ddl.iter().find(|s| s.contains(&format!("db.{table} ("))).expect("the table's DDL");
        for (name, column) in key {
            let types: &[&str] = match column {
                KeyColumn::String => &["String"],
                KeyColumn::UInt16 => &["Date", "UInt16"],
                KeyColumn::UInt32 => &["UInt32"],
            };
            assert!(
                types.iter().any(|t| create.contains(&format!("\n    {name} {t},"))),
                "{table}.{name} is not one of {types:?}"
            );
        }
        let order_by = create.split("ORDER BY (").nth(1).and_then(|s| s.split(')').next()).expect("a key");
        let want: Vec<&str> = names.iter().copied().filter(|n| !(table == "retention" && *n == "period")).collect();
        assert_eq!(order_by.split(", ").collect::<Vec<_>>(), want, "{table}");
    }
}

/// Each archive row's `(community_id, event_id)`, read from a body of `RawEventRow`s (its layout:
/// five strings, `ts_ms`, `platform`, `is_bot`, `props`, `kafka_partition`, `kafka_offset`,
/// `local_day`, `participation`).
fn archive_keys(mut body: &[u8]) -> Vec<(String, String)> {
    fn string(b: &mut &[u8]) -> String {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let byte = b[i];
            len |= usize::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let s = String::from_utf8(b[i..i + len].to_vec()).unwrap();
        *b = &b[i + len..];
        s
    }
    let mut keys = Vec::new();
    while !body.is_empty() {
        let key = (string(&mut body), string(&mut body));
        for _ in 0..3 {
            string(&mut body);
        }
        body = &body[8..];
        string(&mut body);
        body = &body[1..];
        string(&mut body);
        body = &body[4 + 8 + 2 + 1..];
        keys.push(key);
    }
    keys
}

/// Through `Store::write`: an archive larger than one insert's piece goes as several inserts,
/// each sorted by `ARCHIVE_KEY` on a blocking thread, together carrying every row once.
#[tokio::test]
async fn a_large_archive_is_written_in_pieces_each_in_key_order() {
    let (client, requests) = stand_in().await;
    let store = Store::new(client, Metrics::new().unwrap());
    let configs = Configs::default();
    let event = &events()[1];
    let ids: Vec<String> =
        (0..420_000u64).map(|i| format!("c-{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
    let mut batch = Batch::default();
    for (offset, id) in ids.iter().enumerate() {
        let mut view = event.view();
        view.event_id = id;
        batch.raw.push(&RawEventRow::new(&view, configs.get("c"), 0, offset as i64));
    }
    store.write(&batch).await.unwrap();
    let requests = requests.lock().unwrap();
    let bodies: Vec<&Vec<u8>> =
        requests.iter().filter(|(sql, _)| sql.contains("events_raw")).map(|(_, body)| body).collect();
    assert!(bodies.len() > 1, "{} insert(s)", bodies.len());
    let mut seen = Vec::new();
    for body in bodies {
        let keys = archive_keys(body);
        assert!(keys.len() > 10_000 && keys.is_sorted(), "a large piece, in key order");
        seen.extend(keys.into_iter().map(|(_, event_id)| event_id));
    }
    let mut want = ids;
    seen.sort();
    want.sort();
    assert!(seen == want, "every row once");
}
