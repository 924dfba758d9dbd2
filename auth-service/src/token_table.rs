//! The live tokens of the read model, compact: one 72-byte slot per token
//! in chunks of 32 KiB, found by digest through a table of 4-byte slot
//! numbers, and each user's tokens threaded through their slots as a list.
//!
//! A `HashMap<TokenDigest, TokenRecord>` beside a `Vec<TokenDigest>` per
//! user took about 330 bytes of RSS per token at a million tokens (an
//! 80-byte entry in a table at most 7/8 full, and half full after it
//! doubles; the digest again in the user's list): here a token costs its
//! slot, about ten bytes of index, and a share of its user's list head.
//! Freed slots are reused, so the slots follow the number of live tokens.
//!
//! Chunks are shared copy-on-write: [`TokenTable::frozen`] takes the slots
//! as they are in microseconds (a snapshot encodes them after), and a
//! change copies the one 32 KiB chunk it touches while they are shared.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_sourcing::read_model::cow::CowRanges;
use hashbrown::HashTable;

use crate::domain::UserId;
use crate::read_model::TokenRecord;
use crate::token::TokenDigest;

/// The end of a list.
const NONE: u32 = u32::MAX;

/// One token: its digest and record, and the next slot of its user's list.
/// Its times are nanoseconds since the epoch, exact as events hold them
/// while they fall between 1677 and 2262; a slot with a time outside
/// (never seen, yet an event could say so) is marked [`WIDE`] and its
/// times are kept beside the slots.
#[derive(Debug, Clone, Copy)]
struct Slot {
    digest: TokenDigest,
    /// 0 in a free slot (user ids are positive).
    user_id: i64,
    /// When it was issued, or [`WIDE`].
    issued: i64,
    expires: i64,
    issued_position: u64,
    refreshes: u32,
    /// The user's next token; in a free slot, the next free one.
    next: u32,
}

/// `Slot::issued` of a slot whose times are kept in [`Slots::wide`].
const WIDE: i64 = i64::MIN;

/// Both times in nanoseconds, if both fit (and neither is [`WIDE`]).
fn nanos_of(record: &TokenRecord) -> Option<(i64, i64)> {
    let issued = record
        .issued_at
        .timestamp_nanos_opt()
        .filter(|&n| n != WIDE)?;
    Some((issued, record.expires_at.timestamp_nanos_opt()?))
}

impl Slot {
    fn is_free(&self) -> bool {
        self.user_id == 0
    }
}

/// Slots per chunk of [`Slots`]: as many as fill 32 KiB with the chunk's
/// reference counts (two words before the slots), so that a chunk is
/// within one of the allocator's size classes. 1024 slots plus the counts
/// was just over 80 KiB, past mimalloc's (our allocator's) 64 KiB "medium"
/// objects: each such chunk cost about 100 KiB of RSS (100.7 bytes a slot
/// measured, 79.7 at 32 KiB), about 20 bytes per token in `bench-memory`.
const CHUNK: usize = (32 * 1024 - 2 * size_of::<usize>()) / size_of::<Slot>();
const _: () = assert!(CHUNK > 0 && 2 * size_of::<usize>() + CHUNK * size_of::<Slot>() <= 32 * 1024);

/// The slots, in chunks: growing never copies them, and never holds a
/// vector's spare half (at most one chunk is spare). A clone shares the
/// chunks.
#[derive(Debug, Default, Clone)]
struct Slots {
    chunks: Vec<Arc<[Slot]>>,
    len: usize,
    /// The times of the slots marked [`WIDE`] (issued, expires).
    wide: BTreeMap<u32, (DateTime<Utc>, DateTime<Utc>)>,
}

impl Slots {
    /// The record of slot `i` (in use).
    fn record(&self, i: u32) -> TokenRecord {
        let slot = &self[i];
        let (issued_at, expires_at) = match slot.issued {
            WIDE => self.wide.get(&i).copied().unwrap_or_default(),
            issued => (
                DateTime::from_timestamp_nanos(issued),
                DateTime::from_timestamp_nanos(slot.expires),
            ),
        };
        TokenRecord {
            user_id: UserId(slot.user_id),
            issued_at,
            expires_at,
            issued_position: slot.issued_position,
            refreshes: slot.refreshes,
        }
    }

    /// Sets slot `i`'s record (its digest and list are left as they are).
    fn set(&mut self, i: u32, record: &TokenRecord) {
        let times = nanos_of(record);
        match times {
            Some(_) => self.wide.remove(&i),
            None => self.wide.insert(i, (record.issued_at, record.expires_at)),
        };
        let slot = &mut self[i];
        slot.user_id = record.user_id.0;
        (slot.issued, slot.expires) = times.unwrap_or((WIDE, 0));
        slot.issued_position = record.issued_position;
        slot.refreshes = record.refreshes;
    }

    /// Frees slot `i` (its number and digest are left for the caller).
    fn free(&mut self, i: u32, next_free: u32) {
        self.wide.remove(&i);
        let slot = &mut self[i];
        slot.user_id = 0;
        slot.next = next_free;
    }

    fn get(&self, i: u32) -> Option<&Slot> {
        let i = i as usize;
        (i < self.len).then(|| &self.chunks[i / CHUNK][i % CHUNK])
    }

    /// Adds a slot; its number.
    fn push(&mut self, slot: Slot) -> u32 {
        let i = u32::try_from(self.len)
            .ok()
            .filter(|&i| i != NONE)
            .expect("fewer than 2^32 - 1 tokens at once");
        if self.len % CHUNK == 0 {
            // Allocated once, at its size (no vector copied into it).
            self.chunks.push(std::iter::repeat_n(slot, CHUNK).collect());
        }
        self.len += 1;
        self[i] = slot;
        i
    }

    /// The slots in use, with their numbers and records.
    fn in_use(&self) -> impl Iterator<Item = (TokenDigest, TokenRecord)> + '_ {
        let slots = self.chunks.iter().flat_map(|c| c.iter()).take(self.len);
        (0..)
            .zip(slots)
            .filter(|(_, s)| !s.is_free())
            .map(|(i, s)| (s.digest, self.record(i)))
    }
}

impl std::ops::Index<u32> for Slots {
    type Output = Slot;

    fn index(&self, i: u32) -> &Slot {
        self.get(i).expect("a slot in use")
    }
}

impl std::ops::IndexMut<u32> for Slots {
    fn index_mut(&mut self, i: u32) -> &mut Slot {
        let i = i as usize;
        assert!(i < self.len, "a slot in use");
        &mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK]
    }
}

/// The tokens, by digest and by user.
#[derive(Debug)]
pub struct TokenTable {
    slots: Slots,
    /// The first free slot (a list through `next`).
    free: u32,
    live: usize,
    /// Slot numbers, by a keyed hash of their digest.
    index: HashTable<u32>,
    hasher: RandomState,
    /// Each user's first slot, by id (ids are dense: see [`CowRanges`]).
    heads: CowRanges<UserId, u32>,
}

impl Default for TokenTable {
    fn default() -> Self {
        Self {
            slots: Slots::default(),
            free: NONE,
            live: 0,
            index: HashTable::new(),
            hasher: RandomState::new(),
            heads: CowRanges::default(),
        }
    }
}

impl TokenTable {
    fn hash(&self, digest: &TokenDigest) -> u64 {
        self.hasher.hash_one(digest.bytes())
    }

    fn find(&self, digest: &TokenDigest) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(digest), |&i| slots[i].digest == *digest)
            .copied()
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.live
    }

    /// The token with this digest.
    pub fn get(&self, digest: &TokenDigest) -> Option<TokenRecord> {
        self.find(digest).map(|i| self.slots.record(i))
    }

    /// Whether `user` holds any token.
    #[cfg(test)]
    pub fn holds_any(&self, user: UserId) -> bool {
        self.heads.get(user).is_some()
    }

    /// Adds a token (or replaces the record of a digest already held, under
    /// the same user).
    pub fn insert(&mut self, digest: TokenDigest, record: TokenRecord) {
        if let Some(i) = self.find(&digest) {
            if self.slots[i].user_id == record.user_id.0 {
                self.slots.set(i, &record);
                return;
            }
            // Another user's: drop it from that user's list first.
            self.remove(&digest);
        }
        let next = self.heads.get(record.user_id).copied().unwrap_or(NONE);
        let slot = Slot {
            digest,
            user_id: record.user_id.0,
            issued: 0,
            expires: 0,
            issued_position: 0,
            refreshes: 0,
            next,
        };
        let i = if self.free == NONE {
            self.slots.push(slot)
        } else {
            let i = self.free;
            self.free = self.slots[i].next;
            self.slots[i] = slot;
            i
        };
        self.slots.set(i, &record);
        let hash = self.hash(&digest);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(slots[j].digest.bytes()));
        self.heads.insert(record.user_id, i);
        self.live += 1;
    }

    /// Replaces the record of a token held; `false` if it is not.
    pub fn set(&mut self, digest: &TokenDigest, record: &TokenRecord) -> bool {
        match self.find(digest) {
            Some(i) if self.slots[i].user_id == record.user_id.0 => {
                self.slots.set(i, record);
                true
            }
            _ => false,
        }
    }

    /// Forgets slot `i` (already out of its user's list).
    fn release(&mut self, i: u32) {
        let digest = self.slots[i].digest;
        let hash = self.hash(&digest);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.slots.free(i, self.free);
        self.free = i;
        self.live -= 1;
    }

    /// Forgets one token; its record if it was held. Walks its user's list.
    pub fn remove(&mut self, digest: &TokenDigest) -> Option<TokenRecord> {
        let i = self.find(digest)?;
        let record = self.slots.record(i);
        self.retain_of(record.user_id, |d, _| d != digest);
        Some(record)
    }

    /// Keeps only `user`'s tokens for which `keep` says so.
    pub fn retain_of(
        &mut self,
        user: UserId,
        mut keep: impl FnMut(&TokenDigest, &TokenRecord) -> bool,
    ) {
        let Some(&head) = self.heads.get(user) else {
            return;
        };
        let (mut first, mut last) = (NONE, NONE);
        let mut at = head;
        while at != NONE {
            let slot = self.slots[at];
            if keep(&slot.digest, &self.slots.record(at)) {
                if last == NONE {
                    first = at;
                } else {
                    self.slots[last].next = at;
                }
                last = at;
            } else {
                self.release(at);
            }
            at = slot.next;
        }
        if last == NONE {
            self.heads.remove(user);
        } else {
            self.slots[last].next = NONE;
            self.heads.insert(user, first);
        }
    }

    /// Keeps only the tokens for which `keep` says so: a pass over every
    /// user's list.
    pub fn retain(&mut self, mut keep: impl FnMut(&TokenDigest, &TokenRecord) -> bool) {
        let users: Vec<UserId> = self.heads.iter().map(|(user, _)| user).collect();
        for user in users {
            self.retain_of(user, &mut keep);
        }
    }

    /// `user`'s tokens, newest first (by when they were added).
    pub fn of(&self, user: UserId) -> impl Iterator<Item = (TokenDigest, TokenRecord)> + '_ {
        let mut at = self.heads.get(user).copied().unwrap_or(NONE);
        std::iter::from_fn(move || {
            let (i, slot) = (at, self.slots.get(at)?);
            at = slot.next;
            Some((slot.digest, self.slots.record(i)))
        })
    }

    /// The tokens as they are now, taken in microseconds (the chunks are
    /// shared until either side changes one).
    pub fn frozen(&self) -> FrozenTokens {
        FrozenTokens {
            slots: self.slots.clone(),
            live: self.live,
        }
    }
}

/// The tokens of a [`TokenTable`] at one moment ([`TokenTable::frozen`]).
#[derive(Debug, Clone)]
pub struct FrozenTokens {
    slots: Slots,
    live: usize,
}

impl FrozenTokens {
    /// How many tokens there were.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Every token, in slot order (no meaning, but the same for the same
    /// history of changes).
    pub fn iter(&self) -> impl Iterator<Item = (TokenDigest, TokenRecord)> + '_ {
        self.slots.in_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> TokenDigest {
        TokenDigest::from_bytes([n; 32])
    }

    fn record(user: i64, n: i64) -> TokenRecord {
        TokenRecord {
            user_id: UserId(user),
            issued_at: at(1_700_000_000, n as u32),
            expires_at: at(1_800_000_000, n as u32),
            issued_position: n as u64,
            refreshes: 0,
        }
    }

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, nanos).expect("a time")
    }

    fn of(t: &TokenTable, user: i64) -> Vec<u8> {
        t.of(UserId(user)).map(|(d, _)| d.bytes()[0]).collect()
    }

    #[test]
    fn a_slot_is_72_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 72);
    }

    #[test]
    fn times_outside_nanoseconds_are_kept_exactly() {
        let mut t = TokenTable::default();
        let wide = [
            (at(-20_000_000_000, 7), at(1_700_000_000, 1)),
            (at(1_700_000_000, 1), at(20_000_000_000, 999_999_999)),
            (DateTime::from_timestamp_nanos(WIDE), at(1_800_000_000, 0)),
            (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
        ];
        for (n, (issued_at, expires_at)) in (1..).zip(wide) {
            let r = TokenRecord {
                issued_at,
                expires_at,
                ..record(1, n.into())
            };
            t.insert(digest(n), r);
            assert_eq!(t.get(&digest(n)), Some(r), "{n}");
        }
        t.insert(digest(9), record(1, 9));
        let frozen = t.frozen();
        // A slot refreshed into range, one freed and reused: nothing stale.
        assert!(t.set(&digest(1), &record(1, 1)));
        assert_eq!(t.get(&digest(1)), Some(record(1, 1)));
        assert!(t.remove(&digest(2)).is_some());
        t.insert(digest(10), record(1, 10));
        assert_eq!(t.get(&digest(10)), Some(record(1, 10)));
        assert_eq!(t.slots.wide.len(), 2);
        let (issued_at, expires_at) = wide[0];
        let first = frozen.iter().find(|(d, _)| *d == digest(1)).map(|(_, r)| r);
        assert_eq!(
            first,
            Some(TokenRecord {
                issued_at,
                expires_at,
                ..record(1, 1)
            })
        );
        assert_eq!(frozen.iter().count(), 5);
    }

    #[test]
    fn tokens_are_found_by_digest_and_listed_by_user() {
        let mut t = TokenTable::default();
        for n in 1..=6 {
            t.insert(digest(n), record(i64::from(n % 2) + 1, n.into()));
        }
        assert_eq!(t.len(), 6);
        assert_eq!(t.get(&digest(3)), Some(record(2, 3)));
        assert_eq!(t.get(&digest(9)), None);
        assert_eq!(of(&t, 1), [6, 4, 2]);
        assert_eq!(of(&t, 2), [5, 3, 1]);
        assert_eq!(t.remove(&digest(4)), Some(record(1, 4)));
        assert_eq!(t.remove(&digest(4)), None);
        assert_eq!(of(&t, 1), [6, 2]);
        // The freed slot is reused, and the lists stay right.
        t.insert(digest(7), record(2, 7));
        assert_eq!(t.slots.len, 6);
        assert_eq!(of(&t, 2), [7, 5, 3, 1]);
        assert_eq!(t.get(&digest(7)), Some(record(2, 7)));
        t.retain_of(UserId(2), |d, _| d.bytes()[0] > 3);
        assert_eq!(of(&t, 2), [7, 5]);
        assert_eq!(t.get(&digest(1)), None);
        t.retain(|d, _| d.bytes()[0] != 6);
        assert_eq!(of(&t, 1), [2]);
        t.retain_of(UserId(1), |_, _| false);
        assert!(!t.holds_any(UserId(1)));
        assert_eq!(t.len(), 2);
        let mut all: Vec<u8> = t.frozen().iter().map(|(d, _)| d.bytes()[0]).collect();
        all.sort_unstable();
        assert_eq!(all, [5, 7]);
    }

    #[test]
    fn frozen_tokens_stay_as_they_were_while_the_table_changes() {
        let mut t = TokenTable::default();
        for n in 1..=200u8 {
            t.insert(digest(n), record(i64::from(n % 3) + 1, n.into()));
        }
        let frozen = t.frozen();
        let listed = |it: &mut dyn Iterator<Item = (TokenDigest, TokenRecord)>| {
            let mut all: Vec<(u8, TokenRecord)> = it.map(|(d, r)| (d.bytes()[0], r)).collect();
            all.sort_unstable_by_key(|(d, _)| *d);
            all
        };
        let before = listed(&mut t.frozen().iter());
        let mut refreshed = record(1, 3);
        refreshed.refreshes = 9;
        assert!(t.set(&digest(3), &refreshed));
        t.remove(&digest(4));
        t.retain_of(UserId(2), |_, _| false);
        t.insert(digest(201), record(1, 201));
        assert_ne!(listed(&mut t.frozen().iter()), before);
        assert_eq!(frozen.len(), 200);
        assert_eq!(listed(&mut frozen.iter()), before);
        // The table itself is whole after the copies.
        assert_eq!(t.get(&digest(3)), Some(refreshed));
        assert_eq!(t.len(), t.frozen().iter().count());
    }

    #[test]
    fn a_record_is_replaced_in_place() {
        let mut t = TokenTable::default();
        t.insert(digest(1), record(1, 1));
        let mut refreshed = record(1, 1);
        refreshed.refreshes = 2;
        assert!(t.set(&digest(1), &refreshed));
        assert!(!t.set(&digest(2), &refreshed));
        assert_eq!(t.get(&digest(1)), Some(refreshed));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn many_tokens_survive_growth_and_removal() {
        let mut t = TokenTable::default();
        let d = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            TokenDigest::from_bytes(b)
        };
        for n in 0..10_000u32 {
            t.insert(d(n), record(i64::from(n % 7) + 1, n.into()));
        }
        for n in (0..10_000u32).step_by(3) {
            assert!(t.remove(&d(n)).is_some());
        }
        for n in 0..10_000u32 {
            assert_eq!(t.get(&d(n)).is_some(), n % 3 != 0, "{n}");
        }
        let listed: usize = (1..=7).map(|u| t.of(UserId(u)).count()).sum();
        assert_eq!(listed, t.len());
        assert_eq!(t.len(), 10_000 - 3_334);
    }
}
