//! Saved engine state (a checkpoint's body): everything the engine holds, so that a restarted
//! processor resumes from where the checkpoint was taken instead of re-reading the whole log.
//!
//! Layout: `EGCK`, a format number (u32 LE), the postcard-encoded state, and an xxh3-64 of that
//! state (u64 LE). The metric configuration is part of the state: a checkpoint taken under other
//! parameters is refused, because the histories it holds were filtered by them (a configuration
//! change takes effect through a rebuild from the log).

use crate::config::Configs;
use crate::engine::{Community, Engine, FastMap};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"EGCK";
/// Raised whenever the saved structures change shape; older checkpoints are then refused.
pub const FORMAT: u32 = 6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapshotError {
    #[error("not an engine checkpoint (bad magic bytes)")]
    NotACheckpoint,
    #[error("checkpoint format {found} is not supported (this build reads format {FORMAT})")]
    Format { found: u32 },
    #[error("checkpoint is damaged (checksum mismatch)")]
    Checksum,
    #[error("checkpoint cannot be decoded: {0}")]
    Decode(String),
    #[error("checkpoint was taken under another metric configuration")]
    ConfigChanged,
}

#[derive(Serialize)]
struct StateRef<'a> {
    configs: &'a Configs,
    communities: &'a FastMap<String, Community>,
}

#[derive(Deserialize)]
struct State {
    configs: Configs,
    communities: FastMap<String, Community>,
}

impl Engine {
    /// The engine's whole state as bytes (pure: the caller decides where they go).
    pub fn snapshot(&self) -> Vec<u8> {
        let (configs, communities) = self.parts();
        let mut out = Vec::with_capacity(1 << 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        let out =
            postcard::to_extend(&StateRef { configs, communities }, out).expect("engine state is always serialisable");
        let mut out = out;
        let sum = xxhash_rust::xxh3::xxh3_64(&out[8..]);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Rebuilds an engine from `snapshot`'s bytes, if they were taken under `configs`.
    pub fn restore(configs: &Configs, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        if bytes.len() < 16 || &bytes[..4] != MAGIC {
            return Err(SnapshotError::NotACheckpoint);
        }
        let found = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if found != FORMAT {
            return Err(SnapshotError::Format { found });
        }
        let (body, sum) = bytes[8..].split_at(bytes.len() - 16);
        if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
            return Err(SnapshotError::Checksum);
        }
        let state: State = postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if &state.configs != configs {
            return Err(SnapshotError::ConfigChanged);
        }
        Ok(Engine::from_parts(state.configs, state.communities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommunityConfig;
    use schemas::{parse_event_value, Event, Limits};

    fn ev(i: usize, t: &str, member: &str, day: i64) -> Event {
        let v = serde_json::json!({"event_id": format!("e{i}"), "type": t, "community_id": "c",
            "group_id": format!("g{}", i % 2), "member_id": member,
            "ts": schemas::event::format_ts(1_709_251_200_000 + day * 86_400_000 + i as i64), "props": {}});
        parse_event_value(&v, None, &Limits::default()).unwrap()
    }

    fn events() -> Vec<Event> {
        let mut out = Vec::new();
        for m in 0..20 {
            out.push(ev(out.len(), "member_joined", &format!("m{m}"), m % 9));
            for d in 0..(m % 5) {
                out.push(ev(out.len(), "message_posted", &format!("m{m}"), m % 9 + d * 3));
            }
        }
        out
    }

    #[test]
    fn a_restored_engine_continues_exactly_like_the_original() {
        let configs = Configs::default();
        let all = events();
        let (first, rest) = all.split_at(50);
        let mut original = Engine::new(configs.clone());
        first.iter().for_each(|e| _ = original.apply(e));
        let as_of = |_: &str| Some(1_709_251_200_000 + 40 * 86_400_000);
        original.flush(&as_of);
        let mut restored = Engine::restore(&configs, &original.snapshot()).unwrap();
        // Duplicates of events before the checkpoint are still recognised.
        assert!(!restored.apply(&first[3]));
        for e in rest {
            assert_eq!(original.apply(e), restored.apply(e));
        }
        let (a, b) = (original.flush(&as_of), restored.flush(&as_of));
        assert!(!a.retention.is_empty());
        assert_eq!(a, b);
    }

    /// The processor saves only flushed engines, but a checkpoint taken between flushes must
    /// restore as well: its members changed since the last flush keep the contribution to retract.
    #[test]
    fn a_checkpoint_between_flushes_restores_the_changes_not_yet_flushed() {
        let configs = Configs::default();
        let all = events();
        // Every member's first event before the checkpoint, the rest after it.
        let (first, rest): (Vec<&Event>, Vec<&Event>) =
            all.iter().partition(|e| e.event_type == schemas::EventType::MemberJoined);
        let as_of = |_: &str| Some(1_709_251_200_000 + 40 * 86_400_000);
        let mut original = Engine::new(configs.clone());
        first[..5].iter().for_each(|e| _ = original.apply(e));
        original.flush(&as_of);
        first[5..].iter().for_each(|e| _ = original.apply(e));
        let mut restored = Engine::restore(&configs, &original.snapshot()).unwrap();
        for e in rest {
            assert_eq!(original.apply(e), restored.apply(e));
        }
        let (a, b) = (original.flush(&as_of), restored.flush(&as_of));
        assert!(!a.retention.is_empty() && !a.engagement.is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn damaged_foreign_or_reconfigured_checkpoints_are_refused() {
        let configs = Configs::default();
        let mut engine = Engine::new(configs.clone());
        events().iter().for_each(|e| _ = engine.apply(e));
        let bytes = engine.snapshot();
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 1;
        assert_eq!(Engine::restore(&configs, &damaged).err(), Some(SnapshotError::Checksum));
        assert_eq!(Engine::restore(&configs, b"not a checkpoint at all").err(), Some(SnapshotError::NotACheckpoint));
        let mut future = bytes.clone();
        future[4] = 9;
        assert_eq!(Engine::restore(&configs, &future).err(), Some(SnapshotError::Format { found: 9 }));
        let other = Configs {
            default: CommunityConfig { activation_window_days: 3, ..CommunityConfig::default() },
            ..Configs::default()
        };
        assert_eq!(Engine::restore(&other, &bytes).err(), Some(SnapshotError::ConfigChanged));
    }
}
