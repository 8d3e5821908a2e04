//! A stand-in for ClickHouse's HTTP interface, for tests of what the processor sends and when:
//! it records when each insert starts and ends and what it carried, how many were in flight at
//! once, and can refuse or slow down the inserts of one table.

// Each test crate uses part of it.
#![allow(dead_code)]

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Router;
use common::{BodyCompression, ClickHouseConfig};
use processor::metrics::Metrics;
use processor::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Recorder {
    /// `(table, "start" | "end")` in the order the stand-in saw them.
    pub log: Mutex<Vec<(String, &'static str)>>,
    /// `(table, body)` of each insert, as it arrived (the store sends them uncompressed).
    pub bodies: Mutex<Vec<(String, Vec<u8>)>>,
    /// Inserts into this table are answered with an error.
    pub refuse: Option<&'static str>,
    /// The next this many requests, whatever they carry, are answered with an error.
    pub refuse_next: AtomicUsize,
    /// Inserts into this table take this long.
    pub slow: Option<(&'static str, Duration)>,
    /// Inserts being answered now.
    pub in_flight: AtomicUsize,
    /// The most inserts that were in flight at once.
    pub max_in_flight: AtomicUsize,
}

impl Recorder {
    /// The bodies of the inserts into `table`, in the order they arrived.
    pub fn bodies_of(&self, table: &str) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().iter().filter(|(t, _)| t == table).map(|(_, b)| b.clone()).collect()
    }

    /// How many inserts into `table` have ended.
    pub fn ended(&self, table: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|(t, w)| t == table && *w == "end").count()
    }
}

/// `INSERT INTO db.table (cols) FORMAT RowBinary` (names may be quoted) → `table`.
pub fn table_of(query: &str) -> String {
    let rest = query.trim_start().strip_prefix("INSERT INTO ").unwrap_or(query);
    let name = rest.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or_default();
    name.rsplit('.').next().unwrap_or_default().trim_matches(|c| c == '`' || c == '"').to_owned()
}

async fn clickhouse(
    State(rec): State<Arc<Recorder>>,
    Query(params): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> StatusCode {
    let table = table_of(params.get("query").map_or("", String::as_str));
    let now = rec.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    rec.max_in_flight.fetch_max(now, Ordering::SeqCst);
    rec.log.lock().unwrap().push((table.clone(), "start"));
    assert!(!body.is_empty(), "{table}: an insert carries its rows");
    rec.bodies.lock().unwrap().push((table.clone(), body.to_vec()));
    if let Some((slow, pause)) = rec.slow {
        if slow == table {
            tokio::time::sleep(pause).await;
        }
    }
    rec.log.lock().unwrap().push((table.clone(), "end"));
    rec.in_flight.fetch_sub(1, Ordering::SeqCst);
    let refused_now = rec.refuse_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if refused_now || rec.refuse == Some(table.as_str()) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// A store that writes to a stand-in recording into `rec`.
pub async fn store_against(rec: Arc<Recorder>) -> Store {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(clickhouse).with_state(rec);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = ClickHouseConfig {
        url: format!("http://{addr}"),
        compression: BodyCompression::None,
        ..ClickHouseConfig::default()
    };
    Store::new(cfg.client(), Metrics::new().unwrap())
}
