//! The consume → engine → write → progress loop.
//!
//! Partitions come and go through the consumer group (`assignment`), but offsets are owned here,
//! not by the group: a partition taken up resumes from its checkpoint (saved engine state, see `checkpoint`) or, without a usable one, is read from the
//! beginning to rebuild the engine's state; either way silently up to the offset the previous
//! run had written (so readers never see a table go backwards), then normally. Rows are absolute values
//! with a version above anything written before, so re-writing after a crash is harmless; the
//! progress row and the Kafka commit come only after the rows they cover are in ClickHouse.

use crate::archive_sends::ArchiveSends;
use crate::assignment::{Change, GroupContext};
use crate::checkpoint::{CheckpointMeta, Checkpoints};
use crate::config::{ProcessorConfig, StaticPartitions};
use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::rowbinary::EncodedRows;
use crate::rows::*;
use crate::store::{Batch, Store};
use common::Readiness;
use engine::Engine;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{parse_event_view, queries, Limits};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

struct PartitionState {
    engine: Engine,
    /// Version of the next rows written for this partition.
    version: u64,
    next_offset: i64,
    /// Offsets below this were archived and covered by written rows in an earlier run.
    archived_until: i64,
    /// A replay's records below this offset whose `ts` the copy covers
    /// (`queries::COPY_TS_MIN_MS..COPY_TS_MAX_MS`) have their archive rows copied from the
    /// served generation (`Pipeline::start_archive_copy`), not encoded here; 0 otherwise.
    copied_until: i64,
    high_watermark: i64,
    last_checkpoint: Instant,
    /// `next_offset` of the last checkpoint saved (or being saved), or -1: a partition that
    /// consumed nothing since has that checkpoint still. A failed save sets it back to -1.
    checkpointed_offset: i64,
}

type GroupConsumer = StreamConsumer<GroupContext>;

pub struct Pipeline {
    cfg: ProcessorConfig,
    /// Shared only so that a consumer failed for good can be leaked (`consumer_failed`).
    consumer: std::sync::Arc<GroupConsumer>,
    group: GroupContext,
    /// When the consumer was last polled (rebalances are only seen then).
    last_poll: Instant,
    store: Store,
    readiness: Readiness,
    core: Core,
    last_progress_write: Instant,
    checkpoints: Option<Checkpoints>,
    /// At most one checkpoint is being written at a time (it holds a copy of an engine's state).
    /// It returns the saves that failed, `(partition, next_offset)`.
    checkpoint_in_flight: Option<tokio::task::JoinHandle<Vec<(i32, i64)>>>,
    /// Archive rows sent during the round (`archive_sends`); the flush settles them first.
    archive: ArchiveSends,
    /// Per partition, the offset below which the replay copies the archive (`copied_until`).
    copied: BTreeMap<i32, i64>,
    /// The replay's archive copy while it runs beside the reading; a flush waits for it before
    /// it stores progress.
    copy_in_flight: Option<tokio::task::JoinHandle<Result<(), ProcessorError>>>,
    /// Records taken from the consumer while a slice was being applied (`take_held`), per
    /// partition, until `Core::receive_taken`; its blocks are kept from one slice to the next.
    taken: BTreeMap<i32, Received>,
}

/// What consuming a record changes (kept apart from the consumer, whose messages borrow it).
struct Core {
    metrics: Metrics,
    /// Per-community metric configuration (time zone, participation types) for the archive rows.
    configs: engine::Configs,
    partitions: BTreeMap<i32, PartitionState>,
    /// Community-wide `as_of`: the largest `ts` seen here or written by any instance.
    as_of: HashMap<String, i64>,
    /// Archive rows of applied records not yet sent, per partition.
    pending_raw: BTreeMap<i32, EncodedRows>,
    limits: Limits,
    /// Events dated before this are not counted (`ProcessorConfig::counts_from`; `i64::MIN`
    /// when unset).
    counts_from_ms: i64,
    progress_dirty: bool,
    dead_letters: FutureProducer,
    dead_letter_topic: String,
    /// Dead letters handed to the producer since the last flush; acknowledged before progress moves.
    pending_dead_letters: Vec<DeliveryFuture>,
    /// Records of the current round, per partition in offset order, until `apply_received`.
    received: BTreeMap<i32, Received>,
    /// Records in `received`.
    unapplied: usize,
    threads: usize,
}

/// A round's records of one partition, in offset order. Their bytes are copied out of the
/// consumer's buffer (so that another thread can decode them) into blocks that are kept from one
/// round to the next: an allocation per record, in fresh memory every round, cost a replay more
/// than the copy. The partition's `next_offset` moves when a record is received: it is applied
/// before anything reads the engines.
#[derive(Default)]
struct Received {
    blocks: Vec<Vec<u8>>,
    /// Blocks holding this round's bytes (the rest are empty, kept for the next rounds).
    in_use: usize,
    /// `(offset, block, start, end)` of each record.
    records: Vec<(i64, u32, u32, u32)>,
}

/// A block of `Received` holds this much (a record larger than that gets a block of its own).
const BLOCK_BYTES: usize = 4 << 20;

impl Received {
    fn push(&mut self, offset: i64, payload: &[u8]) {
        let room = |b: &Vec<u8>| b.capacity() - b.len() >= payload.len();
        if self.in_use == 0 || !room(&self.blocks[self.in_use - 1]) {
            if self.in_use == self.blocks.len() {
                self.blocks.push(Vec::new());
            }
            let block = &mut self.blocks[self.in_use];
            if !room(block) {
                *block = Vec::with_capacity(BLOCK_BYTES.max(payload.len()));
            }
            self.in_use += 1;
        }
        let b = self.in_use - 1;
        let block = &mut self.blocks[b];
        let start = block.len();
        block.extend_from_slice(payload);
        self.records.push((offset, b as u32, start as u32, block.len() as u32));
    }

    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.records
            .iter()
            .map(|&(offset, b, start, end)| (offset, &self.blocks[b as usize][start as usize..end as usize]))
    }

    /// Empties it for the next round, keeping the blocks.
    fn clear(&mut self) {
        self.records.clear();
        for block in &mut self.blocks[..self.in_use] {
            block.clear();
        }
        self.in_use = 0;
    }
}

/// What applying one partition's records changed, for the caller to merge (metrics, `as_of`,
/// archive rows, dead letters) in partition order.
#[derive(Default)]
struct Applied {
    raw: EncodedRows,
    /// `(offset, bytes, reason)` of each record that is not a valid event and was not
    /// dead-lettered by an earlier run.
    dead: Vec<(i64, Vec<u8>, String)>,
    invalid: Vec<&'static str>,
    duplicates: u64,
    /// Valid events dated before `counts_from`, left out.
    before_counts_from: u64,
    processed: u64,
    as_of: HashMap<String, i64>,
}

/// The most the consumer holds fetched and not yet taken: 64 MiB, about a second of a replay's
/// records on this project's machines.
pub const PREFETCH_KBYTES: u32 = 64 * 1024;

/// How long a partition's fetching pauses once that much is held. librdkafka's default (1 s) is
/// made for a queue that holds more than a second of records; with 64 MiB the consumer would
/// empty it and then wait on the broker.
pub const PREFETCH_BACKOFF_MS: u32 = 10;

fn consumer(cfg: &ProcessorConfig, group: GroupContext) -> Result<GroupConsumer, ProcessorError> {
    let mut c = rdkafka::ClientConfig::new();
    let session = cfg.kafka.session_timeout_ms;
    c.set("bootstrap.servers", &cfg.kafka.brokers)
        .set("group.id", &cfg.kafka.group_id)
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).clamp(1, 3000).to_string())
        .set("max.poll.interval.ms", cfg.kafka.max_poll_interval_ms.to_string())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        // Fetching keeps up with the consumer without holding more than it needs: a queue sized
        // for a whole round (256 MiB) made every replay fault in that much fresh memory, which
        // costs CPU on these machines and bought no speed once the backoff was short
        // (docs/performance.md, session 20). `kafka.properties` can set any of these; librdkafka
        // takes at most 10,000,000 messages.
        .set("queued.min.messages", cfg.flush.max_records.clamp(100_000, 10_000_000).to_string())
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string())
        .set("fetch.queue.backoff.ms", PREFETCH_BACKOFF_MS.to_string());
    if let Some(id) = &cfg.kafka.instance_id {
        c.set("group.instance.id", id);
    }
    for (k, v) in &cfg.kafka.properties {
        c.set(k, v.expose());
    }
    Ok(c.create_with_context(group)?)
}

/// The error a processor exits with once its consumer has failed for good, if it has. A broker
/// fences a static member (`kafka.instance_id`) when another instance joins under the same id:
/// the message says so, since that is a deployment mistake, not an outage. Such a consumer must
/// not be dropped (see the caller).
fn consumer_failed(consumer: &GroupConsumer, instance_id: Option<&str>) -> Option<ProcessorError> {
    let (code, reason) = consumer.client().fatal_error()?;
    Some(fatal_consumer_error(code, &reason, instance_id))
}

fn fatal_consumer_error(code: RDKafkaErrorCode, reason: &str, instance_id: Option<&str>) -> ProcessorError {
    match (code, instance_id) {
        (RDKafkaErrorCode::FencedInstanceId, Some(id)) => ProcessorError::KafkaFatal(
            format!("{code:?}"),
            format!("kafka.instance_id \"{id}\" was taken over by another instance; each running instance needs an id of its own ({reason})"),
        ),
        _ => ProcessorError::KafkaFatal(format!("{code:?}"), reason.to_owned()),
    }
}

impl Pipeline {
    pub async fn start(
        cfg: ProcessorConfig,
        store: Store,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Result<Self, ProcessorError> {
        let group = GroupContext::new(&cfg.kafka.topic);
        let consumer = consumer(&cfg, group.clone())?;
        wait_for_partitions(&consumer, &cfg.kafka.topic).await?;
        let checkpoints = cfg.checkpoint.enabled.then(|| Checkpoints::new(&cfg.checkpoint.dir));
        let limits = Limits { max_future_ms: i64::MAX / 4, ..Limits::default() };
        let dead_letters = dead_letter_producer(&cfg)?;
        let archive = ArchiveSends::new(metrics.clone());
        let core = Core {
            metrics,
            configs: cfg.metrics.clone(),
            partitions: BTreeMap::new(),
            as_of: HashMap::new(),
            pending_raw: BTreeMap::new(),
            limits,
            counts_from_ms: cfg.counts_from_ms().unwrap_or(i64::MIN),
            progress_dirty: true,
            dead_letters,
            dead_letter_topic: cfg.kafka.dead_letter_topic.clone(),
            pending_dead_letters: Vec::new(),
            received: BTreeMap::new(),
            unapplied: 0,
            threads: crate::parallel::threads(cfg.engine_threads),
        };
        Ok(Pipeline {
            cfg,
            consumer: std::sync::Arc::new(consumer),
            group,
            last_poll: Instant::now(),
            store,
            readiness,
            core,
            last_progress_write: Instant::now(),
            checkpoints,
            checkpoint_in_flight: None,
            archive,
            copied: BTreeMap::new(),
            copy_in_flight: None,
            taken: BTreeMap::new(),
        })
    }

    /// As a replay starts: copies the archive of `src` (the served generation's database), per
    /// partition from the log's start up to where that generation's progress stands (its
    /// archive is complete there; rows of records the log no longer holds are left, as the
    /// replay does not count them), while the replay reads. Its first flush waits for the copy
    /// before storing progress, so that a replay interrupted at any point leaves an archive with
    /// every record its progress covers (the records above the copy it archived itself). A
    /// resumed replay copies again; the archive absorbs rows written twice (a
    /// `ReplacingMergeTree` on the event's key).
    async fn start_archive_copy(
        &mut self,
        src: String,
        targets: &BTreeMap<i32, (i64, i64)>,
    ) -> Result<(), ProcessorError> {
        let topic = self.cfg.kafka.topic.clone();
        let mut ranges = Vec::new();
        for (&p, &(low, high)) in targets {
            let until = self.store.archived_until_in(&src, &topic, p as u32).await?.min(high);
            self.copied.insert(p, until);
            ranges.push((p, low, until));
        }
        let (store, configs, metrics) = (self.store.clone(), self.core.configs.clone(), self.core.metrics.clone());
        // Events before `counts_from` are not archived in this generation (`copy_archive` keeps
        // its own lower bound above that).
        let ts_min_ms = self.core.counts_from_ms;
        let backoff = self.cfg.flush.backoff();
        let below = format!("{:?}", self.copied);
        self.copy_in_flight = Some(tokio::spawn(async move {
            let started = Instant::now();
            store.copy_archive(&src, &configs, &ranges, ts_min_ms, backoff).await?;
            metrics.flush_seconds.with_label_values(&["copy"]).observe(started.elapsed().as_secs_f64());
            tracing::info!(
                source = %src,
                below_offsets = %below,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "archive copied from the served generation"
            );
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the replay's archive copy, if one runs: before progress is stored.
    async fn archive_copied(&mut self) -> Result<(), ProcessorError> {
        let Some(copy) = self.copy_in_flight.take() else { return Ok(()) };
        let waiting = Instant::now();
        let copied = copy.await.map_err(|e| ProcessorError::Generation(format!("archive copy: {e}")))?;
        self.core.metrics.flush_seconds.with_label_values(&["copy_wait"]).observe(waiting.elapsed().as_secs_f64());
        copied
    }

    fn catching_up(&self) -> bool {
        self.core.partitions.values().any(PartitionState::catching_up)
    }

    /// Takes `kafka.partitions` without the consumer group: nothing to join, no session of a
    /// crashed predecessor to wait out. They are paused until taken up, as the group's are.
    async fn assign_statically(&mut self, which: StaticPartitions) -> Result<(), ProcessorError> {
        let topic = self.cfg.kafka.topic.clone();
        let ids = wait_for_partitions(&self.consumer, &topic).await?;
        let partitions = which.of(&ids).map_err(ProcessorError::Config)?;
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        self.consumer.assign(&tpl)?;
        self.consumer.pause(&tpl)?;
        tracing::info!(partitions = ?partitions, "partitions assigned (kafka.partitions, without the consumer group)");
        self.group.assigned_statically(partitions);
        Ok(())
    }

    /// Every target partition is held and consumed up to its target.
    fn reached(&self, targets: &BTreeMap<i32, (i64, i64)>) -> bool {
        targets.iter().all(|(p, (_, high))| self.core.partitions.get(p).is_some_and(|st| st.next_offset >= *high))
    }

    /// Records read towards the replay's targets, and whether every partition reached its target
    /// (with nothing of it left unwritten).
    fn replay_position(&self, targets: &BTreeMap<i32, (i64, i64)>) -> (i64, bool) {
        let mut done = 0;
        let mut finished = true;
        for (p, (low, high)) in targets {
            match self.core.partitions.get(p) {
                Some(st) => {
                    done += (st.next_offset.min(*high) - low).max(0);
                    finished &= st.next_offset >= *high && !st.catching_up();
                }
                None => finished = false,
            }
        }
        (done, finished && !self.core.progress_dirty)
    }

    /// Applies what the consumer group changed: revoked partitions are dropped at once (nothing
    /// more is written for them: their new owner takes over from ClickHouse and the checkpoint),
    /// assigned ones are taken up and read from where their state needs them.
    async fn apply_group_changes(&mut self) -> Result<(), ProcessorError> {
        let mut changes = self.group.take().into_iter();
        while let Some(change) = changes.next() {
            match change {
                Change::Revoked(ps) => {
                    for p in &ps {
                        self.core.partitions.remove(p);
                        self.core.received.remove(p);
                    }
                    // Rows already sent early stay: the archive is the same whoever writes it.
                    self.core.pending_raw.retain(|p, _| !ps.contains(p));
                    tracing::info!(partitions = ?ps, owned = ?self.core.partitions.keys().collect::<Vec<_>>(), "partitions given up");
                }
                Change::Assigned(ps) => {
                    let new: Vec<i32> = ps.into_iter().filter(|p| !self.core.partitions.contains_key(p)).collect();
                    // Opened together, so that their checkpoints restore on several cores.
                    let opened = futures::future::join_all(new.iter().map(|&p| {
                        let checkpoints = self.checkpoints.as_ref();
                        open_partition(&self.cfg, &self.store, checkpoints, &self.consumer, &self.core.metrics, p)
                    }))
                    .await;
                    let mut not_yet = Vec::new();
                    for (p, opened) in new.into_iter().zip(opened) {
                        // The broker or ClickHouse may be coming back: a partition that cannot be
                        // taken up now stays paused and is tried again after the next poll.
                        let copied_until = self.copied.get(&p).copied().unwrap_or(0);
                        let opened = opened.map(|(st, offset)| (PartitionState { copied_until, ..st }, offset));
                        if let Err(e) = opened.and_then(|(st, offset)| self.take_up(p, st, offset)) {
                            tracing::warn!(partition = p, error = %e, "partition not taken up yet; retrying");
                            not_yet.push(p);
                        }
                    }
                    if !not_yet.is_empty() {
                        let rest: Vec<Change> = changes.by_ref().collect();
                        for c in rest.into_iter().rev() {
                            self.group.retry_first(c);
                        }
                        self.group.retry_first(Change::Assigned(not_yet));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts consuming an opened partition from `offset`.
    fn take_up(&mut self, p: i32, st: PartitionState, offset: Offset) -> Result<(), ProcessorError> {
        let topic = &self.cfg.kafka.topic;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, offset)?;
        tokio::task::block_in_place(|| self.consumer.seek_partitions(tpl.clone(), Duration::from_secs(10)))?;
        self.consumer.resume(&tpl)?;
        for (c, ts) in st.engine.max_ts_by_community() {
            let a = self.core.as_of.entry(c.to_owned()).or_insert(ts);
            *a = (*a).max(ts);
        }
        self.core.partitions.insert(p, st);
        self.core.progress_dirty = true;
        Ok(())
    }

    /// Other instances' partitions move `as_of` too: it is read back from what they wrote.
    async fn refresh_as_of(&mut self) {
        match self.store.community_max_ts().await {
            Ok(rows) => {
                for (c, ts) in rows {
                    let a = self.core.as_of.entry(c).or_insert(ts);
                    *a = (*a).max(ts);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the communities' as_of"),
        }
    }

    /// Runs until `shutdown` resolves; what was consumed by then is written before returning.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ProcessorError> {
        self.run_until(shutdown, None).await.map(|_| ())
    }

    /// Reads the topic up to its end as of now, writes everything, and returns (true), or stops
    /// early on `shutdown` (false; a later replay resumes). Reports progress as it goes. With
    /// `archive_source` (the served generation's database), the archive rows it holds are copied
    /// rather than encoded again (`start_archive_copy`).
    pub async fn replay(
        mut self,
        archive_source: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<bool, ProcessorError> {
        let topic = self.cfg.kafka.topic.clone();
        let mut ids = wait_for_partitions(&self.consumer, &topic).await?;
        // With `kafka.partitions`, the replay reads those (one replay per instance's list).
        if let Some(which) = self.cfg.kafka.static_partitions().map_err(ProcessorError::Config)? {
            ids = which.of(&ids).map_err(ProcessorError::Config)?;
        }
        let mut targets = BTreeMap::new();
        for p in ids {
            let (low, high) = tokio::task::block_in_place(|| watermarks(&self.consumer, &topic, p))?;
            targets.insert(p, (low, high));
        }
        if let Some(src) = archive_source {
            self.start_archive_copy(src, &targets).await?;
        }
        self.run_until(shutdown, Some(targets)).await
    }

    async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        targets: Option<BTreeMap<i32, (i64, i64)>>,
    ) -> Result<bool, ProcessorError> {
        // Joined here, not at start: a replay's archive copy, however long, comes first and
        // must not hold a group membership nobody polls.
        match self.cfg.kafka.static_partitions().map_err(ProcessorError::Config)? {
            None => {
                self.consumer.subscribe(&[self.cfg.kafka.topic.as_str()])?;
                tracing::info!(group = %self.cfg.kafka.group_id, "joining the consumer group");
            }
            Some(which) => self.assign_statically(which).await?,
        }
        tokio::pin!(shutdown);
        let mut progress =
            targets.as_ref().map(|t| crate::progress::Progress::new(t.values().map(|(l, h)| h - l).sum()));
        // Time spent taking records from the consumer while partitions are held, for the
        // replay's time by step.
        let mut consuming = Duration::ZERO;
        loop {
            if let Some(p) = &mut progress {
                if !self.core.partitions.is_empty() {
                    p.start();
                }
            }
            // A replay's rounds are long once it holds partitions (until then, short: the group's
            // assignment is only applied between rounds).
            let flush = &self.cfg.flush;
            let replaying = targets.is_some() && !self.core.partitions.is_empty();
            let interval = Duration::from_millis(if replaying { flush.replay_interval_ms } else { flush.interval_ms });
            // One timer per round: a `sleep_until` made inside the loop would register a new
            // timer for every record.
            let deadline = tokio::time::sleep(interval);
            tokio::pin!(deadline);
            let round_started = Instant::now();
            let mut applying = Duration::ZERO;
            // Time the round waited for its archive rows sent early (`archive_sends`).
            let mut archiving = Duration::ZERO;
            let piece_bytes = self.cfg.flush.archive_piece_bytes;
            let mut consumed = 0usize;
            let mut stop = false;
            while consumed < self.cfg.flush.max_records {
                tokio::select! {
                    _ = &mut shutdown => { stop = true; break; }
                    _ = &mut deadline => break,
                    msg = self.consumer.recv() => match msg {
                        Ok(m) => {
                            self.core.receive(m.partition(), m.offset(), m.payload());
                            consumed += 1;
                            // What the consumer already holds is taken without another turn of
                            // the select (a timer and the shutdown signal polled per record).
                            let mut drained = false;
                            while consumed < self.cfg.flush.max_records {
                                match self.consumer.recv().now_or_never() {
                                    Some(Ok(m)) => {
                                        self.core.receive(m.partition(), m.offset(), m.payload());
                                        consumed += 1;
                                        if self.core.unapplied >= self.cfg.flush.apply_slice_records {
                                            break;
                                        }
                                    }
                                    Some(Err(e)) => {
                                        tracing::warn!(error = %e, "kafka consume error");
                                        break;
                                    }
                                    None => {
                                        drained = true;
                                        break;
                                    }
                                }
                            }
                            // A long round is applied a slice at a time as it comes: the consumer
                            // keeps fetching meanwhile, and the records held stay a slice's worth.
                            // An eighth of a slice is enough when the consumer holds nothing more
                            // (the engines need not wait for the fetches).
                            let slice = self.cfg.flush.apply_slice_records;
                            let apply_now = self.core.unapplied >= slice
                                || (drained && self.core.unapplied >= slice.div_ceil(8));
                            if apply_now {
                                let (started, archived_before) = (Instant::now(), archiving);
                                // While a slice is applied this thread takes the next one, and
                                // that one is applied as soon as this is done, unless it holds
                                // under an eighth of a slice (the consumer is behind: it then
                                // takes more first). Otherwise the engines would wait for the
                                // consumer, and the consumer for the engines.
                                loop {
                                    let room = (self.cfg.flush.max_records - consumed).min(slice);
                                    let (consumer, taken) = (&self.consumer, &mut self.taken);
                                    let mut took = 0;
                                    self.core.apply_received_beside(Some(&mut || {
                                        take_held(consumer, taken, &mut took, room)
                                    }));
                                    self.core.receive_taken(&mut self.taken);
                                    consumed += took;
                                    archiving +=
                                        self.archive.send_due(&self.store, &mut self.core.pending_raw, piece_bytes).await;
                                    if let (Some(t), Some(p)) = (&targets, &mut progress) {
                                        p.report(self.replay_position(t).0);
                                    }
                                    // The round's ends still apply between slices.
                                    if shutdown.as_mut().now_or_never().is_some() {
                                        stop = true;
                                        break;
                                    }
                                    let reached = targets.as_ref().is_some_and(|t| self.reached(t));
                                    if reached || deadline.is_elapsed() || self.core.unapplied < slice.div_ceil(8) {
                                        break;
                                    }
                                }
                                applying += started.elapsed().saturating_sub(archiving - archived_before);
                                if stop {
                                    break;
                                }
                            }
                            if let Some(t) = &targets {
                                // Rounds of a replay are long: progress is shown as it reads.
                                if let Some(p) = &mut progress {
                                    p.report(self.replay_position(t).0);
                                }
                                // Its last round ends when every partition is read up to its
                                // target, not at the round's deadline.
                                if self.reached(t) {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka consume error");
                            // librdkafka retries everything but a fatal error, after which the
                            // consumer never delivers again. It never closes such a consumer
                            // either, and dropping one waits for that close: leaked, so that the
                            // process exits to be restarted instead of hanging.
                            if let Some(e) = consumer_failed(&self.consumer, self.cfg.kafka.instance_id.as_deref()) {
                                std::mem::forget(std::sync::Arc::clone(&self.consumer));
                                return Err(e);
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    },
                }
            }
            self.last_poll = Instant::now();
            if replaying {
                consuming += round_started.elapsed().saturating_sub(applying + archiving);
            }
            self.core.apply_received();
            archiving += self.archive.send_due(&self.store, &mut self.core.pending_raw, piece_bytes).await;
            if !archiving.is_zero() {
                self.core.metrics.flush_seconds.with_label_values(&["archive"]).observe(archiving.as_secs_f64());
            }
            self.core.metrics.records_consumed.inc_by(consumed as u64);
            if consumed > 0 {
                self.core.progress_dirty = true;
            }
            self.apply_group_changes().await?;
            if self.catching_up() {
                self.readiness.set(false);
            }
            let progress_due = self.last_progress_write.elapsed() > Duration::from_secs(2);
            if consumed > 0 || progress_due || stop {
                if progress_due {
                    self.refresh_watermarks();
                    self.refresh_as_of().await;
                    self.last_progress_write = Instant::now();
                }
                self.flush(stop).await?;
                self.checkpoint(stop).await;
                self.readiness.set(!self.catching_up());
            }
            if let (Some(targets), Some(progress)) = (&targets, &mut progress) {
                let (done, finished) = self.replay_position(targets);
                progress.report(done);
                if finished && !stop {
                    self.flush(true).await?;
                    self.checkpoint(true).await;
                    // A replay that had nothing left to write has not waited for it yet.
                    self.archive_copied().await?;
                    progress.finish(done);
                    let spent =
                        |step: &str| self.core.metrics.flush_seconds.with_label_values(&[step]).get_sample_sum();
                    tracing::info!(
                        consume_s = consuming.as_secs_f64(),
                        copy_s = spent("copy"),
                        copy_wait_s = spent("copy_wait"),
                        apply_s = spent("apply"),
                        engine_s = spent("engine"),
                        archive_s = spent("archive"),
                        write_s = spent("write"),
                        snapshot_s = spent("snapshot"),
                        "replay time by step (copy: the served generation's archive, beside the reading; copy_wait: a flush waiting for it; consume: taking records from the consumer; archive: waiting for archive rows sent during rounds)"
                    );
                    return Ok(true);
                }
            }
            if stop {
                self.finish_joining().await;
                tracing::info!("processor stopped");
                return Ok(false);
            }
        }
    }

    /// A processor stopped while its consumer group join is still going on (its first seconds)
    /// waits for the join to end before it leaves, up to `kafka.session_timeout_ms`. Tansu 0.6
    /// never ends a rebalance that a still-joining member left: every later member of the group
    /// waited for good (seen with a replay stopped 1.5 s after its start, then run again). Leaving
    /// as a member that has joined is what a stop at any later moment does, on any broker.
    async fn finish_joining(&mut self) {
        if self.group.joined() {
            return;
        }
        let started = Instant::now();
        let limit = Duration::from_millis(self.cfg.kafka.session_timeout_ms);
        tracing::info!("stopped during the consumer group's join; leaving once it is done");
        while !self.group.joined() && started.elapsed() < limit {
            // Polling serves the group's callbacks; partitions assigned are paused by them, so no
            // records come.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.consumer.recv()).await;
        }
        tracing::info!(joined = self.group.joined(), elapsed_ms = started.elapsed().as_millis() as u64, "join ended");
    }

    /// The held partitions' log ends, as the consumer's fetches last saw them: asking the
    /// broker (`ListOffsets`) waits behind the consumer's own fetch on the same connection, up to
    /// `fetch.wait.max.ms` a partition, which at the end of a replay was 0.4 s with nothing else
    /// running (docs/performance.md, session 24), and during a broker outage a timeout each.
    fn refresh_watermarks(&mut self) {
        let topic = self.cfg.kafka.topic.as_str();
        for (p, st) in self.core.partitions.iter_mut() {
            if let Some(high) = fetched_high_watermark(&self.consumer, topic, *p) {
                // Some brokers (Tansu 0.6) answer a log end below offsets already consumed.
                let high = high.max(st.next_offset);
                if high != st.high_watermark {
                    st.high_watermark = high;
                    self.core.progress_dirty = true;
                }
            }
        }
    }

    #[tracing::instrument(name = "processor.flush", skip_all, fields(rows, raw, lag))]
    async fn flush(&mut self, stopping: bool) -> Result<(), ProcessorError> {
        // After a pause longer than the session (a frozen process, a broker outage) the group may
        // have moved partitions: poll first (the next round), so that a revocation is seen before
        // anything is written.
        let silent = self.last_poll.elapsed().as_millis() as u64;
        if silent > self.cfg.kafka.session_timeout_ms {
            tracing::info!(silent_ms = silent, "no poll for longer than the session; polling before writing");
            return Ok(());
        }
        let started = Instant::now();
        let core = &mut self.core;
        let mut batch = Batch::default();
        for (_, raw) in std::mem::take(&mut core.pending_raw) {
            batch.raw.append(raw);
        }
        let (as_of, progress_dirty, topic) = (&core.as_of, core.progress_dirty, &self.cfg.kafka.topic);
        // Rows of a partition appear only once it has caught up with what was written before.
        let ready: Vec<(i32, &mut PartitionState)> =
            core.partitions.iter_mut().filter(|(_, st)| !st.catching_up()).map(|(&p, st)| (p, st)).collect();
        let parts = crate::parallel::map_on_threads(ready, core.threads, |(p, st)| {
            let out = st.engine.flush(&|c| as_of.get(c).copied());
            if out.is_empty() && !progress_dirty {
                return None;
            }
            let (pu, v) = (p as u32, st.version);
            st.version += 1;
            let mut part = Batch::from_output(out, pu, v);
            part.progress.push(&ProgressRow {
                topic: topic.clone(),
                partition: pu,
                next_offset: st.next_offset,
                high_watermark: st.high_watermark,
                version: v,
            });
            Some(part)
        });
        for part in parts.into_iter().flatten() {
            batch.append(part);
        }
        core.metrics.flush_seconds.with_label_values(&["engine"]).observe(started.elapsed().as_secs_f64());
        // Progress may move past archive rows sent during the round only once they are stored, or
        // go again with this write.
        let waiting = Instant::now();
        batch.raw.append(self.archive.take_unsent().await);
        self.core.metrics.flush_seconds.with_label_values(&["archive"]).observe(waiting.elapsed().as_secs_f64());
        if batch.progress.is_empty() && batch.raw.is_empty() {
            return Ok(());
        }
        // Dead letters are acknowledged before the progress that moves past them is stored.
        for f in std::mem::take(&mut self.core.pending_dead_letters) {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(ProcessorError::DeadLetter(e.to_string())),
                Err(_) => return Err(ProcessorError::DeadLetter("delivery cancelled".into())),
            }
        }
        if stopping && self.copy_in_flight.as_ref().is_some_and(|c| !c.is_finished()) {
            // No progress may be stored before the copy ends; a resumed replay copies again.
            if let Some(copy) = self.copy_in_flight.take() {
                copy.abort();
            }
            tracing::info!("replay stopped during its archive copy; nothing written, a resumed replay starts over");
            return Ok(());
        }
        self.archive_copied().await?;
        let write_started = Instant::now();
        self.write_with_retry(&batch, stopping).await?;
        self.core.metrics.flush_seconds.with_label_values(&["write"]).observe(write_started.elapsed().as_secs_f64());
        self.last_progress_write = Instant::now();
        self.core.progress_dirty = false;
        let mut tpl = TopicPartitionList::new();
        let mut lag = 0;
        for (&p, st) in self.core.partitions.iter_mut().filter(|(_, st)| !st.catching_up()) {
            st.archived_until = st.archived_until.max(st.next_offset);
            lag += (st.high_watermark - st.next_offset).max(0);
            if st.next_offset > 0 {
                let _ = tpl.add_partition_offset(&self.cfg.kafka.topic, p, Offset::Offset(st.next_offset));
            }
        }
        self.core.metrics.consumer_lag.set(lag);
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "offset commit failed (progress is in ClickHouse)");
            }
        }
        let span = tracing::Span::current();
        span.record("rows", batch.rows());
        span.record("raw", batch.raw.len());
        span.record("lag", lag);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "flushed");
        Ok(())
    }

    /// Saves the engines of the partitions whose checkpoint is due (all of them when stopping,
    /// and then waits for the files). Called right after a successful write, so the
    /// state saved is exactly what ClickHouse holds rows for. A failed save is logged and counted;
    /// it only means a longer replay after the next restart.
    async fn checkpoint(&mut self, stopping: bool) {
        let Some(store) = self.checkpoints.clone() else { return };
        if let Some(h) = &self.checkpoint_in_flight {
            if !h.is_finished() && !stopping {
                return;
            }
        }
        if let Some(h) = self.checkpoint_in_flight.take() {
            self.checkpoints_failed(h.await.unwrap_or_default());
        }
        let interval = Duration::from_secs(self.cfg.checkpoint.interval_secs);
        let (topic, taken_at_ms) = (&self.cfg.kafka.topic, chrono::Utc::now().timestamp_millis());
        let due: Vec<(i32, &mut PartitionState)> = self
            .core
            .partitions
            .iter_mut()
            // Only a state whose every consumed record is written matches what ClickHouse holds.
            .filter(|(_, st)| st.next_offset <= st.archived_until)
            // A partition that consumed nothing since its last checkpoint has that one still.
            .filter(|(_, st)| st.next_offset != st.checkpointed_offset)
            .filter(|(_, st)| stopping || st.last_checkpoint.elapsed() >= interval)
            .map(|(&p, st)| (p, st))
            .collect();
        if due.is_empty() {
            return;
        }
        let started = Instant::now();
        // Partitions are snapshotted on several threads, as they are flushed.
        let jobs = tokio::task::block_in_place(|| {
            crate::parallel::map_on_threads(due, self.core.threads, |(p, st)| {
                st.last_checkpoint = Instant::now();
                st.checkpointed_offset = st.next_offset;
                let meta = CheckpointMeta {
                    topic: topic.clone(),
                    partition: p,
                    next_offset: st.next_offset,
                    version: st.version - 1,
                    taken_at_ms,
                };
                (meta, st.engine.snapshot())
            })
        });
        self.core.metrics.flush_seconds.with_label_values(&["snapshot"]).observe(started.elapsed().as_secs_f64());
        let metrics = self.core.metrics.clone();
        let handle = tokio::task::spawn_blocking(move || {
            // One thread a file: a save is mostly waiting for the disk to sync it.
            let threads = jobs.len();
            let saved = crate::parallel::map_on_threads(jobs, threads, |(meta, bytes)| {
                let started = Instant::now();
                match store.save(&meta, &bytes) {
                    Ok(size) => {
                        metrics.checkpoint_writes.with_label_values(&["ok"]).inc();
                        metrics.checkpoint_bytes.set(size as i64);
                        tracing::info!(
                            partition = meta.partition,
                            next_offset = meta.next_offset,
                            version = meta.version,
                            size,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "checkpoint saved"
                        );
                        None
                    }
                    Err(e) => {
                        metrics.checkpoint_writes.with_label_values(&["failed"]).inc();
                        tracing::warn!(partition = meta.partition, error = %e, "checkpoint not saved");
                        Some((meta.partition, meta.next_offset))
                    }
                }
            });
            saved.into_iter().flatten().collect::<Vec<_>>()
        });
        if stopping {
            self.checkpoints_failed(handle.await.unwrap_or_default());
        } else {
            self.checkpoint_in_flight = Some(handle);
        }
    }

    /// Makes partitions whose checkpoint was not saved due again (after the checkpoint
    /// interval), also when they consume nothing more: an idle partition would otherwise keep
    /// an older checkpoint, or none, and a restart replay more of the log than it needs.
    fn checkpoints_failed(&mut self, failed: Vec<(i32, i64)>) {
        for (p, next_offset) in failed {
            // A partition given up and taken again since has a state of its own.
            if let Some(st) = self.core.partitions.get_mut(&p).filter(|st| st.checkpointed_offset == next_offset) {
                st.checkpointed_offset = -1;
            }
        }
    }

    /// Retries a failed write with exponential backoff until it succeeds. Nothing is consumed
    /// meanwhile, so memory stays bounded; on shutdown it gives up, and progress stays where it
    /// was (the next run redoes the work).
    async fn write_with_retry(&self, batch: &Batch, stopping: bool) -> Result<(), ProcessorError> {
        let mut backoff = self.cfg.flush.backoff();
        let mut attempts = 0;
        loop {
            match self.store.write(batch).await {
                Ok(()) => {
                    if attempts > 0 {
                        tracing::info!(attempts, "clickhouse write succeeded after retries");
                    }
                    self.readiness.set(true);
                    return Ok(());
                }
                Err(e) => {
                    let silent = self.last_poll.elapsed().as_millis() as u64;
                    let limit = self.cfg.kafka.max_poll_interval_ms * 4 / 5;
                    if silent > limit {
                        tracing::error!(error = %e, silent_ms = silent, "clickhouse write still failing; leaving the group");
                        return Err(ProcessorError::OwnershipLost(silent, limit));
                    }
                    attempts += 1;
                    self.core.metrics.write_failures.inc();
                    self.readiness.set(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, attempts, retry_in_ms = delay.as_millis() as u64, "clickhouse write failed");
                    if stopping && attempts >= 3 {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl PartitionState {
    fn catching_up(&self) -> bool {
        self.next_offset < self.archived_until
    }
}

impl Core {
    /// Keeps a consumed record for `apply_received`; records of partitions not held are dropped.
    fn receive(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        let Some(st) = self.partitions.get_mut(&partition) else { return };
        st.next_offset = offset + 1;
        st.high_watermark = st.high_watermark.max(offset + 1);
        self.received.entry(partition).or_default().push(offset, payload.unwrap_or_default());
        self.unapplied += 1;
    }

    /// Hands over the records `take_held` took while a slice was applied, as `receive` would
    /// have taken them one by one.
    fn receive_taken(&mut self, taken: &mut BTreeMap<i32, Received>) {
        for (p, records) in taken.iter_mut() {
            let Some(&(last, ..)) = records.records.last() else { continue };
            let Some(st) = self.partitions.get_mut(p) else {
                records.clear();
                continue;
            };
            st.next_offset = last + 1;
            st.high_watermark = st.high_watermark.max(last + 1);
            self.unapplied += records.records.len();
            let mine = self.received.entry(*p).or_default();
            if mine.records.is_empty() {
                // The applied slice left its blocks cleared: they go back to `taken`.
                std::mem::swap(mine, records);
            } else {
                for (offset, payload) in records.records() {
                    mine.push(offset, payload);
                }
            }
            records.clear();
        }
    }

    /// Decodes and applies the round's records, partitions in parallel, then merges what they
    /// changed. Runs before anything else looks at the engines (a rebalance, a flush).
    fn apply_received(&mut self) {
        self.apply_received_beside(None);
    }

    /// `apply_received`, with `beside` run on this thread while the partitions are applied
    /// (`parallel::map_on_threads_beside`).
    fn apply_received_beside(&mut self, beside: Option<&mut dyn FnMut() -> bool>) {
        if self.unapplied == 0 {
            return;
        }
        let started = Instant::now();
        self.unapplied = 0;
        // Partitions no longer held leave their records (and blocks) behind here.
        let mut received = std::mem::take(&mut self.received);
        let (configs, limits, counts_from_ms) = (&self.configs, &self.limits, self.counts_from_ms);
        let work: Vec<(i32, &mut PartitionState, Received)> = self
            .partitions
            .iter_mut()
            .filter_map(|(&p, st)| received.remove(&p).map(|records| (p, st, records)))
            .collect();
        let apply = |(p, st, mut records): (i32, &mut PartitionState, Received)| {
            let a = apply_records(p, st, &records, configs, limits, counts_from_ms);
            records.clear();
            (p, a, records)
        };
        let applied = match beside {
            Some(beside) => crate::parallel::map_on_threads_beside(work, self.threads, apply, beside),
            None => crate::parallel::map_on_threads(work, self.threads, apply),
        };
        for (p, a, records) in applied {
            self.received.insert(p, records);
            for label in a.invalid {
                self.metrics.invalid_records.with_label_values(&[label]).inc();
            }
            self.metrics.duplicates.inc_by(a.duplicates);
            self.metrics.before_counts_from.inc_by(a.before_counts_from);
            self.metrics.events_processed.inc_by(a.processed);
            for (community, ts) in a.as_of {
                let e = self.as_of.entry(community).or_insert(ts);
                *e = (*e).max(ts);
            }
            self.pending_raw.entry(p).or_default().append(a.raw);
            for (offset, payload, reason) in a.dead {
                self.dead_letter(p, offset, &payload, &reason);
            }
        }
        self.metrics.flush_seconds.with_label_values(&["apply"]).observe(started.elapsed().as_secs_f64());
    }
}

/// A partition's log end as of the consumer's last fetch response for it, which librdkafka
/// keeps (`rd_kafka_get_watermark_offsets`); `None` before the partition's first fetch.
fn fetched_high_watermark(consumer: &GroupConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client outlives this call (`consumer` is borrowed); librdkafka reads its
    // cache under its own lock and writes only the two integers, which outlive the call too.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Takes the records the consumer already holds into `taken`, until `took` reaches `room`.
/// Says whether to call it again (the consumer may hold more later).
fn take_held(consumer: &GroupConsumer, taken: &mut BTreeMap<i32, Received>, took: &mut usize, room: usize) -> bool {
    while *took < room {
        match consumer.recv().now_or_never() {
            Some(Ok(m)) => {
                taken.entry(m.partition()).or_default().push(m.offset(), m.payload().unwrap_or_default());
                *took += 1;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "kafka consume error");
                return false;
            }
            None => return true,
        }
    }
    false
}

/// One partition's share of a round: decode, apply to its engine, build the archive rows.
fn apply_records(
    partition: i32,
    st: &mut PartitionState,
    records: &Received,
    configs: &engine::Configs,
    limits: &Limits,
    counts_from_ms: i64,
) -> Applied {
    let mut a = Applied::default();
    for (offset, payload) in records.records() {
        let parsed = match parse_event_view(payload, None, limits) {
            Ok(parsed) => parsed,
            Err(e) => {
                a.invalid.push(e.reason_label());
                tracing::warn!(partition, offset, error = %e, "record on the topic is not a valid event; dead-lettered");
                // Records before the previous run's progress were dead-lettered by that run.
                if offset >= st.archived_until {
                    a.dead.push((offset, payload.to_vec(), e.to_string()));
                }
                continue;
            }
        };
        let ev = parsed.view();
        // Left out before the engine sees it, as if the log held no such event: not counted,
        // not a duplicate of a later event with its id, not archived.
        if ev.ts_ms < counts_from_ms {
            a.before_counts_from += 1;
            continue;
        }
        if !st.engine.apply_view(&ev) {
            a.duplicates += 1;
            continue;
        }
        a.processed += 1;
        match a.as_of.get_mut(ev.community_id) {
            Some(t) => *t = (*t).max(ev.ts_ms),
            None => {
                a.as_of.insert(ev.community_id.to_owned(), ev.ts_ms);
            }
        }
        let copied = offset < st.copied_until && (queries::COPY_TS_MIN_MS..queries::COPY_TS_MAX_MS).contains(&ev.ts_ms);
        if offset >= st.archived_until && !copied {
            a.raw.push(&RawEventRow::new(&ev, configs.get(ev.community_id), partition, offset));
        }
    }
    a
}

impl Core {
    /// Sends a record that is not a valid event to the dead-letter topic: the reason, where it
    /// came from, and its bytes (as text when they are UTF-8, else base-16).
    fn dead_letter(&mut self, partition: i32, offset: i64, payload: &[u8], reason: &str) {
        let text = std::str::from_utf8(payload)
            .map(str::to_owned)
            .unwrap_or_else(|_| payload.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let body = serde_json::json!({
            "reason": reason,
            "source_partition": partition,
            "source_offset": offset,
            "payload": text,
        })
        .to_string();
        let key = format!("{partition}:{offset}");
        let record = FutureRecord::to(&self.dead_letter_topic).key(&key).payload(&body);
        match self.dead_letters.send_result(record) {
            Ok(f) => self.pending_dead_letters.push(f),
            Err((e, _)) => tracing::error!(error = %e, partition, offset, "dead-letter producer refused a record"),
        }
    }
}

/// Takes up a partition: its engine from the checkpoint when a usable one exists, else a new
/// engine and the log from the beginning. Either way the rows written after the state's version
/// are read back, so the next flushes overwrite whatever differs from the rebuilt state.
async fn open_partition(
    cfg: &ProcessorConfig,
    store: &Store,
    checkpoints: Option<&Checkpoints>,
    consumer: &GroupConsumer,
    metrics: &Metrics,
    p: i32,
) -> Result<(PartitionState, Offset), ProcessorError> {
    let started = Instant::now();
    let (pu, topic) = (p as u32, &cfg.kafka.topic);
    let (low, high) = tokio::task::block_in_place(|| watermarks(consumer, topic, p))?;
    // A topic that was recreated (shorter than what was archived) is read as new.
    let archived_until = store.archived_until(topic, pu).await?.min(high);
    let max_version = store.max_version(pu).await?;
    // Reading and decoding a checkpoint is CPU work of a second or so at a million members:
    // off the runtime, so that partitions taken up together restore on several cores.
    let restored = match checkpoints {
        Some(c) => {
            let (c, topic, metrics_cfg) = (c.clone(), topic.clone(), cfg.metrics.clone());
            let log = LogBounds { low, high, archived_until, max_version };
            tokio::task::spawn_blocking(move || restore_checkpoint(&c, &topic, p, &metrics_cfg, log))
                .await
                .map_err(|e| ProcessorError::Checkpoint(format!("partition {p}: restoring: {e}")))??
        }
        None => None,
    };
    let from_checkpoint = restored.is_some();
    let (mut engine, after_version, next_offset) = match restored {
        Some((meta, engine)) => (engine, meta.version, meta.next_offset),
        None => (Engine::new(cfg.metrics.clone()), 0, low),
    };
    let cohorts: Vec<_> = store
        .written(queries::WRITTEN_COHORTS, pu, after_version)
        .await?
        .iter()
        .filter_map(CohortSizeRow::to_engine)
        .collect();
    let cells: Vec<_> = store
        .written(queries::WRITTEN_RETENTION, pu, after_version)
        .await?
        .iter()
        .filter_map(RetentionRow::to_engine)
        .collect();
    engine.seed_written(&cohorts, &cells);
    let days: Vec<_> = store
        .written(queries::WRITTEN_ENGAGEMENT, pu, after_version)
        .await?
        .iter()
        .map(EngagementDayRow::to_engine)
        .collect();
    let periods: Vec<_> = store
        .written(queries::WRITTEN_LIFECYCLE, pu, after_version)
        .await?
        .iter()
        .filter_map(LifecyclePeriodRow::to_engine)
        .collect();
    let churn: Vec<_> = store
        .written(queries::WRITTEN_CHURN, pu, after_version)
        .await?
        .iter()
        .filter_map(ChurnPeriodRow::to_engine)
        .collect();
    engine.seed_written_periods(&days, &periods, &churn);
    let from = if from_checkpoint { "checkpoint" } else { "log" };
    metrics.partition_starts.with_label_values(&[from]).inc();
    tracing::info!(
        partition = p,
        from,
        low,
        high,
        next_offset,
        archived_until,
        version = max_version + 1,
        seeded_rows = cohorts.len() + cells.len() + days.len() + periods.len() + churn.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition taken up"
    );
    let offset = if from_checkpoint { Offset::Offset(next_offset) } else { Offset::Beginning };
    let st = PartitionState {
        engine,
        version: max_version + 1,
        next_offset,
        archived_until,
        copied_until: 0,
        high_watermark: high,
        last_checkpoint: Instant::now(),
        checkpointed_offset: if from_checkpoint { next_offset } else { -1 },
    };
    Ok((st, offset))
}

/// Where the log and ClickHouse stand for a partition, which a checkpoint must not be beyond.
struct LogBounds {
    low: i64,
    high: i64,
    archived_until: i64,
    max_version: u64,
}

/// The partition's checkpoint and the engine it holds, if there is one that still describes the
/// topic and the tables; `None` (with the reason logged) means rebuilding from the log.
fn restore_checkpoint(
    checkpoints: &Checkpoints,
    topic: &str,
    p: i32,
    metrics: &engine::Configs,
    log: LogBounds,
) -> Result<Option<(CheckpointMeta, Engine)>, ProcessorError> {
    let Some(c) = checkpoints.load(topic, p)? else { return Ok(None) };
    let m = &c.meta;
    let LogBounds { low, high, archived_until, max_version } = log;
    // Beyond the log's end: the topic was recreated. Beyond what ClickHouse recorded: the
    // database was recreated. Either way the saved state describes something that is gone.
    if m.next_offset > high || m.next_offset > archived_until || m.version > max_version {
        tracing::warn!(
            partition = p,
            next_offset = m.next_offset,
            version = m.version,
            high,
            archived_until,
            max_version,
            "checkpoint does not match the topic or ClickHouse; rebuilding from the log"
        );
        return Ok(None);
    }
    if m.next_offset < low {
        tracing::warn!(
            partition = p,
            next_offset = m.next_offset,
            low,
            "events after the checkpoint were deleted by retention"
        );
    }
    match Engine::restore(metrics, &c.engine) {
        Ok(engine) => Ok(Some((c.meta, engine))),
        Err(e) => {
            tracing::warn!(partition = p, error = %e, "checkpoint not usable; rebuilding from the log");
            Ok(None)
        }
    }
}

fn dead_letter_producer(cfg: &ProcessorConfig) -> Result<FutureProducer, ProcessorError> {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000");
    for (k, v) in &cfg.kafka.properties {
        c.set(k, v.expose());
    }
    Ok(c.create()?)
}

fn watermarks(consumer: &GroupConsumer, topic: &str, p: i32) -> Result<(i64, i64), ProcessorError> {
    Ok(consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?)
}

/// Waits until the topic exists and has partitions (the processor may start before the broker
/// or before the topic is created).
async fn wait_for_partitions(consumer: &GroupConsumer, topic: &str) -> Result<Vec<i32>, ProcessorError> {
    let mut delay = Duration::from_millis(200);
    for attempt in 0.. {
        let md = tokio::task::block_in_place(|| consumer.fetch_metadata(Some(topic), Duration::from_secs(5)));
        match md {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic && t.error().is_none()) {
                    if !t.partitions().is_empty() {
                        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                        ids.sort_unstable();
                        return Ok(ids);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, attempt, "waiting for the broker"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Err(ProcessorError::NoTopic(topic.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_static_member_is_told_which_setting_clashed() {
        let e = fatal_consumer_error(RDKafkaErrorCode::FencedInstanceId, "broker: fenced", Some("processor-2"));
        let text = e.to_string();
        assert!(text.contains("kafka.instance_id \"processor-2\""), "{text}");
        assert!(text.contains("each running instance needs an id of its own"), "{text}");
        let other = fatal_consumer_error(RDKafkaErrorCode::InvalidProducerEpoch, "broker: epoch", None).to_string();
        assert!(other.contains("InvalidProducerEpoch") && other.contains("broker: epoch"), "{other}");
        assert!(!other.contains("instance_id"), "{other}");
    }

    fn records(r: &Received) -> Vec<(i64, Vec<u8>)> {
        r.records().map(|(o, p)| (o, p.to_vec())).collect()
    }

    #[test]
    fn received_records_come_back_in_order_across_blocks_and_rounds() {
        let mut r = Received::default();
        for round in 0..3u8 {
            let mut want = Vec::new();
            for i in 0..5_000i64 {
                // Mostly small records, some as large as a block or larger, one empty.
                let len = match i % 1_000 {
                    7 => BLOCK_BYTES + 3,
                    8 => BLOCK_BYTES - 1,
                    9 => 0,
                    _ => 200 + (i as usize % 700),
                };
                let payload = vec![(i as u8) ^ round; len];
                r.push(i, &payload);
                want.push((i, payload));
            }
            assert_eq!(records(&r), want, "round {round}");
            let blocks = r.blocks.len();
            r.clear();
            assert!(r.records().next().is_none(), "emptied");
            assert_eq!(r.blocks.len(), blocks, "blocks are kept for the next round");
        }
    }
}

#[cfg(test)]
mod fetched_high_watermark_tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    fn produce(brokers: &str, n: usize) {
        let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
        for i in 0..n {
            let payload = format!("record {i}");
            producer.send(BaseRecord::<(), _>::to("t").partition(0).payload(&payload)).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// The log end comes from the consumer's fetches, not from a request to the broker: none
    /// before the partition's first fetch, then the end as the last fetch saw it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_end_is_the_one_the_last_fetch_saw() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        produce(&brokers, 10);
        let consumer: GroupConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "g")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(GroupContext::new("t"))
            .unwrap();
        assert_eq!(fetched_high_watermark(&consumer, "t", 0), None, "nothing fetched yet");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await.unwrap().unwrap();
        assert_eq!(first.offset(), 0);
        drop(first);
        assert_eq!(fetched_high_watermark(&consumer, "t", 0), Some(10));
        produce(&brokers, 5);
        // The consumer keeps fetching (the end is seen once a fetch returns the new records).
        let deadline = Instant::now() + Duration::from_secs(10);
        while fetched_high_watermark(&consumer, "t", 0) != Some(15) {
            assert!(Instant::now() < deadline, "still {:?}", fetched_high_watermark(&consumer, "t", 0));
            let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        }
        assert_eq!(fetched_high_watermark(&consumer, "t", 1), None, "no such partition");
    }

    /// A fatal error (here raised by librdkafka's test hook, as a broker's fencing of a static
    /// member would) surfaces as a consume error, and the consumer then says what failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_consumer_error_is_seen_by_the_consume_loop() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        produce(&brokers, 3);
        let consumer: GroupConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "g")
            .set("auto.offset.reset", "earliest")
            .create_with_context(GroupContext::new("t"))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await.unwrap().unwrap();
        assert!(consumer_failed(&consumer, Some("p-1")).is_none(), "nothing failed yet");
        let reason = std::ffi::CString::new("another member joined with this group.instance.id").unwrap();
        // SAFETY: the handle is the live consumer's; the reason is a valid C string.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                consumer.client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
                reason.as_ptr(),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no consume error after the fatal error");
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
                break;
            }
        }
        let e = consumer_failed(&consumer, Some("p-1")).expect("the consumer reports its fatal error").to_string();
        assert!(e.contains("kafka.instance_id \"p-1\" was taken over"), "{e}");
        // Dropping it would wait for a close librdkafka never does after a fatal error.
        std::mem::forget(consumer);
    }
}
