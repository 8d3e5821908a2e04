//! A member id as the key of its community's member map: one pointer to `[length][bytes]`, where
//! a `Box<str>` takes two words. The map holds one entry per member in buckets kept at most
//! seven-eighths full, so each word saved there is about 13 bytes per member.
//!
//! The length takes one byte below 255 (every valid id: SPEC allows 128 bytes), else a 255 and
//! four more bytes, so any string fits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;

pub struct ThinStr(NonNull<u8>);

// It owns its bytes, like `Box<str>`.
unsafe impl Send for ThinStr {}
unsafe impl Sync for ThinStr {}

const LONG: u8 = u8::MAX;

fn prefix_len(len: usize) -> usize {
    if len < LONG as usize {
        1
    } else {
        5
    }
}

fn layout(len: usize) -> Layout {
    Layout::from_size_align(prefix_len(len) + len, 1).expect("string length overflow")
}

impl ThinStr {
    /// The string's length and where its bytes start.
    fn parts(&self) -> (usize, usize) {
        let p = self.0.as_ptr();
        // SAFETY: the allocation starts with the prefix `From<&str>` wrote.
        unsafe {
            match *p {
                LONG => (u32::from_le_bytes(p.add(1).cast::<[u8; 4]>().read()) as usize, 5),
                short => (short as usize, 1),
            }
        }
    }

    pub fn as_str(&self) -> &str {
        let (len, start) = self.parts();
        // SAFETY: `len` bytes of valid UTF-8 follow the prefix (copied from a `&str`).
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.0.as_ptr().add(start), len)) }
    }
}

impl From<&str> for ThinStr {
    fn from(s: &str) -> Self {
        let len = s.len();
        let long = u32::try_from(len).expect("a member id is at most u32::MAX bytes");
        let layout = layout(len);
        // SAFETY: the layout is at least one byte.
        let Some(p) = NonNull::new(unsafe { alloc::alloc(layout) }) else { alloc::handle_alloc_error(layout) };
        let start = prefix_len(len);
        // SAFETY: `start + len` bytes were just allocated.
        unsafe {
            if start == 1 {
                p.as_ptr().write(len as u8);
            } else {
                p.as_ptr().write(LONG);
                p.as_ptr().add(1).cast::<[u8; 4]>().write(long.to_le_bytes());
            }
            std::ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr().add(start), len);
        }
        ThinStr(p)
    }
}

impl Drop for ThinStr {
    fn drop(&mut self) {
        let (len, _) = self.parts();
        // SAFETY: allocated in `From<&str>` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), layout(len)) }
    }
}

impl Clone for ThinStr {
    fn clone(&self) -> Self {
        ThinStr::from(self.as_str())
    }
}

/// Hashed and compared as the `str` it holds, so the map can be asked with a `&str`.
impl Hash for ThinStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for ThinStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ThinStr {}

impl Borrow<str> for ThinStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ThinStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Serialize for ThinStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ThinStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ThinStr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ThinStr, E> {
                Ok(ThinStr::from(s))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn holds_any_string_and_is_found_by_str() {
        assert_eq!(size_of::<ThinStr>(), 8);
        assert_eq!(size_of::<(ThinStr, [u64; 2])>(), 24);
        let long = "é".repeat(200);
        let cases = ["", "m", "member-0042", &"x".repeat(254), &"y".repeat(255), &long, &"z".repeat(70_000)];
        let mut map = HashMap::new();
        for (i, s) in cases.iter().enumerate() {
            let key = ThinStr::from(*s);
            assert_eq!(key.as_str(), *s);
            assert_eq!(key.clone(), key);
            assert_eq!(postcard::from_bytes::<ThinStr>(&postcard::to_allocvec(&key).unwrap()).unwrap(), key);
            assert_eq!(postcard::to_allocvec(&key).unwrap(), postcard::to_allocvec(&Box::<str>::from(*s)).unwrap());
            map.insert(key, i);
        }
        for (i, s) in cases.iter().enumerate() {
            assert_eq!(map.get(*s), Some(&i), "{:?}", &s[..s.len().min(8)]);
        }
        assert_eq!(map.get("member-0043"), None);
    }
}
