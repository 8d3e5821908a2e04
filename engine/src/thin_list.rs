//! The list type of a member's state: one pointer, with the length and capacity as `u32`s at the
//! start of the allocation (8 bytes), and no allocation at all while empty.
//!
//! A member has about five short lists (its event ids, its groups, and per group its joins and
//! stamps, sometimes leaves or conversions), so the list header is paid millions of times:
//! `Vec`'s three words cost 24 bytes each, `thin_vec::ThinVec`'s header 16. A list's first push
//! allocates one slot (most lists hold one item: a join, a group), its second four, and it
//! doubles from there: each reallocation costs more than the spare slots, which the engine gives
//! back at every flush (`shrink_to_fit`).
//! Lists hold fewer than 2³¹ items; more panics, as `Vec` does past `isize::MAX` bytes. The
//! capacity's top bit is a mark for the owner's use (`set_mark`): the engine marks a member's
//! group list when the member changes, so that telling a changed member from another costs no
//! lookup in a second map.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::ptr::NonNull;

#[repr(C)]
struct Header {
    len: u32,
    /// The capacity, and `MARK`.
    cap: u32,
}

const MARK: u32 = 1 << 31;

/// Where every empty list points: never written, because a list with no capacity allocates
/// before it stores anything.
static EMPTY: Header = Header { len: 0, cap: 0 };

pub struct ThinList<T> {
    ptr: NonNull<Header>,
    _items: PhantomData<T>,
}

// Like `Vec<T>`: the list owns its items.
unsafe impl<T: Send> Send for ThinList<T> {}
unsafe impl<T: Sync> Sync for ThinList<T> {}

/// The allocation for `cap` items, and the offset of the first item in it.
fn layout<T>(cap: usize) -> (Layout, usize) {
    assert!(size_of::<T>() > 0, "ThinList does not hold zero-sized items");
    let items = Layout::array::<T>(cap).expect("list capacity overflow");
    let (layout, offset) = Layout::new::<Header>().extend(items).expect("list capacity overflow");
    (layout.pad_to_align(), offset)
}

impl<T> ThinList<T> {
    pub fn new() -> Self {
        ThinList { ptr: NonNull::from(&EMPTY), _items: PhantomData }
    }

    pub fn with_capacity(cap: usize) -> Self {
        let mut list = ThinList::new();
        list.reserve_exact(cap);
        list
    }

    fn header(&self) -> &Header {
        // SAFETY: `ptr` is `EMPTY` or a live allocation that starts with a header.
        unsafe { self.ptr.as_ref() }
    }

    pub fn len(&self) -> usize {
        self.header().len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        (self.header().cap & !MARK) as usize
    }

    pub fn is_marked(&self) -> bool {
        self.header().cap & MARK != 0
    }

    /// Sets or clears the mark. Only a list with an allocation carries one: marking a list
    /// with no capacity panics, and a list freed by `shrink_to_fit` loses its mark.
    pub fn set_mark(&mut self, on: bool) {
        if self.is_marked() == on {
            return;
        }
        assert!(self.capacity() > 0, "only an allocated list carries a mark");
        // SAFETY: an allocation of ours (not `EMPTY`: its capacity is not zero), and `&mut self`
        // is unique.
        unsafe { (*self.ptr.as_ptr()).cap ^= MARK };
    }

    fn items(&self) -> *mut T {
        let (_, offset) = layout::<T>(0);
        // SAFETY: within the allocation (or one past `EMPTY`, used only with length 0 below).
        unsafe { self.ptr.as_ptr().cast::<u8>().add(offset).cast::<T>() }
    }

    /// Changes the capacity to `cap` (at least the length), allocating, moving or freeing.
    fn set_capacity(&mut self, cap: usize) {
        debug_assert!(cap >= self.len());
        let old = self.capacity();
        if cap == old {
            return;
        }
        let cap32 = u32::try_from(cap).ok().filter(|c| c & MARK == 0).expect("a list holds fewer than 2^31 items");
        let (len, mark) = (self.header().len, self.header().cap & MARK);
        if cap == 0 {
            // SAFETY: allocated with `layout(old)` (old > 0 because cap != old), and empty.
            unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), layout::<T>(old).0) };
            self.ptr = NonNull::from(&EMPTY);
            return;
        }
        let (new_layout, _) = layout::<T>(cap);
        let raw = if old == 0 {
            // SAFETY: the layout has a non-zero size (it holds the header).
            unsafe { alloc::alloc(new_layout) }
        } else {
            // SAFETY: allocated with `layout(old)`, which has the same alignment.
            unsafe { alloc::realloc(self.ptr.as_ptr().cast(), layout::<T>(old).0, new_layout.size()) }
        };
        let Some(ptr) = NonNull::new(raw.cast::<Header>()) else { alloc::handle_alloc_error(new_layout) };
        // SAFETY: a fresh or moved allocation of ours, large enough for the header.
        unsafe { ptr.as_ptr().write(Header { len, cap: cap32 | mark }) };
        self.ptr = ptr;
    }

    /// Room for exactly `additional` more items.
    pub fn reserve_exact(&mut self, additional: usize) {
        let need = self.len().checked_add(additional).expect("list capacity overflow");
        if need > self.capacity() {
            self.set_capacity(need);
        }
    }

    /// Appends, growing to one slot, then four, then doubling, when full.
    pub fn push(&mut self, item: T) {
        let len = self.len();
        if len == self.capacity() {
            self.reserve_exact(match len {
                0 => 1,
                1 => 3,
                _ => len,
            });
        }
        // SAFETY: `len < cap`, so the slot is inside the allocation and unused.
        unsafe {
            self.items().add(len).write(item);
            (*self.ptr.as_ptr()).len += 1;
        }
    }

    /// Gives back every spare slot (an empty list frees its allocation).
    pub fn shrink_to_fit(&mut self) {
        self.set_capacity(self.len());
    }
}

impl<T> Default for ThinList<T> {
    fn default() -> Self {
        ThinList::new()
    }
}

impl<T> Drop for ThinList<T> {
    fn drop(&mut self) {
        if self.capacity() == 0 {
            return;
        }
        // SAFETY: the first `len` items are initialised; the allocation is ours.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.items(), self.len()));
            alloc::dealloc(self.ptr.as_ptr().cast(), layout::<T>(self.capacity()).0);
        }
    }
}

impl<T> std::ops::Deref for ThinList<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        if self.capacity() == 0 {
            return &[];
        }
        // SAFETY: the first `len` items are initialised.
        unsafe { std::slice::from_raw_parts(self.items(), self.len()) }
    }
}

impl<T> std::ops::DerefMut for ThinList<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        if self.capacity() == 0 {
            return &mut [];
        }
        // SAFETY: the first `len` items are initialised, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.items(), self.len()) }
    }
}

impl<T: Clone> Clone for ThinList<T> {
    fn clone(&self) -> Self {
        let mut list = ThinList::with_capacity(self.len());
        list.extend(self.iter().cloned());
        list
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ThinList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for ThinList<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T> Extend<T> for ThinList<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        let items = items.into_iter();
        self.reserve_exact(items.size_hint().0);
        for item in items {
            self.push(item);
        }
    }
}

impl<T> FromIterator<T> for ThinList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut list = ThinList::new();
        list.extend(items);
        list
    }
}

impl<'a, T> IntoIterator for &'a ThinList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut ThinList<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// A sequence, as `Vec` and `ThinVec` are saved: checkpoints keep their shape.
impl<T: Serialize> Serialize for ThinList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ThinList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
            type Value = ThinList<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ThinList<T>, A::Error> {
                // The length on disk is trusted only so far: a damaged one cannot allocate much.
                let mut list = ThinList::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                list.shrink_to_fit();
                Ok(list)
            }
        }
        d.deserialize_seq(Items(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_list_is_one_pointer_and_its_header_eight_bytes() {
        assert_eq!(size_of::<ThinList<u64>>(), 8);
        assert_eq!(size_of::<Option<ThinList<u64>>>(), 8);
        assert_eq!(layout::<u64>(3), (Layout::from_size_align(8 + 24, 8).unwrap(), 8));
        assert_eq!(layout::<(i64, Box<str>)>(1).1, 8);
        assert_eq!(layout::<u8>(3).0.size(), 12, "padded to the header's alignment");
    }

    #[test]
    fn behaves_as_a_vec() {
        let mut list = ThinList::new();
        let mut model = Vec::new();
        assert!(list.is_empty() && list.capacity() == 0);
        for i in 0..1000u64 {
            list.push(i * 7 % 13);
            model.push(i * 7 % 13);
            assert_eq!(&list[..], &model[..]);
            assert!(list.capacity() >= list.len() && list.capacity() <= (list.len() * 2).max(4));
        }
        list.sort_unstable();
        model.sort_unstable();
        assert_eq!(&list[..], &model[..]);
        list.shrink_to_fit();
        assert_eq!(list.capacity(), 1000);
        let copy = list.clone();
        assert_eq!(copy, list);
        let back: ThinList<u64> = postcard::from_bytes(&postcard::to_allocvec(&list).unwrap()).unwrap();
        assert_eq!(back, list);
        assert_eq!(postcard::to_allocvec(&list).unwrap(), postcard::to_allocvec(&model).unwrap(), "saved as a Vec is");
        let mut emptied: ThinList<u64> = ThinList::with_capacity(5);
        emptied.shrink_to_fit();
        assert_eq!(emptied.capacity(), 0);
        emptied.push(1);
        assert_eq!(&emptied[..], &[1]);
    }

    #[test]
    fn a_mark_stays_through_growth_and_trimming_until_cleared() {
        let mut list: ThinList<u64> = ThinList::new();
        assert!(!list.is_marked());
        list.set_mark(false);
        list.push(1);
        list.set_mark(true);
        for i in 2..100 {
            list.push(i);
            assert!(list.is_marked() && list.len() == i as usize && list.capacity() >= list.len());
        }
        list.shrink_to_fit();
        assert!(list.is_marked());
        assert_eq!(list.capacity(), 99);
        assert_eq!(&list[..3], &[1, 2, 3]);
        assert!(!list.clone().is_marked(), "a copy starts unmarked");
        list.set_mark(false);
        assert!(!list.is_marked());
        assert_eq!(list.capacity(), 99);
        let mut spare: ThinList<u64> = ThinList::with_capacity(2);
        spare.set_mark(true);
        spare.shrink_to_fit();
        assert!(!spare.is_marked(), "a freed list has no mark");
    }

    #[test]
    #[should_panic(expected = "only an allocated list carries a mark")]
    fn an_empty_list_cannot_be_marked() {
        ThinList::<u64>::new().set_mark(true);
    }

    #[test]
    fn drops_each_item_once() {
        let item = Rc::new(());
        {
            let mut list: ThinList<Rc<()>> = (0..10).map(|_| item.clone()).collect();
            assert_eq!(Rc::strong_count(&item), 11);
            let copy = list.clone();
            assert_eq!(Rc::strong_count(&item), 21);
            drop(copy);
            list.shrink_to_fit();
            list.push(item.clone());
            assert_eq!(Rc::strong_count(&item), 12);
        }
        assert_eq!(Rc::strong_count(&item), 1);
        let strings: ThinList<(i64, Box<str>)> = (0..5).map(|i| (i, Box::from(format!("s{i}")))).collect();
        assert_eq!(strings.iter().map(|s| &*s.1).collect::<Vec<_>>(), ["s0", "s1", "s2", "s3", "s4"]);
    }
}
