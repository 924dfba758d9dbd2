//! Listings kept as ready JSON beside the tag the service gave their content.
//!
//! The gateway still asks the service on every request (so the token is
//! checked and a down service is a 503, as without the cache), but it sends
//! the tag of what it keeps: while the list is unchanged the service answers
//! "not modified" without rows, and the gateway serves the JSON it has, with
//! no decoding, no conversion and no encoding of the rows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use serde_json::value::RawValue;

/// How many listings (distinct `limit`/`offset` pairs) are kept; past this the
/// cache starts over, so that clients walking every offset cannot grow it.
const CAPACITY: usize = 64;

/// The most JSON bytes kept in all; a listing that would go past it starts
/// the cache over, and one larger than it alone is not kept (it is served
/// without the cache, as it would be the first time).
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// One listing as last answered.
#[derive(Debug)]
pub struct CachedList {
    /// The service's tag of the content.
    pub etag: Vec<u8>,
    /// How many rows the whole list has.
    pub count: u64,
    /// The rows of the listing, as a JSON array.
    pub results: Box<RawValue>,
    /// The HTTP tag of `results` as a whole answer, made once.
    pub results_tag: std::sync::OnceLock<axum::http::HeaderValue>,
}

impl CachedList {
    /// The `ETag` of [`CachedList::results_body`] as an answer: what the
    /// conditional-GET layer would compute from those bytes, computed once
    /// per list instead of once per request.
    pub fn results_etag(&self) -> axum::http::HeaderValue {
        self.results_tag
            .get_or_init(|| crate::conditional::etag_of(self.results.get().as_bytes()))
            .clone()
    }

    /// The rows' JSON as a body, without copying it.
    pub fn results_body(self: &Arc<Self>) -> Bytes {
        Bytes::from_owner(ResultsJson(self.clone()))
    }
}

struct ResultsJson(Arc<CachedList>);

impl AsRef<[u8]> for ResultsJson {
    fn as_ref(&self) -> &[u8] {
        self.0.results.get().as_bytes()
    }
}

/// Listings by key (the query that selects them).
#[derive(Debug)]
pub struct ListCache<K> {
    lists: RwLock<HashMap<K, Arc<CachedList>>>,
}

impl<K> Default for ListCache<K> {
    fn default() -> Self {
        Self {
            lists: RwLock::default(),
        }
    }
}

impl<K: Hash + Eq> ListCache<K> {
    /// The listing kept for `key`, if any.
    pub fn get(&self, key: &K) -> Option<Arc<CachedList>> {
        self.lists
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Keeps `list` for `key`. A list without a tag (a service that does not
    /// tag its answers) is not kept: it could never be confirmed.
    pub fn put(&self, key: K, list: Arc<CachedList>) {
        if list.etag.is_empty() {
            return;
        }
        let size = list.results.get().len();
        if size > MAX_BYTES {
            return;
        }
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        let kept: usize = lists
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, l)| l.results.get().len())
            .sum();
        if (lists.len() >= CAPACITY && !lists.contains_key(&key)) || kept + size > MAX_BYTES {
            lists.clear();
        }
        lists.insert(key, list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(etag: &[u8], json: &str) -> Arc<CachedList> {
        Arc::new(CachedList {
            etag: etag.to_vec(),
            count: 1,
            results: RawValue::from_string(json.to_owned()).unwrap(),
            results_tag: Default::default(),
        })
    }

    #[test]
    fn a_kept_list_is_tagged_as_its_body_would_be() {
        let kept = list(b"a", "[1,2]");
        assert_eq!(
            kept.results_etag(),
            crate::conditional::etag_of(&kept.results_body())
        );
        assert_ne!(kept.results_etag(), list(b"a", "[1]").results_etag());
    }

    #[test]
    fn keeps_tagged_lists_and_serves_their_json() {
        let cache = ListCache::default();
        cache.put(1, list(b"a", "[1]"));
        let kept = cache.get(&1).unwrap();
        assert_eq!(kept.etag, b"a");
        assert_eq!(&kept.results_body()[..], b"[1]");
        cache.put(1, list(b"b", "[2]"));
        assert_eq!(&cache.get(&1).unwrap().results_body()[..], b"[2]");
        assert!(cache.get(&2).is_none());
    }

    #[test]
    fn untagged_lists_are_not_kept() {
        let cache = ListCache::default();
        cache.put(1, list(b"", "[1]"));
        assert!(cache.get(&1).is_none());
    }

    #[test]
    fn stays_bounded_in_bytes() {
        let cache = ListCache::default();
        let big = format!("[\"{}\"]", "x".repeat(MAX_BYTES / 3));
        for k in 0..3 {
            cache.put(k, list(b"a", &big));
        }
        let kept: usize = (0..3)
            .filter_map(|k| cache.get(&k))
            .map(|l| l.results.get().len())
            .sum();
        assert!(kept <= MAX_BYTES, "{kept} bytes kept");
        assert!(cache.get(&2).is_some(), "the newest is kept");
        cache.put(9, list(b"a", &format!("[\"{}\"]", "x".repeat(MAX_BYTES))));
        assert!(cache.get(&9).is_none(), "too big alone");
    }

    #[test]
    fn stays_bounded() {
        let cache = ListCache::default();
        for k in 0..CAPACITY * 3 {
            cache.put(k, list(b"t", "[]"));
            assert!(cache.lists.read().unwrap().len() <= CAPACITY);
            assert!(cache.get(&k).is_some(), "the newest list is always kept");
        }
    }
}
