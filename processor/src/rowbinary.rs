//! Rows encoded in ClickHouse's RowBinary format where they are made: on the threads that apply
//! records and flush engines, in parallel, rather than on the task that sends them.
//!
//! Why not the `clickhouse` crate's `Insert<T>`: it serialises rows as they are written into the
//! request, on the one task that drives the flush's inserts. A replay's round is about 2.5
//! million rows (a million archive rows, the rest derived); kept as row structs until then, they
//! cost an allocation per string, a copy of every growing `Vec` into fresh pages, and
//! single-threaded serialisation. Encoded here they are a few 1 MiB chunks, sent as they are
//! (`Client::insert_formatted_with`). The crate's own encoder is the reference the tests compare
//! with, byte for byte (`processor/tests/rowbinary.rs`).

use crate::pieces::{Chunk, Piece};
use bytes::Bytes;
use serde::ser::{self, Serialize};
use std::fmt;

/// A chunk is cut once it holds this much: large enough that per-chunk costs (a compressed block,
/// a send) vanish, small enough that compression works in cache.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// A table's first chunk starts this small and grows: most flushes of a running processor write a
/// few rows a table. Once a chunk has filled, the next ones are allocated whole.
const FIRST_CHUNK_BYTES: usize = 64 << 10;

/// The rows of one table, encoded: column names (from the row type's fields, in order) and the
/// bytes in chunks that each end on a row boundary.
#[derive(Default)]
pub struct EncodedRows {
    columns: Vec<&'static str>,
    chunks: Vec<Chunk>,
    current: Vec<u8>,
    /// Where each row in `current` ends.
    current_ends: Vec<u32>,
    rows: usize,
}

impl EncodedRows {
    /// Appends one row. Row types are structs of integers and strings; anything RowBinary cannot
    /// carry here (maps, enums, chars) is a programming error, caught by the tests of every row
    /// type.
    pub fn push<R: Serialize>(&mut self, row: &R) {
        if self.current.capacity() == 0 {
            let filled_one = !self.chunks.is_empty();
            self.current.reserve(if filled_one { CHUNK_BYTES + CHUNK_BYTES / 8 } else { FIRST_CHUNK_BYTES });
        }
        let columns = (self.rows == 0).then_some(&mut self.columns);
        let mut writer = Writer { buf: &mut self.current, columns, depth: 0 };
        row.serialize(&mut writer).expect("row types hold only integers, strings, options and sequences");
        self.rows += 1;
        self.current_ends.push(u32::try_from(self.current.len()).expect("a chunk is cut at 1 MiB"));
        if self.current.len() >= CHUNK_BYTES {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if !self.current.is_empty() {
            let ends = std::mem::take(&mut self.current_ends).into();
            self.chunks.push(Chunk { bytes: Bytes::from(std::mem::take(&mut self.current)), ends });
        }
    }

    /// Moves `other`'s rows to the end of these (chunks are moved, not copied).
    pub fn append(&mut self, mut other: EncodedRows) {
        if other.rows == 0 {
            return;
        }
        if self.rows == 0 {
            *self = other;
            return;
        }
        debug_assert_eq!(self.columns, other.columns, "rows of one table");
        self.cut();
        other.cut();
        self.chunks.append(&mut other.chunks);
        self.rows += other.rows;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The encoded size of the rows.
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes.len()).sum::<usize>() + self.current.len()
    }

    /// The column names, in the order the rows carry them.
    pub fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// The encoded bytes, in order, in chunks that end on row boundaries.
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.all_chunks().map(|c| c.bytes)
    }

    fn all_chunks(&self) -> impl Iterator<Item = Chunk> + '_ {
        let current = (!self.current.is_empty())
            .then(|| Chunk { bytes: Bytes::copy_from_slice(&self.current), ends: self.current_ends.as_slice().into() });
        self.chunks.iter().cloned().chain(current)
    }

    /// The rows in consecutive pieces of at least `min_bytes` each (the last may be smaller), for
    /// one insert each.
    pub fn pieces(&self, min_bytes: usize) -> Vec<Piece> {
        let mut pieces: Vec<Piece> = Vec::new();
        for chunk in self.all_chunks() {
            match pieces.last_mut() {
                Some(piece) if piece.bytes() < min_bytes => piece.chunks.push(chunk),
                _ => pieces.push(Piece { chunks: vec![chunk] }),
            }
        }
        pieces
    }

    /// `INSERT INTO `table` (`a`, `b`, …) FORMAT RowBinary`, the columns as the row type names
    /// them (the statement the `clickhouse` crate's `Insert` sends without validation).
    pub fn insert_sql(&self, table: &str) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote(c)).collect();
        format!("INSERT INTO {} ({}) FORMAT RowBinary", quote(table), columns.join(","))
    }
}

fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('\\', "\\\\").replace('`', "\\`"))
}

/// What the encoder refuses: a shape RowBinary has no form for here.
#[derive(Debug)]
pub struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowBinary encoding: {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(format!("{what} is not supported")))
}

struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    /// Filled with the row's field names while the first row is encoded.
    columns: Option<&'a mut Vec<&'static str>>,
    /// Nesting of structs: only the row's own fields are columns.
    depth: u32,
}

impl Writer<'_> {
    fn varint(&mut self, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

macro_rules! little_endian {
    ($($method:ident: $t:ty),*) => {
        $(fn $method(self, v: $t) -> Result<(), Unsupported> {
            self.buf.extend_from_slice(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl<'a, 'b> ser::Serializer for &'a mut Writer<'b> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), Unsupported>;
    type SerializeMap = ser::Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), Unsupported>;

    little_endian!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64
    );

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.buf.push(v as u8);
        Ok(())
    }

    fn serialize_char(self, _: char) -> Result<(), Unsupported> {
        unsupported("char")
    }

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.bytes(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        self.bytes(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Unsupported> {
        self.buf.push(1);
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Unsupported> {
        self.buf.push(0);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unsupported> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Unsupported> {
        unsupported("an enum")
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("an enum")
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Unsupported> {
        let Some(len) = len else { return unsupported("a sequence of unknown length") };
        self.varint(len as u64);
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("an enum")
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a map")
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        self.depth += 1;
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("an enum")
    }
}

/// Sequences, tuples and tuple structs: their elements one after the other (a sequence's
/// length was written when it began).
macro_rules! elements_in_order {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for &mut Writer<'_> {
            type Ok = ();
            type Error = Unsupported;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Unsupported> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), Unsupported> {
                Ok(())
            }
        })*
    };
}

elements_in_order!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Unsupported> {
        if self.depth == 1 {
            if let Some(columns) = self.columns.as_mut() {
                columns.push(key);
            }
        }
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.depth -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Inner {
        a: u8,
    }

    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: String,
        n: i64,
        small: u16,
        maybe: Option<u32>,
        list: Vec<u8>,
        inner: Inner,
    }

    fn row(id: &str, n: i64) -> Row<'_> {
        Row { id, kind: "x".into(), n, small: 300, maybe: None, list: vec![1, 2], inner: Inner { a: 7 } }
    }

    #[test]
    fn encodes_rowbinary_and_names_the_rows_fields_as_columns() {
        let mut rows = EncodedRows::default();
        rows.push(&row("ab", -2));
        let bytes: Vec<u8> = rows.chunks().flat_map(|c| c.to_vec()).collect();
        let mut want = vec![2, b'a', b'b', 1, b'x'];
        want.extend_from_slice(&(-2i64).to_le_bytes());
        want.extend_from_slice(&300u16.to_le_bytes());
        want.extend_from_slice(&[1, 2, 1, 2, 7]);
        assert_eq!(bytes, want);
        assert_eq!(
            rows.insert_sql("t"),
            "INSERT INTO `t` (`id`,`type`,`n`,`small`,`maybe`,`list`,`inner`) FORMAT RowBinary"
        );
    }

    #[test]
    fn long_strings_carry_a_varint_length() {
        let long = "y".repeat(300);
        let mut rows = EncodedRows::default();
        rows.push(&row(&long, 0));
        let bytes: Vec<u8> = rows.chunks().flat_map(|c| c.to_vec()).collect();
        assert_eq!(&bytes[..3], &[0xac, 0x02, b'y']);
        assert_eq!(bytes.len(), 2 + 300 + 2 + 8 + 2 + 1 + 3 + 1);
    }

    #[test]
    fn chunks_end_on_row_boundaries_and_append_keeps_the_order() {
        let ids: Vec<String> = (0..40_000).map(|i| format!("member-{i:08}")).collect();
        let mut whole = EncodedRows::default();
        let (mut first, mut second) = (EncodedRows::default(), EncodedRows::default());
        for (i, id) in ids.iter().enumerate() {
            whole.push(&row(id, i as i64));
            if i < 25_000 { &mut first } else { &mut second }.push(&row(id, i as i64));
        }
        assert!(!whole.chunks.is_empty(), "more than a chunk's worth was cut");
        let single = |r: &EncodedRows| r.chunks().flat_map(|c| c.to_vec()).collect::<Vec<u8>>();
        let one_row = single(&{
            let mut r = EncodedRows::default();
            r.push(&row(&ids[0], 0));
            r
        });
        for chunk in whole.chunks() {
            assert_eq!(chunk.len() % one_row.len(), 0, "rows of one size, so a boundary is a multiple");
        }
        first.append(second);
        assert_eq!(first.len(), 40_000);
        assert_eq!(single(&first), single(&whole));
        assert_eq!(first.insert_sql("t"), whole.insert_sql("t"));
    }

    #[test]
    fn pieces_hold_every_row_once_in_order() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("member-{i:08}")).collect();
        let mut rows = EncodedRows::default();
        for (i, id) in ids.iter().enumerate() {
            rows.push(&row(id, i as i64));
        }
        let whole: Vec<u8> = rows.chunks().flat_map(|c| c.to_vec()).collect();
        for min_bytes in [0, 1, CHUNK_BYTES, 2 * CHUNK_BYTES, usize::MAX] {
            let pieces = rows.pieces(min_bytes);
            assert_eq!(pieces.iter().map(Piece::rows).sum::<usize>(), 100_000, "{min_bytes}");
            for piece in &pieces[..pieces.len() - 1] {
                assert!(piece.bytes() >= min_bytes);
            }
            if min_bytes <= 1 {
                assert_eq!(pieces.len(), rows.chunks().count(), "a piece per chunk");
            }
            if min_bytes == usize::MAX {
                assert_eq!(pieces.len(), 1);
            }
            let joined: Vec<u8> = pieces.into_iter().flat_map(|p| p.into_bytes()).flat_map(|c| c.to_vec()).collect();
            assert_eq!(joined, whole, "{min_bytes}");
        }
        assert!(EncodedRows::default().pieces(1).is_empty());
    }

    #[test]
    fn refuses_what_rowbinary_cannot_carry_here() {
        let mut buf = Vec::new();
        let mut w = Writer { buf: &mut buf, columns: None, depth: 0 };
        let map: std::collections::HashMap<u8, u8> = [(1, 2)].into();
        assert!(map.serialize(&mut w).unwrap_err().to_string().contains("a map"));
        assert!('c'.serialize(&mut w).unwrap_err().to_string().contains("char"));
    }
}
