//! API keys bound to communities: write keys (ingest) and read keys (query API).

use crate::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBinding {
    pub key: Secret,
    /// Community ids this key may use; `"*"` means every community.
    pub communities: Vec<String>,
}

impl KeyBinding {
    pub fn allows(&self, community_id: &str) -> bool {
        self.communities.iter().any(|c| c == "*" || c == community_id)
    }
}

/// The binding whose key equals `token`, compared in constant time.
pub fn find_key<'a>(bindings: &'a [KeyBinding], token: &str) -> Option<&'a KeyBinding> {
    bindings.iter().find(|k| constant_time_eq(k.key.expose().as_bytes(), token.trim().as_bytes()))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rules every key list must meet; `what` names the config field (`write_keys`, `read_keys`).
pub fn validate_keys(bindings: &[KeyBinding], what: &str) -> Result<(), String> {
    if bindings.is_empty() {
        return Err(format!("{what}: at least one key is required"));
    }
    for (i, k) in bindings.iter().enumerate() {
        if k.key.expose().len() < 8 {
            return Err(format!("{what}[{i}].key: must be at least 8 characters"));
        }
        if k.communities.is_empty() {
            return Err(format!("{what}[{i}].communities: must name at least one community or \"*\""));
        }
    }
    Ok(())
}
