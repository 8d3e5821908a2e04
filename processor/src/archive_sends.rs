//! A round's archive rows sent to ClickHouse while the round is still being read, a piece
//! (`flush.archive_piece_bytes`) at a time, instead of held until the round's write.
//!
//! Why: a replay's round archives about a million rows (some 100 MB), which were held until the
//! write after the engines' flush, in memory touched anew every round, and then sent while
//! nothing else ran. Sent early, they leave memory as they are made and ClickHouse stores them
//! while the processor applies the next records.
//!
//! Why it is safe: the archive is idempotent (`events_raw` is a ReplacingMergeTree keyed by
//! `(community_id, event_id)`, and a record's row is the same whoever writes it, however often),
//! and nothing reads how far it reaches: `archived_until` comes from the progress rows, which a
//! flush stores only after every send of its round succeeded, or the rows of a failed one were
//! written again with the round (`take_unsent`). A crash in between leaves rows in the archive
//! whose progress was not stored; the next run archives them again, as after a crash mid-write.

use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::rowbinary::EncodedRows;
use crate::store::Store;
use futures::FutureExt;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Sends in flight at most: beyond that the round waits for the oldest, so that a ClickHouse
/// slower than the records arrive holds up the consumer rather than filling memory.
const MAX_IN_FLIGHT: usize = 2;

struct InFlight {
    /// Kept until every insert of it has succeeded: a failed send is written again with the
    /// round (some of its rows twice, which the archive absorbs).
    rows: EncodedRows,
    inserts: Vec<JoinHandle<Result<(), ProcessorError>>>,
}

impl InFlight {
    fn finished(&self) -> bool {
        self.inserts.iter().all(JoinHandle::is_finished)
    }
}

pub struct ArchiveSends {
    metrics: Metrics,
    in_flight: VecDeque<InFlight>,
    /// Rows of failed sends, for the round's write. Nothing more is sent early until that write
    /// succeeds: ClickHouse is likely down, and the round's write retries with backoff.
    unsent: EncodedRows,
}

impl ArchiveSends {
    pub fn new(metrics: Metrics) -> Self {
        ArchiveSends { metrics, in_flight: VecDeque::new(), unsent: EncodedRows::default() }
    }

    /// Whether rows may be sent early now (no send failed since the last write).
    pub fn open(&self) -> bool {
        self.unsent.is_empty()
    }

    /// Sends the archive rows the round has made so far (per partition), once they are at least
    /// `piece_bytes` and sending early is open. Returns how long it waited for earlier sends.
    pub async fn send_due(
        &mut self,
        store: &Store,
        pending: &mut BTreeMap<i32, EncodedRows>,
        piece_bytes: usize,
    ) -> Duration {
        self.settle_finished();
        if !self.open() || pending.values().map(EncodedRows::bytes).sum::<usize>() < piece_bytes {
            return Duration::ZERO;
        }
        let mut rows = EncodedRows::default();
        for (_, r) in std::mem::take(pending) {
            rows.append(r);
        }
        let started = Instant::now();
        self.send(store, rows).await;
        started.elapsed()
    }

    /// Sends `rows` to the archive, first waiting for the oldest send while `MAX_IN_FLIGHT` are
    /// in flight.
    async fn send(&mut self, store: &Store, rows: EncodedRows) {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("in flight");
            self.settle(oldest).await;
        }
        let inserts = store.insert("events_raw", &rows);
        self.in_flight.push_back(InFlight { rows, inserts });
    }

    /// Settles the sends that have finished, without waiting for the others.
    pub fn settle_finished(&mut self) {
        while self.in_flight.front().is_some_and(InFlight::finished) {
            let done = self.in_flight.pop_front().expect("in flight");
            self.settle(done).now_or_never().expect("its inserts have finished");
        }
    }

    /// Waits for every send, and returns the rows of those that failed: the round's write must
    /// carry them before its progress is stored. Sending early resumes once it is taken.
    pub async fn take_unsent(&mut self) -> EncodedRows {
        while let Some(send) = self.in_flight.pop_front() {
            self.settle(send).await;
        }
        std::mem::take(&mut self.unsent)
    }

    async fn settle(&mut self, send: InFlight) {
        let InFlight { rows, inserts } = send;
        if let Err(e) = Store::finished(inserts).await {
            self.metrics.write_failures.inc();
            tracing::warn!(error = %e, rows = rows.len(), "archive rows not sent early; they go with the round's write");
            self.unsent.append(rows);
        }
    }
}
