//! Vectors that keep their items narrow while every item fits: a read
//! model's ids and times are 64-bit in the domain, yet for years of a
//! deployment's life they fit in 32 bits, and a million ratings or facts
//! held at half their width are half the memory. The first item that does
//! not fit widens the whole vector, once; nothing is ever cut short.

use std::sync::Arc;

use serde::Serialize;

/// An item with a narrow form that holds it exactly when it fits.
pub trait Narrow: Copy + std::fmt::Debug {
    /// The narrow form.
    type Narrow: Copy + std::fmt::Debug;
    /// The narrow form of `self`, if it fits.
    fn narrow(self) -> Option<Self::Narrow>;
    /// The item a narrow form holds.
    fn widen(narrow: Self::Narrow) -> Self;
}

/// A word is always narrow: a `CompactVec<u64>` is a plain chunked vector
/// (of bits, say), copy-on-write as any other.
impl Narrow for u64 {
    type Narrow = u64;

    fn narrow(self) -> Option<u64> {
        Some(self)
    }

    fn widen(narrow: u64) -> Self {
        narrow
    }
}

/// Items per chunk of [`Chunks`].
const CHUNK: usize = 1024;

/// A vector in chunks of [`CHUNK`] items: the first grows as a `Vec` does
/// (a short vector is one `Vec`), the others are allocated whole. A long
/// one never copies itself to grow, and never holds a spare half, nor the
/// freed buffers of its growth, which the allocator may keep.
///
/// The chunks after the first are shared copy-on-write: a clone copies at
/// most the first chunk and one pointer per other chunk, and a change
/// copies a chunk only while a clone still shares it. A snapshot can so
/// take a long vector in microseconds and encode it with no lock held.
#[derive(Debug, Clone)]
pub struct Chunks<T> {
    /// The first [`CHUNK`] items.
    first: Vec<T>,
    /// The chunks after the first, each full but the last.
    rest: Vec<Arc<Vec<T>>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Self {
            first: Vec::new(),
            rest: Vec::new(),
        }
    }
}

impl<T: Copy> Chunks<T> {
    fn len(&self) -> usize {
        match self.rest.last() {
            None => self.first.len(),
            Some(last) => CHUNK * self.rest.len() + last.len(),
        }
    }

    /// Chunk `c` (0 is the first), to change: copied first if shared.
    fn chunk_mut(&mut self, c: usize) -> Option<&mut Vec<T>> {
        match c {
            0 => Some(&mut self.first),
            c => self.rest.get_mut(c - 1).map(Arc::make_mut),
        }
    }

    fn get(&self, i: usize) -> Option<&T> {
        match i / CHUNK {
            0 => self.first.get(i),
            c => self.rest.get(c - 1)?.get(i % CHUNK),
        }
    }

    fn push(&mut self, item: T) {
        let room = self.rest.last().map_or(self.first.len(), |c| c.len()) < CHUNK;
        // The last chunk, if it has room (copied first if shared).
        if room && let Some(last) = self.chunk_mut(self.rest.len()) {
            return last.push(item);
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        chunk.push(item);
        self.rest.push(Arc::new(chunk));
    }

    /// Inserts at `at`, moving the items after it along (panics past the end).
    fn insert(&mut self, at: usize, item: T) {
        assert!(at <= self.len(), "insertion index {at} past the end");
        let (mut carry, mut c, mut offset) = (item, at / CHUNK, at % CHUNK);
        while let Some(chunk) = self.chunk_mut(c) {
            if chunk.len() < CHUNK {
                chunk.insert(offset, carry);
                return;
            }
            // A full chunk passes its last item on to the next.
            let last = chunk.pop().expect("a full chunk has items");
            chunk.insert(offset, carry);
            (carry, c, offset) = (last, c + 1, 0);
        }
        // Every chunk was full: the last item starts a new one.
        self.push(carry);
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|c| c.iter()))
    }
}

impl<T: Copy> FromIterator<T> for Chunks<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut chunks = Self::default();
        items.into_iter().for_each(|item| chunks.push(item));
        chunks
    }
}

/// A vector of `W`, kept as `W::Narrow` while every item fits.
#[derive(Debug, Clone)]
pub enum CompactVec<W: Narrow> {
    /// Every item fits.
    Narrow(Chunks<W::Narrow>),
    /// Some item did not.
    Wide(Chunks<W>),
}

impl<W: Narrow> Default for CompactVec<W> {
    fn default() -> Self {
        Self::Narrow(Chunks::default())
    }
}

impl<W: Narrow> CompactVec<W> {
    /// How many items.
    pub fn len(&self) -> usize {
        match self {
            Self::Narrow(v) => v.len(),
            Self::Wide(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the items are kept narrow.
    #[cfg(test)]
    fn is_narrow(&self) -> bool {
        matches!(self, Self::Narrow(_))
    }

    /// The item at `i`.
    pub fn get(&self, i: usize) -> Option<W> {
        match self {
            Self::Narrow(v) => v.get(i).map(|&n| W::widen(n)),
            Self::Wide(v) => v.get(i).copied(),
        }
    }

    /// The last item.
    pub fn last(&self) -> Option<W> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Adds `item` at the end.
    pub fn push(&mut self, item: W) {
        self.insert(self.len(), item);
    }

    /// Inserts `item` at `at` (as `Vec::insert`; panics past the end).
    pub fn insert(&mut self, at: usize, item: W) {
        if let Self::Narrow(v) = self {
            match item.narrow() {
                Some(n) => return v.insert(at, n),
                None => *self = Self::Wide(v.iter().map(|&n| W::widen(n)).collect()),
            }
        }
        if let Self::Wide(v) = self {
            v.insert(at, item);
        }
    }

    /// The index of the first item for which `pred` is false, the items
    /// being partitioned by it (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(W) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid) {
                Some(item) if pred(item) => low = mid + 1,
                _ => high = mid,
            }
        }
        low
    }

    /// The items in order, from the first.
    pub fn iter(&self) -> Iter<'_, W> {
        Iter {
            items: self,
            front: 0,
            back: self.len(),
        }
    }
}

impl<W: Narrow + PartialEq> PartialEq for CompactVec<W> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<W: Narrow + Eq> Eq for CompactVec<W> {}

/// As the vector of its items.
impl<W: Narrow + Serialize> Serialize for CompactVec<W> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// The items of a [`CompactVec`], widened.
#[derive(Debug, Clone)]
pub struct Iter<'a, W: Narrow> {
    items: &'a CompactVec<W>,
    front: usize,
    back: usize,
}

impl<W: Narrow> Iterator for Iter<'_, W> {
    type Item = W;

    fn next(&mut self) -> Option<W> {
        if self.front >= self.back {
            return None;
        }
        self.front += 1;
        self.items.get(self.front - 1)
    }

    fn nth(&mut self, n: usize) -> Option<W> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back - self.front;
        (left, Some(left))
    }
}

impl<W: Narrow> DoubleEndedIterator for Iter<'_, W> {
    fn next_back(&mut self) -> Option<W> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        self.items.get(self.back)
    }
}

impl<W: Narrow> ExactSizeIterator for Iter<'_, W> {}

/// A sequence of `i64`s kept as the differences between neighbours, each
/// in as few bytes as it needs (zigzag LEB128: seven bits a byte, the top
/// bit set on all but a difference's last byte). Values that come close to
/// the one before (late rating ids, a few apart) take a byte each instead
/// of four or eight; any value is kept exactly (ten bytes at most). Read
/// oldest first or newest first; the bytes are [`Chunks`], so a clone is
/// cheap and shares them copy-on-write.
#[derive(Debug, Clone, Default)]
pub struct DeltaVec {
    bytes: Chunks<u8>,
    /// The newest value (0 while empty: the first is kept as its difference
    /// from 0).
    last: i64,
    len: usize,
}

impl DeltaVec {
    /// Adds `value` at the end.
    pub fn push(&mut self, value: i64) {
        let delta = value.wrapping_sub(self.last);
        let mut zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
        while zigzag >= 0x80 {
            self.bytes.push(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        self.bytes.push(zigzag as u8);
        self.last = value;
        self.len += 1;
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let mut bytes = self.bytes.iter();
        let mut value = 0_i64;
        (0..self.len).map(move |_| {
            let (mut zigzag, mut shift) = (0_u64, 0);
            for &b in bytes.by_ref() {
                zigzag |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            value = value.wrapping_add(unzigzag(zigzag));
            value
        })
    }

    /// The values, newest first: each found from the one after it and the
    /// difference that ends just before that one's.
    pub fn iter_rev(&self) -> impl Iterator<Item = i64> + '_ {
        let mut end = self.bytes.len();
        let mut value = self.last;
        (0..self.len).map(move |i| {
            if i > 0 {
                // The difference ending at `end`: its last byte, then back
                // over the bytes flagged as continued.
                let mut start = end - 1;
                while start > 0 && self.byte(start - 1) & 0x80 != 0 {
                    start -= 1;
                }
                let zigzag = (start..end)
                    .rev()
                    .fold(0_u64, |z, at| z << 7 | u64::from(self.byte(at) & 0x7f));
                value = value.wrapping_sub(unzigzag(zigzag));
                end = start;
            }
            value
        })
    }

    fn byte(&self, at: usize) -> u8 {
        *self.bytes.get(at).expect("an index below the byte count")
    }
}

/// The `i64` a zigzag code stands for (0, -1, 1, -2... as 0, 1, 2, 3...).
fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// An `i64` id that is positive and below 2^32, as a `u32`.
pub fn narrow_id(id: i64) -> Option<u32> {
    u32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    struct Id(i64);

    impl Narrow for Id {
        type Narrow = u32;
        fn narrow(self) -> Option<u32> {
            narrow_id(self.0)
        }
        fn widen(n: u32) -> Self {
            Id(n.into())
        }
    }

    fn ids(v: &CompactVec<Id>) -> Vec<i64> {
        v.iter().map(|i| i.0).collect()
    }

    #[test]
    fn items_stay_narrow_until_one_does_not_fit_and_none_is_cut() {
        let mut v = CompactVec::<Id>::default();
        for i in [1, 2, 4] {
            v.push(Id(i));
        }
        v.insert(2, Id(3));
        assert!(v.is_narrow());
        assert_eq!(ids(&v), [1, 2, 3, 4]);
        v.push(Id(1 << 40));
        assert!(!v.is_narrow());
        v.insert(0, Id(-1));
        assert_eq!(ids(&v), [-1, 1, 2, 3, 4, 1 << 40]);
        assert_eq!(v.last(), Some(Id(1 << 40)));
        assert_eq!(v.partition_point(|i| i.0 < 3), 3);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[-1,1,2,3,4,1099511627776]"
        );
    }

    #[test]
    fn long_vectors_grow_by_chunks_and_insert_across_them() {
        let mut v = CompactVec::<Id>::default();
        let n = 3 * CHUNK as i64 + 5;
        (0..n).filter(|i| i % 1000 != 7).for_each(|i| v.push(Id(i)));
        // Late items, each inserted in its place, across chunk boundaries.
        for i in (0..n).filter(|i| i % 1000 == 7) {
            let at = v.partition_point(|x| x.0 < i);
            v.insert(at, Id(i));
        }
        assert_eq!(ids(&v), (0..n).collect::<Vec<_>>());
        let CompactVec::Narrow(chunks) = &v else {
            panic!("every item fits");
        };
        assert_eq!(chunks.rest.len(), 3);
        assert_eq!(chunks.first.capacity(), CHUNK);
        assert!(chunks.rest.iter().all(|c| c.capacity() == CHUNK));
        v.push(Id(1 << 40));
        v.insert(CHUNK, Id(-3));
        assert_eq!(v.get(CHUNK), Some(Id(-3)));
        assert_eq!(v.get(CHUNK + 1), Some(Id(CHUNK as i64)));
        assert_eq!(v.last(), Some(Id(1 << 40)));
        assert_eq!(v.len() as i64, n + 2);
    }

    #[test]
    fn a_clone_shares_chunks_and_keeps_its_items_while_the_vector_changes() {
        let evens = (0..2 * CHUNK as i64 + 10).map(|i| 2 * i);
        let mut v = CompactVec::<Id>::default();
        evens.clone().for_each(|i| v.push(Id(i)));
        let kept = v.clone();
        // Where each chunk after the first lives.
        let chunks = |v: &CompactVec<Id>| match v {
            CompactVec::Narrow(c) => c.rest.iter().map(Arc::as_ptr).collect::<Vec<_>>(),
            CompactVec::Wide(_) => panic!("every item fits"),
        };
        let shared = |a: &CompactVec<Id>, b: &CompactVec<Id>| {
            let (a, b) = (chunks(a), chunks(b));
            a.iter().zip(&b).filter(|(x, y)| x == y).count()
        };
        assert_eq!(shared(&v, &kept), 2, "a clone copies no chunk");
        // A push into the last chunk copies it, and only it.
        v.push(Id(100_001));
        assert_eq!(shared(&v, &kept), 1);
        // An insertion copies the chunks it moves items through.
        v.insert(CHUNK + 1, Id(100_002));
        assert_eq!(shared(&v, &kept), 0);
        assert_eq!(v.get(CHUNK + 1), Some(Id(100_002)));
        assert_eq!(v.last(), Some(Id(100_001)));
        assert_eq!(ids(&kept), evens.collect::<Vec<_>>());
        // Once the clone is gone, changes copy nothing.
        drop(kept);
        let before = chunks(&v);
        v.insert(CHUNK + 1, Id(100_003));
        v.push(Id(100_004));
        assert_eq!(chunks(&v), before);
    }

    #[test]
    fn iteration_skips_and_runs_backwards_like_a_slice() {
        let mut v = CompactVec::<Id>::default();
        (1..=10).for_each(|i| v.push(Id(i)));
        assert_eq!(
            v.iter().skip(7).map(|i| i.0).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(
            v.iter().rev().take(2).map(|i| i.0).collect::<Vec<_>>(),
            [10, 9]
        );
        assert_eq!(v.iter().nth(20), None);
        assert_eq!(v.iter().len(), 10);
        let wide = CompactVec::Wide(v.iter().collect());
        assert!(!wide.is_narrow());
        assert_eq!(wide, v, "equal items, whatever their width");
    }

    #[test]
    fn deltas_keep_every_value_both_ways_in_a_byte_when_close() {
        let mut values: Vec<i64> = vec![0, 5, 3, 3, -2, i64::MAX, i64::MIN, -1, 1 << 40, 7];
        // Then many close together, across byte chunks.
        let mut at = 1_000_000_i64;
        for i in 0..3 * CHUNK as i64 {
            at += [1, 3, -2, 5, -4][i as usize % 5];
            values.push(at);
        }
        let mut v = DeltaVec::default();
        assert!(v.is_empty() && v.iter_rev().next().is_none());
        values[..11].iter().for_each(|&x| v.push(x));
        let far = v.bytes.len();
        values[11..].iter().for_each(|&x| v.push(x));
        assert_eq!(v.len(), values.len());
        assert_eq!(v.iter().collect::<Vec<_>>(), values);
        let newest_first: Vec<i64> = values.iter().rev().copied().collect();
        assert_eq!(v.iter_rev().collect::<Vec<_>>(), newest_first);
        assert_eq!(v.iter_rev().take(3).collect::<Vec<_>>(), newest_first[..3]);
        // The close ones took a byte each.
        assert_eq!(v.bytes.len() - far, values.len() - 11);
        // A clone keeps its values while the original grows.
        let kept = v.clone();
        v.push(42);
        assert_eq!(kept.iter().collect::<Vec<_>>(), values);
        assert_eq!(v.iter_rev().next(), Some(42));
    }
}
