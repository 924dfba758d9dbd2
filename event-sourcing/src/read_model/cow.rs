//! Maps whose clone is cheap: entries live in shards shared copy-on-write,
//! so a clone copies only the shards' pointers, and a change copies the one
//! shard it touches, and only while a clone still shares it.
//!
//! What a read model keeps in them it can save without holding new events
//! back (see [`super::snapshot::Snapshot::freeze`]): under its lock the
//! save clones them, in microseconds; the encoding then reads the clone
//! while events are applied to the model.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;
use std::sync::Arc;

/// Shards of a [`CowMap`]: a change to a shared shard copies about
/// 1/256 of the map.
const SHARDS: usize = 256;

/// A hash map in [`SHARDS`] shards, each shared copy-on-write.
#[derive(Clone)]
pub struct CowMap<K, V> {
    shards: Box<[Arc<HashMap<K, V>>]>,
    /// Picks a key's shard; a clone keeps it, so keys stay where they are.
    hasher: RandomState,
    len: usize,
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for CowMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K, V> CowMap<K, V> {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Every value, in no order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }
}

impl<K: Hash + Eq, V> CowMap<K, V> {
    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard_of(key)].get(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> CowMap<K, V> {
    /// The shard holding `key`, to change (copied first if shared); `None`
    /// (and nothing copied) if no shard holds it.
    fn shard_holding<Q>(&mut self, key: &Q) -> Option<&mut HashMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = &mut self.shards[self.shard_of(key)];
        shard.contains_key(key).then(|| Arc::make_mut(shard))
    }

    /// The value of `key`, to change (its shard copied first if shared).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard_holding(key)?.get_mut(key)
    }

    /// Sets `key`'s value; the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let i = self.shard_of(&key);
        let old = Arc::make_mut(&mut self.shards[i]).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Sets `key`'s value unless it has one.
    pub fn insert_if_absent(&mut self, key: K, value: V) {
        if !self.contains_key(&key) {
            self.insert(key, value);
        }
    }

    /// Removes `key`; its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = self.shard_holding(key)?.remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Keeps only the entries `keep` accepts; a shard is copied only if it
    /// loses one (so `keep` may be asked twice about an entry: make it a
    /// pure test).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        for shard in self.shards.iter_mut() {
            if shard.iter().all(|(k, v)| keep(k, v)) {
                continue;
            }
            let shard = Arc::make_mut(shard);
            let before = shard.len();
            shard.retain(|k, v| keep(k, v));
            self.len -= before - shard.len();
        }
    }
}

/// An ordered map of dense `i64`-like keys (ids handed out in order, such as
/// users'), in ranges of [`RANGE`] keys, each a vector indexed by the key
/// and shared copy-on-write: a clone copies one pointer per range, a change
/// copies the one range it touches (while shared), a look-up is an index,
/// and iteration is in key order. Memory follows the keys' span, not their
/// count (an absent key inside a range costs a slot): meant for dense ids,
/// never for keys an outsider chooses.
pub struct CowRanges<K, V> {
    ranges: BTreeMap<i64, Arc<Vec<Option<V>>>>,
    len: usize,
    keys: PhantomData<fn() -> K>,
}

/// Keys per range of a [`CowRanges`], as a power of two.
const RANGE_BITS: u32 = 6;
/// Keys per range of a [`CowRanges`].
pub const RANGE: usize = 1 << RANGE_BITS;

impl<K, V> Default for CowRanges<K, V> {
    fn default() -> Self {
        Self {
            ranges: BTreeMap::new(),
            len: 0,
            keys: PhantomData,
        }
    }
}

impl<K, V> Clone for CowRanges<K, V> {
    fn clone(&self) -> Self {
        Self {
            ranges: self.ranges.clone(),
            len: self.len,
            keys: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for CowRanges<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CowRanges")
            .field("len", &self.len)
            .field("ranges", &self.ranges.len())
            .finish()
    }
}

/// The same keys with equal values.
impl<K, V: PartialEq> PartialEq for CowRanges<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.entries().eq(other.entries())
    }
}

impl<K, V: Eq> Eq for CowRanges<K, V> {}

impl<K, V> CowRanges<K, V> {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry as its key's number and its value, in key order.
    fn entries(&self) -> impl Iterator<Item = (i64, &V)> {
        self.ranges.iter().flat_map(|(range, values)| {
            values
                .iter()
                .enumerate()
                .filter_map(move |(i, v)| v.as_ref().map(|v| ((range << RANGE_BITS) | i as i64, v)))
        })
    }
}

impl<K: Copy + Into<i64> + From<i64>, V> CowRanges<K, V> {
    /// The range of `key`, and its place there.
    fn place(key: K) -> (i64, usize) {
        let key: i64 = key.into();
        (key >> RANGE_BITS, (key & (RANGE as i64 - 1)) as usize)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.entries().map(|(key, v)| (K::from(key), v))
    }

    /// The value of `key`.
    pub fn get(&self, key: K) -> Option<&V> {
        let (range, at) = Self::place(key);
        self.ranges.get(&range)?.get(at)?.as_ref()
    }
}

/// As a map from key to value, in key order.
impl<K: Copy + Into<i64> + From<i64> + serde::Serialize, V: serde::Serialize> serde::Serialize
    for CowRanges<K, V>
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<K: Copy + Into<i64> + From<i64>, V: Clone> CowRanges<K, V> {
    /// The slot of `key`, to change (its range made, or grown, or copied
    /// first if shared).
    fn slot(&mut self, key: K) -> &mut Option<V> {
        let (range, at) = Self::place(key);
        // A new range is made whole at once: its ids come in order, and
        // growing it slot by slot would leave every smaller block freed.
        let values = Arc::make_mut(
            self.ranges
                .entry(range)
                .or_insert_with(|| Arc::new(Vec::with_capacity(RANGE))),
        );
        if values.len() <= at {
            values.resize_with(at + 1, || None);
        }
        &mut values[at]
    }

    /// The value of `key`, to change, made from `V::default()` if it has
    /// none.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        if self.get(key).is_none() {
            self.len += 1;
        }
        self.slot(key).get_or_insert_with(V::default)
    }

    /// The value of `key`, to change (its range copied first if shared).
    pub fn get_mut(&mut self, key: K) -> Option<&mut V> {
        self.get(key)?;
        self.slot(key).as_mut()
    }

    /// Sets `key`'s value; the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.slot(key).replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; its value. A range left empty is dropped.
    pub fn remove(&mut self, key: K) -> Option<V> {
        self.get(key)?;
        let (range, at) = Self::place(key);
        let values = Arc::make_mut(self.ranges.get_mut(&range)?);
        let old = values[at].take();
        while values.last().is_some_and(Option::is_none) {
            values.pop();
        }
        if values.is_empty() {
            self.ranges.remove(&range);
        }
        self.len -= usize::from(old.is_some());
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_what_it_saw_while_the_map_changes() {
        let mut map = CowMap::<String, i64>::default();
        for n in 0..2_000 {
            map.insert(format!("k{n}"), n);
        }
        let frozen = map.clone();
        map.insert("k1".into(), -1);
        map.insert("new".into(), 7);
        *map.get_mut("k2").unwrap() = -2;
        assert_eq!(map.remove("k3"), Some(3));
        assert_eq!(map.remove("k3"), None);
        map.insert_if_absent("k4".into(), -4);
        map.retain(|_, v| *v != 5);
        assert_eq!(map.len(), 2_000 + 1 - 2);
        assert_eq!(map.iter().count(), map.len());
        assert_eq!(
            [map.get("k1"), map.get("k2"), map.get("k4"), map.get("new")],
            [Some(&-1), Some(&-2), Some(&4), Some(&7)]
        );
        assert!(!map.contains_key("k5"));
        // The clone saw none of it.
        assert_eq!(frozen.len(), 2_000);
        for n in 0..2_000 {
            assert_eq!(frozen.get(format!("k{n}").as_str()), Some(&n));
        }
        assert!(frozen.get("new").is_none());
        assert_ne!(frozen, map);
    }

    #[test]
    fn only_the_shards_changed_are_copied() {
        let mut map = CowMap::<u64, u64>::default();
        for n in 0..10_000 {
            map.insert(n, n);
        }
        let frozen = map.clone();
        let shared = |a: &CowMap<u64, u64>, b: &CowMap<u64, u64>| {
            a.shards
                .iter()
                .zip(b.shards.iter())
                .filter(|(x, y)| Arc::ptr_eq(x, y))
                .count()
        };
        assert_eq!(shared(&map, &frozen), SHARDS);
        map.insert(1, 0);
        *map.get_mut(&2).unwrap() = 0;
        // Reads, misses and a retain that keeps everything copy nothing.
        assert!(map.get_mut(&99_999).is_none());
        assert!(map.remove(&99_999).is_none());
        map.retain(|_, _| true);
        assert!(shared(&map, &frozen) >= SHARDS - 2);
        drop(frozen);
        // Once the clone is gone, changes copy nothing.
        let before: Vec<*const HashMap<u64, u64>> = map.shards.iter().map(Arc::as_ptr).collect();
        map.insert(3, 0);
        let after: Vec<*const HashMap<u64, u64>> = map.shards.iter().map(Arc::as_ptr).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn ranges_iterate_in_key_order_and_a_clone_keeps_its_state() {
        let mut map = CowRanges::<i64, Vec<i64>>::default();
        for key in [5_000, 3, 1_024, 1_023, -7, 70_000] {
            map.get_or_default(key).push(key);
        }
        map.insert(2, vec![2]);
        let keys: Vec<i64> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [-7, 2, 3, 1_023, 1_024, 5_000, 70_000]);
        let frozen = map.clone();
        map.get_or_default(3).push(33);
        map.get_mut(1_024).unwrap().clear();
        assert_eq!(map.remove(70_000), Some(vec![70_000]));
        assert_eq!(map.remove(70_000), None);
        assert!(map.get_mut(70_001).is_none());
        assert_eq!(map.len(), 6);
        assert_eq!(map.get(3), Some(&vec![3, 33]));
        assert_eq!(frozen.get(3), Some(&vec![3]));
        assert_eq!(frozen.get(1_024), Some(&vec![1_024]));
        assert_eq!(frozen.get(70_000), Some(&vec![70_000]));
        assert_eq!(frozen.len(), 7);
        // An emptied range is dropped; the copy holds its own.
        assert_eq!(map.ranges.len(), 5);
        assert_eq!(frozen.ranges.len(), 6);
        assert_ne!(frozen, map);
        map.get_or_default(70_000).push(70_000);
        map.get_mut(3).unwrap().pop();
        map.get_mut(1_024).unwrap().push(1_024);
        assert_eq!(frozen, map);
    }
}
