//! Checkpoints: a partition's engine state saved to a file after the ClickHouse write it covers,
//! so that a restarted processor resumes from it instead of re-reading the whole topic.
//!
//! A checkpoint records the offset the engine had reached and the version of the last rows
//! written for the partition. Rows written after it (a higher version) are read back at restart
//! and the events after it replayed, so a checkpoint of any age gives the same tables; an old one
//! only costs replay time. A missing, damaged or unusable checkpoint (other metric configuration,
//! topic or ClickHouse database recreated) falls back to a rebuild from the log.
//!
//! File: `EGPC`, the metadata's length (u32 LE), the metadata as JSON, then the engine's bytes.
//! Written to a temporary file, synced, then renamed over the previous one.

use crate::error::ProcessorError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"EGPC";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub topic: String,
    pub partition: i32,
    /// The engine holds every record before this offset.
    pub next_offset: i64,
    /// Version of the newest rows written for the partition when it was taken.
    pub version: u64,
    /// Wall-clock time it was taken (for operators; never used for computing).
    pub taken_at_ms: i64,
}

pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub engine: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpoints { dir: dir.into() }
    }

    pub fn path(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(topic).join(format!("partition-{partition}.ckpt"))
    }

    /// The partition's checkpoint, if a readable one exists. A file that is not a checkpoint is
    /// reported and ignored (the partition is then rebuilt from the log).
    pub fn load(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>, ProcessorError> {
        let path = self.path(topic, partition);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProcessorError::Checkpoint(format!("reading {}: {e}", path.display()))),
        };
        match decode(bytes) {
            Some(c) if c.meta.topic == topic && c.meta.partition == partition => Ok(Some(c)),
            _ => {
                tracing::warn!(path = %path.display(), "not a checkpoint of this partition; ignored");
                Ok(None)
            }
        }
    }

    /// Only the metadata of the partition's checkpoint, read from the file's head without its
    /// engine bytes (to see which offset a checkpoint covers).
    pub fn meta(&self, topic: &str, partition: i32) -> Option<CheckpointMeta> {
        use std::io::Read;
        let mut f = std::fs::File::open(self.path(topic, partition)).ok()?;
        let mut head = [0u8; 8];
        f.read_exact(&mut head).ok()?;
        let mut meta = vec![0; meta_len(&head)?];
        f.read_exact(&mut meta).ok()?;
        let meta: CheckpointMeta = serde_json::from_slice(&meta).ok()?;
        (meta.topic == topic && meta.partition == partition).then_some(meta)
    }

    /// Writes a checkpoint durably (blocking: run it off the async threads). Returns its size.
    pub fn save(&self, meta: &CheckpointMeta, engine: &[u8]) -> Result<u64, ProcessorError> {
        let path = self.path(&meta.topic, meta.partition);
        let err = |what: &str, e: std::io::Error| ProcessorError::Checkpoint(format!("{what} {}: {e}", path.display()));
        let dir = path.parent().expect("checkpoint paths have a directory");
        std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
        // Unique, in case two instances briefly both hold the partition during a handover.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tmp = path.with_extension(format!("ckpt.{}-{nanos}.tmp", std::process::id()));
        let meta_json = serde_json::to_vec(meta).expect("metadata serialises");
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| err("creating", e))?;
            f.write_all(MAGIC).map_err(|e| err("writing", e))?;
            f.write_all(&(meta_json.len() as u32).to_le_bytes()).map_err(|e| err("writing", e))?;
            f.write_all(&meta_json).map_err(|e| err("writing", e))?;
            f.write_all(engine).map_err(|e| err("writing", e))?;
            f.sync_all().map_err(|e| err("syncing", e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| err("renaming onto", e))?;
        sync_dir(dir);
        Ok((8 + meta_json.len() + engine.len()) as u64)
    }
}

/// The metadata's length, from a file's first 8 bytes (`None` if it is not a checkpoint).
fn meta_len(head: &[u8]) -> Option<usize> {
    if head.len() < 8 || &head[..4] != MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(head[4..8].try_into().ok()?) as usize)
}

fn decode(mut bytes: Vec<u8>) -> Option<Checkpoint> {
    let len = meta_len(&bytes)?;
    let meta: CheckpointMeta = serde_json::from_slice(bytes.get(8..8 + len)?).ok()?;
    let engine = bytes.split_off(8 + len);
    Some(Checkpoint { meta, engine })
}

/// Makes the rename itself durable where the platform allows it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_checkpoints_load_back_and_foreign_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("ckpt-test-{}", std::process::id()));
        let store = Checkpoints::new(&dir);
        let meta = CheckpointMeta { topic: "t".into(), partition: 3, next_offset: 42, version: 7, taken_at_ms: 1 };
        assert!(store.load("t", 3).unwrap().is_none());
        let size = store.save(&meta, b"engine bytes").unwrap();
        assert_eq!(size, std::fs::metadata(store.path("t", 3)).unwrap().len());
        let back = store.load("t", 3).unwrap().unwrap();
        assert_eq!(back.meta, meta);
        assert_eq!(back.engine, b"engine bytes");
        assert_eq!(store.meta("t", 3), Some(meta.clone()));
        // Another partition's file copied over this one is not taken for it.
        std::fs::copy(store.path("t", 3), store.path("t", 4)).unwrap();
        assert!(store.load("t", 4).unwrap().is_none());
        assert_eq!(store.meta("t", 4), None);
        std::fs::write(store.path("t", 3), b"garbage").unwrap();
        assert!(store.load("t", 3).unwrap().is_none());
        assert_eq!(store.meta("t", 3), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
