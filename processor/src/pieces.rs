//! A table's encoded rows cut into pieces, an insert each, and a piece put in the order of the
//! table's sorting key as it is sent (the order is found first; the rows are copied into it a
//! chunk at a time, see `Sorted`).
//!
//! Why sort here: ClickHouse sorts every block it inserts into a MergeTree by the table's key, on
//! the one thread that handles the insert, unless the block arrives sorted (it checks first, 18.16
//! included; `system.events` counts such blocks as `MergeTreeDataWriterBlocksAlreadySorted`). A
//! replay archives a million rows a round, and that sort was over a third of ClickHouse's CPU.
//! Here the sort runs on the processor's threads, over the rows' key bytes in place, and the
//! pieces of a round are sorted in parallel.

use crate::rowbinary::CHUNK_BYTES;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Encoded rows cut from an `EncodedRows`: the bytes, and where each row ends in them.
#[derive(Clone)]
pub(crate) struct Chunk {
    pub(crate) bytes: Bytes,
    pub(crate) ends: Arc<[u32]>,
}

impl Chunk {
    /// Where each row starts and ends in `bytes`.
    fn spans(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let span = (start, end);
            start = end;
            span
        })
    }

    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        self.spans().map(|(start, end)| &self.bytes[start as usize..end as usize])
    }
}

/// Consecutive rows of one table, for one insert.
#[derive(Clone)]
pub struct Piece {
    pub(crate) chunks: Vec<Chunk>,
}

impl Piece {
    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.ends.len()).sum()
    }

    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes.len()).sum()
    }

    /// The rows as they were pushed.
    pub fn into_bytes(self) -> Vec<Bytes> {
        self.chunks.into_iter().map(|c| c.bytes).collect()
    }

    /// The rows ordered by their first two columns, which are strings: byte by byte, a string
    /// before its extensions, as ClickHouse orders `String`. Rows with equal keys keep their
    /// order, as in ClickHouse's own (stable) sort. A piece already in order is returned as it
    /// is, without a copy; so is one whose rows do not begin with two strings.
    pub fn sorted_by_first_two_strings(self) -> Sorted {
        match self.order_by_first_two_strings() {
            Some(order) => self.reordered(order),
            None => Sorted::from(self),
        }
    }

    /// The rows ordered by the leading columns `key` describes, compared as ClickHouse compares
    /// them (strings byte by byte, unsigned integers by value). Rows with equal keys keep their
    /// order. A piece already in order is returned as it is; so is one whose rows do not parse
    /// as `key` says, or whose key does not fit the 128 bits it is packed into (below).
    pub fn sorted_by_key(self, key: &[KeyColumn]) -> Sorted {
        match self.order_by_key(key) {
            Some(order) => self.reordered(order),
            None => Sorted::from(self),
        }
    }

    /// The rows in `order` (indexes), to be copied a chunk at a time as they are sent.
    fn reordered(self, order: Vec<u32>) -> Sorted {
        let mut spans = Vec::with_capacity(order.len());
        for (c, chunk) in self.chunks.iter().enumerate() {
            spans.extend(chunk.spans().map(|(start, end)| Span { chunk: c as u32, start, end }));
        }
        Sorted(SortedRows::Reordered {
            chunks: self.chunks.into_iter().map(|c| c.bytes).collect(),
            spans,
            order: order.into_iter(),
        })
    }

    /// The rows' indexes in key order; `None` when they are in order already, or do not begin
    /// with two strings.
    ///
    /// Comparing keys where they lie in the rows is a cache miss or two per comparison (the
    /// first version of this sort took 0.5 µs a row). So each row gets a 16-byte sort entry: the
    /// rank of its first string among the piece's distinct ones (a piece holds few: the
    /// communities), and eight bytes of its second string taken after the prefix every second
    /// string of that first one shares (an event id often starts with its community's name).
    /// Only entries equal in both compare the whole strings.
    fn order_by_first_two_strings(&self) -> Option<Vec<u32>> {
        let n = self.rows();
        let mut firsts = Dictionary::default();
        // Per first string (by id): a second string seen with it, and the length of the prefix
        // every second string seen with it shares.
        let mut shared: Vec<(&[u8], usize)> = Vec::new();
        let (mut of_row, mut seconds) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for row in self.chunks.iter().flat_map(Chunk::rows) {
            let [first, second] = leading_strings::<2>(row)?;
            let id = firsts.id(first);
            if id as usize == shared.len() {
                shared.push((second, second.len()));
            }
            let (sample, len) = &mut shared[id as usize];
            *len = (*len).min(shared_prefix(sample, second));
            of_row.push(id);
            seconds.push(second);
        }
        let rank = firsts.ranks();
        let mut entries: Vec<(u64, u64, u32)> = of_row
            .iter()
            .zip(&seconds)
            .enumerate()
            .map(|(i, (&id, second))| (rank[id as usize], eight_bytes(&second[shared[id as usize].1..]), i as u32))
            .collect();
        // Equal ranks and prefixes fall back to the whole strings, then to the rows' order.
        let compare = |a: &(u64, u64, u32), b: &(u64, u64, u32)| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| seconds[a.2 as usize].cmp(seconds[b.2 as usize]))
                .then(a.2.cmp(&b.2))
        };
        if entries.is_sorted_by(|a, b| compare(a, b).is_le()) {
            return None;
        }
        entries.sort_unstable_by(compare);
        Some(entries.into_iter().map(|e| e.2).collect())
    }

    /// The rows' indexes in the order of `key`; `None` when they are in order already, do not
    /// parse, or need more than 128 bits.
    ///
    /// The derived tables' keys are low-cardinality strings (community, group, granularity,
    /// mode; a member id at most) and small integers. Each string is replaced by its rank among
    /// the piece's distinct values of that column, each column takes the bits its largest rank
    /// or value needs, and the row's key is those packed into one `u128`, high bits first: a
    /// sort of 16-byte numbers, compared without touching the rows.
    fn order_by_key(&self, key: &[KeyColumn]) -> Option<Vec<u32>> {
        let n = self.rows();
        let mut dictionaries: Vec<Dictionary> = key.iter().map(|_| Dictionary::default()).collect();
        // Per row, per column: the value, or the string's id in its column's dictionary.
        let mut values: Vec<u64> = Vec::with_capacity(n * key.len());
        for row in self.chunks.iter().flat_map(Chunk::rows) {
            let mut rest = row;
            for (column, dictionary) in key.iter().zip(&mut dictionaries) {
                let (value, after) = match column {
                    KeyColumn::String => {
                        let (value, after) = string(rest)?;
                        (u64::from(dictionary.id(value)), after)
                    }
                    KeyColumn::UInt16 => (u64::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?)), &rest[2..]),
                    KeyColumn::UInt32 => (u64::from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)), &rest[4..]),
                };
                values.push(value);
                rest = after;
            }
        }
        let ranks: Vec<Vec<u64>> = dictionaries.iter().map(Dictionary::ranks).collect();
        let mut widths = vec![0u32; key.len()];
        for row in values.chunks_exact_mut(key.len()) {
            for (j, value) in row.iter_mut().enumerate() {
                if let KeyColumn::String = key[j] {
                    *value = ranks[j][*value as usize];
                }
                widths[j] = widths[j].max(u64::BITS - value.leading_zeros());
            }
        }
        if widths.iter().sum::<u32>() > u128::BITS {
            return None;
        }
        let mut entries: Vec<(u128, u32)> = values
            .chunks_exact(key.len())
            .enumerate()
            .map(|(i, row)| {
                let packed = row.iter().zip(&widths).fold(0u128, |acc, (&v, &w)| (acc << w) | u128::from(v));
                (packed, i as u32)
            })
            .collect();
        if entries.is_sorted() {
            return None;
        }
        // Equal keys keep the rows' order: the index is the tie-break.
        entries.sort_unstable();
        Some(entries.into_iter().map(|e| e.1).collect())
    }
}

/// Where one row lies in a piece's chunks.
#[derive(Clone, Copy)]
struct Span {
    chunk: u32,
    start: u32,
    end: u32,
}

/// A piece's rows in the order they are sent, a chunk (about `CHUNK_BYTES`, cut on row
/// boundaries) at a time.
///
/// A reordered piece is copied one chunk at a time as the insert takes it, not whole before
/// it: the insert compresses each chunk and drops it, so the copy is a buffer or two the
/// allocator hands back at once, instead of a second copy of every row of the round held
/// until the round is sent (fresh memory at every replay's first rounds, docs/performance.md).
pub struct Sorted(SortedRows);

enum SortedRows {
    /// Already in order, or not sortable: the piece's own chunks.
    AsPushed(std::vec::IntoIter<Bytes>),
    /// The rows to copy: where each lies, and the order (indexes into `spans`) to send them in.
    Reordered { chunks: Vec<Bytes>, spans: Vec<Span>, order: std::vec::IntoIter<u32> },
}

/// The rows as they were pushed.
impl From<Piece> for Sorted {
    fn from(piece: Piece) -> Sorted {
        Sorted(SortedRows::AsPushed(piece.into_bytes().into_iter()))
    }
}

impl Iterator for Sorted {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        match &mut self.0 {
            SortedRows::AsPushed(chunks) => chunks.next(),
            SortedRows::Reordered { chunks, spans, order } => {
                let mut row = Some(order.next()?);
                let mut out = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 8);
                while let Some(i) = row {
                    let Span { chunk, start, end } = spans[i as usize];
                    out.extend_from_slice(&chunks[chunk as usize][start as usize..end as usize]);
                    if out.len() >= CHUNK_BYTES {
                        break;
                    }
                    row = order.next();
                }
                Some(Bytes::from(out))
            }
        }
    }
}

/// A sort key's column, as RowBinary encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    String,
    /// Also `Date` (days since 1970-01-01).
    UInt16,
    UInt32,
}

/// The distinct strings of one key column in a piece, numbered as first seen.
#[derive(Default)]
struct Dictionary<'a> {
    ids: HashMap<&'a [u8], u32, foldhash::fast::RandomState>,
    values: Vec<&'a [u8]>,
    /// Consecutive rows mostly share a community, a group, a granularity.
    last: Option<(&'a [u8], u32)>,
}

impl<'a> Dictionary<'a> {
    fn id(&mut self, value: &'a [u8]) -> u32 {
        if let Some((last, id)) = self.last {
            if last == value {
                return id;
            }
        }
        let values = &mut self.values;
        let id = *self.ids.entry(value).or_insert_with(|| {
            values.push(value);
            (values.len() - 1) as u32
        });
        self.last = Some((value, id));
        id
    }

    /// Each id's rank in byte order.
    fn ranks(&self) -> Vec<u64> {
        let mut by_value: Vec<u32> = (0..self.values.len() as u32).collect();
        by_value.sort_unstable_by_key(|&id| self.values[id as usize]);
        let mut ranks = vec![0; self.values.len()];
        for (rank, id) in by_value.into_iter().enumerate() {
            ranks[id as usize] = rank as u64;
        }
        ranks
    }
}

fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The first eight bytes, zero-padded, as a number that orders as the bytes do. Two strings whose
/// numbers differ order as their numbers; equal numbers say nothing (`"a"` and `"a\0"`).
fn eight_bytes(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s[..n]);
    u64::from_be_bytes(b)
}

/// The first `K` columns of an encoded row, read as RowBinary strings (a LEB128 length, then
/// the bytes); `None` where the row is too short for that.
fn leading_strings<const K: usize>(mut row: &[u8]) -> Option<[&[u8]; K]> {
    let mut key: [&[u8]; K] = [&[]; K];
    for column in &mut key {
        (*column, row) = string(row)?;
    }
    Some(key)
}

/// The RowBinary string at the start of `bytes` (a LEB128 length, then the bytes), and what
/// follows it.
fn string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = varint(bytes)?;
    Some((rest.get(..len)?, &rest[len..]))
}

fn varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut n: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(n).ok()?, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rowbinary::EncodedRows;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Row {
        community_id: String,
        event_id: String,
        seq: u64,
        props: String,
    }

    fn encoded<'a, R: Serialize + 'a>(rows: impl IntoIterator<Item = &'a R>) -> EncodedRows {
        let mut out = EncodedRows::default();
        for r in rows {
            out.push(r);
        }
        out
    }

    fn joined(chunks: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
        chunks.into_iter().flat_map(|c| c.to_vec()).collect()
    }

    /// Keys that share prefixes, are prefixes of each other, run past a one-byte length, hold
    /// UTF-8 beyond ASCII, and repeat (with a different `seq`, to see that the sort is stable).
    fn shuffled_rows(n: u64) -> Vec<Row> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let communities = ["c", "c-1", "c-10", "Ü", ""];
        (0..n)
            .map(|seq| {
                let r = next();
                let event_id = match r % 5 {
                    0 => format!("{}", r % 1000),
                    1 => format!("e-{}", r % 97),
                    2 => "x".repeat((r % 300) as usize),
                    3 => format!("é{}", r % 13),
                    _ => String::new(),
                };
                Row {
                    community_id: communities[(r >> 8) as usize % communities.len()].to_owned(),
                    event_id,
                    seq,
                    props: "p".repeat((r >> 16) as usize % 200),
                }
            })
            .collect()
    }

    #[test]
    fn sorts_a_piece_as_a_stable_sort_of_its_string_keys() {
        let rows = shuffled_rows(60_000);
        let mut reference: Vec<&Row> = rows.iter().collect();
        reference.sort_by(|a, b| (&a.community_id, &a.event_id).cmp(&(&b.community_id, &b.event_id)));
        let want: Vec<u8> = encoded(reference).chunks().flat_map(|c| c.to_vec()).collect();

        let pieces = encoded(&rows).pieces(usize::MAX);
        assert_eq!(pieces.len(), 1);
        let sorted: Vec<Bytes> = pieces.into_iter().next().unwrap().sorted_by_first_two_strings().collect();
        assert!(sorted.len() > 1, "several chunks");
        assert_eq!(joined(sorted.clone()), want);
        for chunk in &sorted[..sorted.len() - 1] {
            assert!(chunk.len() >= CHUNK_BYTES && chunk.len() < CHUNK_BYTES + 1024, "{}", chunk.len());
        }
    }

    #[test]
    fn a_sorted_piece_is_sent_as_it_is() {
        let mut rows = shuffled_rows(20_000);
        rows.sort_by(|a, b| (&a.community_id, &a.event_id).cmp(&(&b.community_id, &b.event_id)));
        let piece = encoded(&rows).pieces(usize::MAX).pop().unwrap();
        let before: Vec<*const u8> = piece.chunks.iter().map(|c| c.bytes.as_ptr()).collect();
        let after: Vec<*const u8> = piece.sorted_by_first_two_strings().map(|c| c.as_ptr()).collect();
        assert_eq!(after, before, "the same chunks, not a copy");
    }

    #[test]
    fn each_piece_is_sorted_on_its_own() {
        let rows = shuffled_rows(40_000);
        let pieces = encoded(&rows).pieces(2 * CHUNK_BYTES);
        assert!(pieces.len() > 1);
        let mut from = 0;
        for piece in pieces {
            let n = piece.rows();
            let mut reference: Vec<&Row> = rows[from..from + n].iter().collect();
            reference.sort_by(|a, b| (&a.community_id, &a.event_id).cmp(&(&b.community_id, &b.event_id)));
            let want: Vec<u8> = encoded(reference).chunks().flat_map(|c| c.to_vec()).collect();
            assert_eq!(joined(piece.sorted_by_first_two_strings()), want);
            from += n;
        }
        assert_eq!(from, rows.len());
    }

    #[test]
    fn rows_that_do_not_begin_with_the_strings_are_left_as_they_are() {
        #[derive(Serialize)]
        struct Short {
            a: u8,
        }
        let mut rows = EncodedRows::default();
        for a in [0x05, 0x01, 0x03] {
            rows.push(&Short { a });
        }
        let piece = rows.pieces(usize::MAX).pop().unwrap();
        assert_eq!(joined(piece.sorted_by_first_two_strings()), vec![5, 1, 3]);
    }

    #[derive(Serialize, Clone)]
    struct Derived {
        community_id: String,
        group_id: String,
        cohort: u16,
        offset: u32,
        value: u64,
    }

    const DERIVED_KEY: [KeyColumn; 4] = [KeyColumn::String, KeyColumn::String, KeyColumn::UInt16, KeyColumn::UInt32];

    fn derived_rows(n: u64) -> Vec<Derived> {
        let groups = ["", "g1", "g10", "g2", "é"];
        shuffled_rows(n)
            .into_iter()
            .map(|r| Derived {
                community_id: r.community_id,
                group_id: groups[(r.seq * 7 + r.props.len() as u64) as usize % groups.len()].to_owned(),
                cohort: (r.props.len() as u16).wrapping_mul(331),
                offset: (r.event_id.len() as u32) << (r.seq % 20),
                value: r.seq,
            })
            .collect()
    }

    fn key_order(a: &Derived, b: &Derived) -> std::cmp::Ordering {
        (&a.community_id, &a.group_id, a.cohort, a.offset).cmp(&(&b.community_id, &b.group_id, b.cohort, b.offset))
    }

    #[test]
    fn sorts_a_piece_by_a_key_of_strings_and_integers_as_a_stable_sort() {
        let rows = derived_rows(50_000);
        let mut reference: Vec<&Derived> = rows.iter().collect();
        reference.sort_by(|a, b| key_order(a, b));
        let want: Vec<u8> = encoded(reference).chunks().flat_map(|c| c.to_vec()).collect();
        let piece = encoded(&rows).pieces(usize::MAX).pop().unwrap();
        assert_eq!(joined(piece.sorted_by_key(&DERIVED_KEY)), want);
    }

    #[test]
    fn a_piece_in_key_order_or_with_a_key_too_wide_is_sent_as_it_is() {
        // Each column needs all of its 32 bits: four fit, five do not.
        let mut wide: Vec<[u32; 5]> = (0..100u32).map(|i| [u32::MAX - i, 1 << 31, 1 << 31, 1 << 31, 1 << 31]).collect();
        let piece = encoded(&wide).pieces(usize::MAX).pop().unwrap();
        let before = joined(piece.clone().into_bytes());
        assert!(joined(piece.clone().sorted_by_key(&[KeyColumn::UInt32; 5])) == before, "over 128 bits: as it is");
        wide.reverse();
        let want = joined(encoded(&wide).pieces(usize::MAX).pop().unwrap().into_bytes());
        assert!(joined(piece.sorted_by_key(&[KeyColumn::UInt32; 4])) == want, "128 bits: sorted");
        let mut rows = derived_rows(5_000);
        rows.sort_by(key_order);
        let piece = encoded(&rows).pieces(usize::MAX).pop().unwrap();
        let before: Vec<*const u8> = piece.chunks.iter().map(|c| c.bytes.as_ptr()).collect();
        let after: Vec<*const u8> = piece.sorted_by_key(&DERIVED_KEY).map(|c| c.as_ptr()).collect();
        assert_eq!(after, before, "the same chunks, not a copy");
    }

    #[test]
    fn reads_leb128_lengths() {
        assert_eq!(varint(&[0x05, 9]), Some((5, &[9][..])));
        assert_eq!(varint(&[0xac, 0x02]), Some((300, &[][..])));
        assert_eq!(varint(&[0x80]), None);
        assert_eq!(leading_strings::<2>(&[1, b'a', 0, 7]), Some([&b"a"[..], &b""[..]]));
        assert_eq!(leading_strings::<2>(&[1, b'a', 3, b'b']), None);
    }
}
