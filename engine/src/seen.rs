//! The set of event ids a community has counted, as 128-bit hashes of `event_id`.
//!
//! The values are already uniform hashes, so the set hashes them by taking their low 64 bits
//! instead of running SipHash over them again; and a checkpoint stores them as one block of bytes
//! (16 per id) rather than as 13 million variable-length integers, which is what makes a restore
//! of a large partition fast.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct LowBits(u64);

impl Hasher for LowBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by the set; anything else still hashes correctly.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

#[derive(Debug, Default, Clone)]
pub struct Seen(HashSet<u128, BuildHasherDefault<LowBits>>);

impl Seen {
    /// False when the id was already there.
    pub fn insert(&mut self, id_hash: u128) -> bool {
        self.0.insert(id_hash)
    }
}

impl Serialize for Seen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.0.len() * 16);
        for v in &self.0 {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Seen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Seen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("16 bytes per event id")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Seen, E> {
                if !bytes.len().is_multiple_of(16) {
                    return Err(E::custom("event id block is not a multiple of 16 bytes"));
                }
                let mut set = HashSet::with_capacity_and_hasher(bytes.len() / 16, BuildHasherDefault::default());
                set.extend(bytes.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))));
                Ok(Seen(set))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Seen, E> {
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}
