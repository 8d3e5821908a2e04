//! A strict reader of JSON text for the typed decoder (`view`): strings borrowed as they stand,
//! numbers handed over as their text, nested values checked and skipped.
//!
//! It answers `None` to whatever it is not sure of: an escape in a string, nesting deeper than
//! `MAX_DEPTH`, any syntax error. Its caller then leaves the record to `parse_event`, so the
//! reader never has to know more JSON than the canonical topic form uses; it only has to be right
//! about what it accepts. `serde_json` with a derived struct did the same job at about twice
//! the cost (docs/performance.md).

/// Deeper than this is left to `serde_json` (which refuses beyond 128).
const MAX_DEPTH: usize = 64;

/// One JSON value as the typed decoder looks at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A string without escapes, without its quotes.
    Str(&'a str),
    /// A number's text, checked against JSON's grammar.
    Number(&'a str),
    /// An array or an object, checked and skipped.
    Nested,
}

pub(crate) struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner { text, at: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// The text between two positions this scanner stood at (both on ASCII delimiters, so on
    /// character boundaries).
    pub(crate) fn between(&self, from: usize, to: usize) -> &'a str {
        &self.text[from..to]
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// The next byte that is not whitespace, left in place.
    pub(crate) fn next_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
        self.peek()
    }

    /// Consumes `c` after any whitespace.
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (self.next_token()? == c).then(|| self.at += 1)
    }

    /// True when only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.next_token().is_none()
    }

    /// A string without escapes or control characters (both would need decoding).
    pub(crate) fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = special_at(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // SAFETY: `start` follows a `"` and `start + len` holds one: ASCII bytes, so both ends are
        // character boundaries (a checked slice tested both again, a tenth of this function).
        Some(unsafe { self.text.get_unchecked(start..start + len) })
    }

    pub(crate) fn value(&mut self) -> Option<Scalar<'a>> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Option<Scalar<'a>> {
        match self.next_token()? {
            b'"' => self.string().map(Scalar::Str),
            b'n' => self.literal("null").map(|_| Scalar::Null),
            b't' => self.literal("true").map(|_| Scalar::Bool(true)),
            b'f' => self.literal("false").map(|_| Scalar::Bool(false)),
            b'-' | b'0'..=b'9' => self.number().map(Scalar::Number),
            b'[' => self.array(depth + 1).map(|_| Scalar::Nested),
            b'{' => self.object(depth + 1).map(|_| Scalar::Nested),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; what follows is the caller's to judge.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(&self.text[start..self.at])
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.next_token()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.value_at(depth)?;
            match self.next_token()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.next_token()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.string()?;
            self.eat(b':')?;
            self.value_at(depth)?;
            if !self.object_goes_on()? {
                return Some(());
            }
        }
    }

    /// After a member of an object: `true` past a comma, `false` past the closing brace.
    pub(crate) fn object_goes_on(&mut self) -> Option<bool> {
        match self.next_token()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            b'}' => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }
}

/// The index of the first quote, backslash or control character: sixteen bytes at a time (SSE2,
/// which every x86-64 processor has), then eight (`special_in_words`), as the strings here are
/// mostly ids and timestamps of 10 to 40 bytes (half of the decoder's instructions went to
/// testing them a byte at a time).
#[cfg(target_arch = "x86_64")]
fn special_at(bytes: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut i = 0;
    while i + 16 <= bytes.len() {
        // SAFETY: SSE2 is part of x86-64; the load reads bytes[i..i + 16], inside the slice.
        let hits = unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast::<__m128i>());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Below 0x20 exactly where max(v, 0x1f) is 0x1f (unsigned).
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize);
        }
        i += 16;
    }
    special_in_words(&bytes[i..]).map(|j| i + j)
}

#[cfg(not(target_arch = "x86_64"))]
fn special_at(bytes: &[u8]) -> Option<usize> {
    special_in_words(bytes)
}

/// `special_at`, eight bytes at a time in a `u64`.
fn special_in_words(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero, or below `n`: the classic bit tricks, exact for the first such
    // byte (a borrow only runs towards higher bytes, i.e. later ones in little-endian order).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("eight bytes"));
        let hit = zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below(w, 0x20);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|j| i + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Option<Scalar<'_>> {
        let mut s = Scanner::new(text);
        let v = s.value()?;
        s.at_end().then_some(v)
    }

    #[test]
    fn accepts_what_json_accepts() {
        assert_eq!(whole(" \"abc\" "), Some(Scalar::Str("abc")));
        assert_eq!(whole("\"été\""), Some(Scalar::Str("été")));
        assert_eq!(whole("-0.5e+3"), Some(Scalar::Number("-0.5e+3")));
        assert_eq!(whole("0"), Some(Scalar::Number("0")));
        assert_eq!(whole("null"), Some(Scalar::Null));
        assert_eq!(whole("false"), Some(Scalar::Bool(false)));
        assert_eq!(whole("[1, {\"a\": [true, null]}, \"x\"]"), Some(Scalar::Nested));
        assert_eq!(whole("{ }"), Some(Scalar::Nested));
    }

    #[test]
    fn refuses_bad_syntax_and_what_it_does_not_decode() {
        for text in [
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "nul",
            "tru",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{a:1}",
            "\"a\\\"b\"",
            "\"\\ud800\"",
            "\"tab\there\"",
            "\"open",
            "[",
            "{\"a\":",
            "'a'",
            "NaN",
        ] {
            assert_eq!(whole(text), None, "{text}");
        }
    }

    #[test]
    fn special_bytes_are_found_at_every_position_among_any_others() {
        let slow = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        // Every byte value, before and after each special one, at every offset of two 16-byte
        // blocks and the 8-byte words and bytes after them, in both scanners.
        for special in [b'"', b'\\', 0x00, 0x1f, 0x0a] {
            for other in 0..=255u8 {
                for at in 0..44 {
                    let mut b = vec![other; 48];
                    b[at] = special;
                    assert_eq!(special_at(&b), slow(&b), "{special} at {at} among {other}");
                    assert_eq!(special_in_words(&b), slow(&b), "{special} at {at} among {other}");
                    b.truncate(at + 1);
                    assert_eq!(special_at(&b), slow(&b), "{special} last at {at} among {other}");
                    assert_eq!(special_in_words(&b), slow(&b), "{special} last at {at} among {other}");
                }
            }
        }
        let none = b"no special byte here, \xc3\xa9 included, and more than sixteen bytes";
        assert_eq!(special_at(none), None);
        assert_eq!(special_in_words(none), None);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_left_to_serde() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(whole(&ok), Some(Scalar::Nested));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(whole(&deep), None);
    }
}
