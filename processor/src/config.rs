use common::{ClickHouseConfig, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub flush: FlushConfig,
    pub checkpoint: CheckpointConfig,
    /// Which generation of the derived tables this processor writes: 0 is `clickhouse.database`
    /// itself, N is `<database>_g<N>` (built by `processor replay`, served after `processor
    /// switch`). Each generation has its own consumer group and checkpoint directory.
    pub generation: u32,
    /// Metric parameters: a default and per-community overrides (time zone, windows, ...).
    pub metrics: engine::Configs,
    /// Threads that decode and apply records and flush the engines, each partition on one thread
    /// at a time; 0 means one per core. More threads than assigned partitions do not help.
    pub engine_threads: usize,
    /// Events dated before this instant (RFC 3339, e.g. `2025-01-01T00:00:00Z`) are not counted:
    /// the derived tables are those of a log that began then (`processor replay --from`). Unset,
    /// every event counts. A generation keeps the value it was built with (checked at start).
    pub counts_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    /// The consumer group the instances share the partitions through. Committed offsets are for
    /// tooling (lag); where processing resumes comes from ClickHouse and the checkpoints.
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id gets
    /// its partitions back without waiting for its old session to expire. One distinct id per
    /// instance (e.g. the pod name of a StatefulSet); unset, every start is a new member.
    pub instance_id: Option<String>,
    /// Partitions this instance reads on its own, without the consumer group: `"all"`, or
    /// partition numbers such as `"0,2,5"`. Unset (the default), the instances share the
    /// partitions through the group. Set, a start waits for no group (its join, or a crashed
    /// member's session): the partitions are taken up at once. Each partition must then be
    /// given to exactly one running instance, which nothing checks (docs/operations.md).
    pub partitions: Option<String>,
    /// A member that stops heartbeating loses its partitions after this long.
    pub session_timeout_ms: u64,
    /// Longest time between two polls of the consumer; a write that is still being retried when
    /// 80% of it has passed makes the processor exit (a restart rejoins the group) instead of
    /// writing for partitions the group may have given to another instance.
    pub max_poll_interval_ms: u64,
    /// Where records that are not valid events go, with the reason and their source position.
    pub dead_letter_topic: String,
    pub properties: BTreeMap<String, Secret>,
}

/// Which partitions an instance with `kafka.partitions` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticPartitions {
    All,
    Listed(Vec<i32>),
}

impl StaticPartitions {
    /// The partitions of a topic that has `ids` that these name; an error names one it lacks.
    pub fn of(&self, ids: &[i32]) -> Result<Vec<i32>, String> {
        match self {
            StaticPartitions::All => Ok(ids.to_vec()),
            StaticPartitions::Listed(listed) => match listed.iter().find(|p| !ids.contains(p)) {
                Some(p) => Err(format!("kafka.partitions: partition {p} is not one of the topic's ({ids:?})")),
                None => Ok(listed.clone()),
            },
        }
    }
}

impl KafkaConfig {
    /// `partitions` read: `None` when unset (the consumer group assigns them).
    pub fn static_partitions(&self) -> Result<Option<StaticPartitions>, String> {
        let Some(text) = &self.partitions else { return Ok(None) };
        if text.trim() == "all" {
            return Ok(Some(StaticPartitions::All));
        }
        let rule = || {
            format!(
                "kafka.partitions: must be \"all\" or distinct partition numbers separated by commas (e.g. \"0,2,5\"), got {text:?}"
            )
        };
        let mut listed = Vec::new();
        for part in text.split(',') {
            let p: i32 = part.trim().parse().map_err(|_| rule())?;
            if p < 0 || listed.contains(&p) {
                return Err(rule());
            }
            listed.push(p);
        }
        listed.sort_unstable();
        Ok(Some(StaticPartitions::Listed(listed)))
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "engagement-events".into(),
            group_id: "engagement-processor".into(),
            instance_id: None,
            partitions: None,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            dead_letter_topic: "engagement-events-dlq".into(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushConfig {
    /// Records consumed before the engine's changes are written.
    pub max_records: usize,
    /// Longest time between writes while records arrive.
    pub interval_ms: u64,
    /// The same for `processor replay`: nobody reads the generation it builds until the switch,
    /// so fewer, larger writes are better (each flush recomputes the members it touched). A
    /// replay's last round ends as soon as every partition is read, whatever this is. An
    /// interrupted replay redoes at most this much.
    pub replay_interval_ms: u64,
    /// `max_records` for `processor replay`. Each round rewrites the rows of every member it
    /// touched, and a replay's rounds touch most members each, so a replay wants few rounds. Its
    /// memory grows with the members a round touches (their rows are held until its write, next
    /// to the engines), not with its records (applied in slices, archive rows sent in pieces).
    pub replay_max_records: usize,
    /// A round's records are decoded and applied this many at a time as they arrive (the
    /// consumer keeps fetching meanwhile), so that at most this many are held undecoded.
    pub apply_slice_records: usize,
    /// A round's archive rows are sent to ClickHouse as soon as this many bytes of them are made
    /// (about 100 bytes a record), rather than held until the round's write.
    pub archive_piece_bytes: usize,
    /// First retry delay after a failed write; doubles up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            max_records: 100_000,
            interval_ms: 500,
            replay_interval_ms: 30_000,
            replay_max_records: 10_000_000,
            apply_slice_records: 100_000,
            archive_piece_bytes: 32 << 20,
            backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

impl FlushConfig {
    /// The delays between attempts at a write or an archive copy ClickHouse refused.
    pub fn backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::new(self.backoff_ms, self.max_backoff_ms)
    }
}

/// Saved engine state, so that a restart resumes instead of re-reading the topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    pub enabled: bool,
    /// One file per partition under `<dir>/<topic>/`. Local disk is enough for one instance;
    /// instances that take over each other's partitions need a shared directory to profit from
    /// it (without one they rebuild from the log, which is correct, only slower).
    pub dir: std::path::PathBuf,
    /// Shortest time between two checkpoints of a partition (one more is taken at shutdown).
    pub interval_secs: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { enabled: true, dir: "checkpoints".into(), interval_secs: 30 }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            listen: "127.0.0.1:8082".parse().expect("address"),
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            flush: FlushConfig::default(),
            checkpoint: CheckpointConfig::default(),
            generation: 0,
            metrics: engine::Configs::default(),
            engine_threads: 0,
            counts_from: None,
        }
    }
}

impl ProcessorConfig {
    /// The configuration as it applies to this processor's generation: its database, consumer
    /// group and checkpoint directory (unchanged for generation 0).
    pub fn for_generation(mut self) -> Self {
        let g = self.generation;
        if g > 0 {
            self.clickhouse.database = schemas::ddl::generation_database(&self.clickhouse.database, g);
            self.kafka.group_id = format!("{}-g{g}", self.kafka.group_id);
            self.checkpoint.dir = self.checkpoint.dir.join(format!("g{g}"));
        }
        self
    }

    /// The configuration of `processor replay`: its rounds are `flush.replay_max_records` long
    /// (`queued.min.messages` follows the round; `pipeline::PREFETCH_KBYTES` is what binds).
    pub fn for_replay(mut self) -> Self {
        self.flush.max_records = self.flush.replay_max_records;
        self
    }

    /// `counts_from` in milliseconds since the epoch (`validate` has checked it parses).
    pub fn counts_from_ms(&self) -> Option<i64> {
        self.counts_from.as_deref().and_then(|t| schemas::validate::parse_ts(t).ok())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.metrics.validate().map_err(|e| format!("metrics.{e}"))?;
        self.kafka.static_partitions()?;
        if let Some(t) = &self.counts_from {
            if schemas::validate::parse_ts(t).is_err() {
                return Err(format!(
                    "counts_from: must be an RFC 3339 time with an offset (e.g. 2025-01-01T00:00:00Z), got {t:?}"
                ));
            }
        }
        if self.flush.max_records == 0 {
            return Err("flush.max_records: must be at least 1".into());
        }
        if self.flush.replay_max_records == 0 {
            return Err("flush.replay_max_records: must be at least 1".into());
        }
        if self.flush.apply_slice_records == 0 {
            return Err("flush.apply_slice_records: must be at least 1".into());
        }
        if self.flush.archive_piece_bytes == 0 {
            return Err("flush.archive_piece_bytes: must be at least 1".into());
        }
        if !schemas::validate::valid_community_id(&self.clickhouse.database) {
            return Err("clickhouse.database: must match ^[A-Za-z0-9_.-]{1,64}$".into());
        }
        Ok(())
    }
}
