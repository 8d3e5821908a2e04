//! Archive rows sent while a round is read (`processor::archive_sends`), against a stand-in for
//! ClickHouse: nothing goes before a piece's worth is made; what goes arrives whole; a send that
//! fails is handed back for the round's write and stops early sends until then; no more than
//! two sends are in flight.

mod support;

use processor::archive_sends::ArchiveSends;
use processor::metrics::Metrics;
use processor::rowbinary::EncodedRows;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{store_against, Recorder};

/// Rows that lead with the archive's key, pushed in its order (so a sent piece keeps it).
#[derive(Serialize)]
struct Row {
    community_id: String,
    event_id: String,
    n: u64,
}

fn rows(from: u64, to: u64) -> EncodedRows {
    let mut out = EncodedRows::default();
    for n in from..to {
        out.push(&Row { community_id: "c".into(), event_id: format!("e{n:06}"), n });
    }
    out
}

fn bytes_of(rows: &EncodedRows) -> Vec<u8> {
    rows.chunks().flat_map(|c| c.to_vec()).collect()
}

/// Two partitions' pending rows: `[from, mid)` in partition 0, `[mid, to)` in partition 1.
fn pending(from: u64, mid: u64, to: u64) -> BTreeMap<i32, EncodedRows> {
    BTreeMap::from([(0, rows(from, mid)), (1, rows(mid, to))])
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn rows_go_once_a_piece_is_made_and_arrive_whole() {
    let rec = Arc::new(Recorder::default());
    let store = store_against(rec.clone()).await;
    let mut sends = ArchiveSends::new(Metrics::new().unwrap());
    let mut pending = pending(0, 300, 500);
    let size: usize = pending.values().map(EncodedRows::bytes).sum();
    let expected: Vec<u8> = pending.values().flat_map(bytes_of).collect();
    assert_eq!(size, expected.len());

    sends.send_due(&store, &mut pending, size + 1).await;
    assert_eq!(pending.values().map(EncodedRows::len).sum::<usize>(), 500, "less than a piece: kept");
    assert!(sends.take_unsent().await.is_empty());
    assert!(rec.bodies_of("events_raw").is_empty(), "nothing sent below a piece");

    sends.send_due(&store, &mut pending, size).await;
    assert!(pending.is_empty(), "a piece's worth is taken from every partition");
    assert!(sends.take_unsent().await.is_empty(), "a send that succeeded is not written again");
    assert_eq!(rec.bodies_of("events_raw"), vec![expected], "one insert, every row, in order");
}

#[tokio::test]
async fn a_failed_send_goes_with_the_rounds_write_and_stops_early_sends_until_then() {
    let rec = Arc::new(Recorder { refuse: Some("events_raw"), ..Recorder::default() });
    let refusing = store_against(rec.clone()).await;
    let metrics = Metrics::new().unwrap();
    let mut sends = ArchiveSends::new(metrics.clone());

    let mut first = pending(0, 100, 200);
    let first_bytes: Vec<u8> = first.values().flat_map(bytes_of).collect();
    sends.send_due(&refusing, &mut first, 1).await;
    assert!(first.is_empty());
    until("the refused insert answered", || rec.ended("events_raw") == 1).await;
    // Let the client see the answer.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut second = pending(200, 250, 300);
    sends.send_due(&refusing, &mut second, 1).await;
    assert!(!sends.open(), "closed after a failure");
    assert_eq!(second.values().map(EncodedRows::len).sum::<usize>(), 100, "not taken while closed");
    assert_eq!(rec.bodies_of("events_raw").len(), 1, "nothing more sent while closed");
    assert_eq!(metrics.write_failures.get(), 1, "the failure is counted");

    let unsent = sends.take_unsent().await;
    assert_eq!(unsent.len(), 200);
    assert_eq!(bytes_of(&unsent), first_bytes, "the failed send's rows, for the round's write");
    assert!(sends.open(), "open again once they are taken");

    let ok = Arc::new(Recorder::default());
    let accepting = store_against(ok.clone()).await;
    sends.send_due(&accepting, &mut second, 1).await;
    assert!(sends.take_unsent().await.is_empty());
    assert_eq!(ok.bodies_of("events_raw").len(), 1, "sending resumed");
}

#[tokio::test]
async fn at_most_two_sends_are_in_flight() {
    let rec = Arc::new(Recorder { slow: Some(("events_raw", Duration::from_millis(150))), ..Recorder::default() });
    let store = store_against(rec.clone()).await;
    let mut sends = ArchiveSends::new(Metrics::new().unwrap());
    let mut waited = Duration::ZERO;
    for i in 0..5 {
        let mut p = pending(i * 100, i * 100 + 50, i * 100 + 100);
        waited += sends.send_due(&store, &mut p, 1).await;
    }
    assert!(sends.take_unsent().await.is_empty());
    assert_eq!(rec.bodies_of("events_raw").len(), 5, "every send arrived");
    assert_eq!(rec.max_in_flight.load(Ordering::SeqCst), 2, "two at once, never more");
    assert!(waited >= Duration::from_millis(300), "the round waited for the oldest sends: {waited:?}");
}
