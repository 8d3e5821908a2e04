//! The event ids a member has counted, as 64-bit hashes of `event_id` (xxh3).
//!
//! Duplicates are found per member rather than in one set per community: the member's ids sit
//! next to its history, so a lookup touches memory the event needs anyway, and a few ids in a
//! list cost 8 bytes each where a community-wide hash set cost about 27. Within one member, two
//! distinct ids share a 64-bit hash with a chance of about n²/2⁶⁵ (below 10⁻⁸ at a million events
//! for one member). An id reused for another member is not a duplicate here, which the partitioning
//! by member already implied (docs/design.md).

use crate::thin_list::ThinList;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Up to this many ids a member's list is scanned as it is. Beyond, it is kept sorted, with an
/// unsorted tail of recent ids, so that a member with a huge history (a bot, a very active
/// operator) does not make each lookup a long scan.
const MAX_LISTED: usize = 32;

/// The tail's longest length for `sorted` sorted ids: a lookup scans the tail and a merge moves
/// every id, so both stay within about `√n` steps per id however long the list grows.
fn max_tail(sorted: usize) -> usize {
    sorted.isqrt().max(MAX_LISTED)
}

/// One thin list (a pointer: a member's entry in the community's map stays small). Up to
/// `MAX_LISTED` ids it holds just the ids; beyond, its first slot is the number of sorted ids
/// that follow, then the tail. Eight bytes an id either way, where the hash set it replaces took
/// about fourteen.
#[derive(Debug, Clone, Default)]
pub struct EventIds(ThinList<u64>);

pub fn id_hash(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

impl EventIds {
    /// False when the id was already there.
    pub fn insert(&mut self, hash: u64) -> bool {
        let ids = &mut self.0;
        if ids.len() <= MAX_LISTED {
            if ids.contains(&hash) {
                return false;
            }
            if ids.len() < MAX_LISTED {
                ids.push(hash);
            } else {
                *self = EventIds::sorted(ids.iter().copied().chain([hash]).collect());
            }
            return true;
        }
        let sorted = ids[0] as usize;
        let (head, tail) = ids[1..].split_at(sorted);
        if head.binary_search(&hash).is_ok() || tail.contains(&hash) {
            return false;
        }
        let tail_len = tail.len() + 1;
        ids.push(hash);
        if tail_len > max_tail(sorted) {
            self.merge_tail();
        }
        true
    }

    /// The long form of `ids` (more than `MAX_LISTED` of them, distinct).
    fn sorted(mut ids: Vec<u64>) -> Self {
        ids.sort_unstable();
        let mut list = ThinList::with_capacity(ids.len() + 1);
        list.push(ids.len() as u64);
        list.extend(ids);
        EventIds(list)
    }

    /// Sorts the tail into the sorted ids, in place, merging from the back.
    fn merge_tail(&mut self) {
        let ids = &mut self.0;
        let sorted = ids[0] as usize;
        let mut tail = ids[1 + sorted..].to_vec();
        tail.sort_unstable();
        // `ids[1..=i]` are the sorted ids not yet moved; `ids[k..]` is done.
        let (mut i, mut j, mut k) = (sorted, tail.len(), ids.len());
        while j > 0 {
            k -= 1;
            if i > 0 && ids[i] > tail[j - 1] {
                ids[k] = ids[i];
                i -= 1;
            } else {
                ids[k] = tail[j - 1];
                j -= 1;
            }
        }
        ids[0] = (ids.len() - 1) as u64;
    }

    /// Gives back spare slots (at a flush), with the tail sorted in first.
    pub fn shrink_to_fit(&mut self) {
        if self.0.len() > MAX_LISTED && self.0.len() > 1 + self.0[0] as usize {
            self.merge_tail();
        }
        self.0.shrink_to_fit();
    }

    fn ids(&self) -> &[u64] {
        if self.0.len() > MAX_LISTED {
            &self.0[1..]
        } else {
            &self.0
        }
    }
}

/// One block of bytes (8 per id) rather than a sequence of variable-length integers: restoring a
/// checkpoint of millions of ids is then a copy.
impl Serialize for EventIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.ids().iter().flat_map(|v| v.to_le_bytes()).collect();
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
                    let mut ids: Vec<u64> = ids.collect();
                    ids.sort_unstable();
                    ids.dedup();
                    if ids.len() > MAX_LISTED {
                        EventIds::sorted(ids)
                    } else {
                        EventIds(ids.into_iter().collect())
                    }
                } else {
                    EventIds(ids.collect())
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
        assert_eq!(std::mem::size_of::<EventIds>(), 8);
    }

    #[test]
    fn finds_each_duplicate_before_and_after_turning_into_a_set() {
        let mut ids = EventIds::default();
        for round in 0..2 {
            for i in 0..(3 * MAX_LISTED as u64) {
                assert_eq!(ids.insert(id_hash(&format!("e{i}"))), round == 0, "e{i} in round {round}");
            }
        }
        assert_eq!(ids.ids().len(), 3 * MAX_LISTED);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Against a hash set, through both forms, merges, flushes and checkpoints.
        #[test]
        fn answers_as_a_set_would(
            ops in proptest::collection::vec((0u64..3000, 0u8..100), 0..6000)
        ) {
            let mut ids = EventIds::default();
            let mut model = std::collections::HashSet::new();
            for (id, action) in ops {
                match action {
                    0 => ids.shrink_to_fit(),
                    1 => ids = postcard::from_bytes(&postcard::to_allocvec(&ids).unwrap()).unwrap(),
                    _ => proptest::prop_assert_eq!(ids.insert(id), model.insert(id), "id {}", id),
                }
                proptest::prop_assert_eq!(ids.ids().len(), model.len());
            }
            let mut all = ids.ids().to_vec();
            all.sort_unstable();
            let mut expected: Vec<u64> = model.into_iter().collect();
            expected.sort_unstable();
            proptest::prop_assert_eq!(all, expected);
        }
    }

    #[test]
    fn survives_a_checkpoint_in_either_form() {
        for n in [0, 1, MAX_LISTED, MAX_LISTED + 1, 500] {
            let mut ids = EventIds::default();
            (0..n).for_each(|i| assert!(ids.insert(i as u64 * 7919)));
            let bytes = postcard::to_allocvec(&ids).expect("serializes");
            let mut back: EventIds = postcard::from_bytes(&bytes).expect("deserializes");
            assert_eq!(back.ids().len(), n);
            assert!((0..n).all(|i| !back.insert(i as u64 * 7919)), "every id still known after n = {n}");
            assert!(back.insert(1));
        }
    }
}
