//! The event ids a member has counted, as 64-bit hashes of `event_id` (xxh3).
//!
//! Duplicates are found per member rather than in one set per community: the member's ids sit
//! next to its history, so a lookup touches memory the event needs anyway, and a few ids in a
//! list cost 8 bytes each where a community-wide hash set cost about 27. Within one member, two
//! distinct ids share a 64-bit hash with a chance of about n²/2⁶⁵ (below 10⁻⁸ at a million events
//! for one member). An id reused for another member is not a duplicate here, which the partitioning
//! by member already implied (docs/design.md).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The values are already uniform hashes: the set uses them as they are instead of hashing again.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the set; anything else still hashes correctly.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Beyond this many ids a member's list turns into a hash set, so that a member with a huge
/// history (a bot, a very active operator) does not make each lookup a long scan.
const MAX_LISTED: usize = 32;

#[derive(Debug, Clone)]
pub enum EventIds {
    Listed(thin_vec::ThinVec<u64>),
    /// Boxed: the few members that need it should not make every member's entry bigger.
    #[allow(clippy::box_collection)]
    Hashed(Box<HashSet<u64, BuildHasherDefault<Identity>>>),
}

impl Default for EventIds {
    fn default() -> Self {
        EventIds::Listed(thin_vec::ThinVec::new())
    }
}

pub fn id_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

impl EventIds {
    /// False when the id was already there.
    pub fn insert(&mut self, hash: u64) -> bool {
        match self {
            EventIds::Listed(ids) => {
                if ids.contains(&hash) {
                    return false;
                }
                if ids.len() == MAX_LISTED {
                    let set = ids.iter().copied().chain([hash]).collect();
                    *self = EventIds::Hashed(Box::new(set));
                } else {
                    crate::history::push_compact(ids, hash);
                }
                true
            }
            EventIds::Hashed(set) => set.insert(hash),
        }
    }

    pub fn shrink_to_fit(&mut self) {
        if let EventIds::Listed(ids) = self {
            ids.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        match self {
            EventIds::Listed(ids) => ids.len(),
            EventIds::Hashed(set) => set.len(),
        }
    }
}

/// One block of bytes (8 per id) rather than a sequence of variable-length integers: restoring a
/// checkpoint of millions of ids is then a copy.
impl Serialize for EventIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.len() * 8);
        let mut put = |v: &u64| bytes.extend_from_slice(&v.to_le_bytes());
        match self {
            EventIds::Listed(ids) => ids.iter().for_each(&mut put),
            EventIds::Hashed(set) => set.iter().for_each(&mut put),
        }
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for EventIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EventIds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("8 bytes per event id")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<EventIds, E> {
                if !bytes.len().is_multiple_of(8) {
                    return Err(E::custom("event id block is not a multiple of 8 bytes"));
                }
                let ids = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
                Ok(if bytes.len() / 8 > MAX_LISTED {
                    EventIds::Hashed(Box::new(ids.collect()))
                } else {
                    EventIds::Listed(ids.collect())
                })
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<EventIds, E> {
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_entry_stays_small() {
        assert_eq!(std::mem::size_of::<EventIds>(), 16);
    }

    #[test]
    fn finds_each_duplicate_before_and_after_turning_into_a_set() {
        let mut ids = EventIds::default();
        for round in 0..2 {
            for i in 0..(3 * MAX_LISTED as u64) {
                assert_eq!(ids.insert(id_hash(&format!("e{i}"))), round == 0, "e{i} in round {round}");
            }
        }
        assert!(matches!(ids, EventIds::Hashed(_)));
        assert_eq!(ids.len(), 3 * MAX_LISTED);
    }

    #[test]
    fn survives_a_checkpoint_in_either_form() {
        for n in [0, 1, MAX_LISTED, MAX_LISTED + 1, 500] {
            let mut ids = EventIds::default();
            (0..n).for_each(|i| assert!(ids.insert(i as u64 * 7919)));
            let bytes = postcard::to_allocvec(&ids).expect("serializes");
            let mut back: EventIds = postcard::from_bytes(&bytes).expect("deserializes");
            assert_eq!(back.len(), n);
            assert!((0..n).all(|i| !back.insert(i as u64 * 7919)), "every id still known after n = {n}");
            assert!(back.insert(1));
        }
    }
}
