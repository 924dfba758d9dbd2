//! The rating list: every rating by id ascending, each movie's rating ids,
//! and cuts (the list at one position) that a listing read in pages, on any
//! replica, is served from.

use std::collections::{HashMap, HashSet};

use event_sourcing::read_model::compact::{CompactVec, DeltaVec, Narrow, narrow_id};
use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, i64_at};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Page;
use crate::domain::{CatalogEvent, MovieId, Rating, RatingId, UserId};

/// A rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RatingRow {
    /// Its id.
    pub id: RatingId,
    /// The movie rated.
    pub movie: MovieId,
    /// Who rated it.
    pub user: UserId,
    /// 1..=5.
    pub rating: Rating,
}

/// The rating list at one position: what a listing read in pages (from
/// any replica) shows, so that the pages make up one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingsCut {
    /// Every event up to here, none after.
    pub position: u64,
    /// The greatest rating id then.
    pub max_id: RatingId,
    /// How many ratings then.
    pub count: usize,
    /// The list's tag then (128 bits).
    pub tag: [u8; 16],
}

/// Every rating, compact: 12 bytes each in the list and 4 in their
/// movie's index while ids fit in 32 bits (user ids in 29), else 24 and 8
/// (plus the vectors' spare capacity), a bit in [`LateBits`], and for one
/// applied late its difference from the late one before (a byte while
/// within 63 of it).
#[derive(Debug, Default, Serialize)]
pub struct RatingList {
    /// Every rating, by id ascending.
    list: CompactVec<Packed>,
    /// Each movie's rating ids, ascending.
    #[serde(skip)]
    by_movie: HashMap<MovieId, CompactVec<RatingId>>,
    /// The list's tag: SHA-256 chained over every rating, in feed order
    /// (derived, so not part of the canonical JSON).
    #[serde(skip)]
    tag: [u8; 32],
    /// The ratings applied after one with a greater id (ids are allocated
    /// before their command commits, so a race commits them out of order),
    /// in the order they were applied: what a [`RatingsCut`] leaves out.
    /// Under concurrent writers most ratings can be late, so these are
    /// kept as the differences between neighbours (a late id is a few
    /// from the one before it: a byte each), copy-on-write too.
    #[serde(skip)]
    late: DeltaVec,
    /// Which of the ratings, in the order they were applied, were late: a
    /// cut's `count` (the ratings it holds) says how many of `late` it
    /// holds, with no position kept per late rating.
    #[serde(skip)]
    late_bits: LateBits,
}

impl RatingList {
    /// Folds one event: a rating joins the list.
    pub(super) fn apply(&mut self, event: &CatalogEvent) {
        let CatalogEvent::MovieRated {
            id,
            movie,
            user,
            rating,
        } = *event
        else {
            return;
        };
        let row = RatingRow {
            id,
            movie,
            user,
            rating,
        };
        let late = self.list.last().is_some_and(|last| last.id > id);
        if late {
            self.late.push(id.0);
        }
        self.late_bits.push(late);
        self.tag = chain_rating(&self.tag, &row);
        insert_sorted(&mut self.list, Packed::new(row), |p| p.id);
        insert_sorted(self.by_movie.entry(movie).or_default(), id, |&i| i);
    }

    /// A rating by id.
    pub fn get(&self, id: RatingId) -> Option<RatingRow> {
        let at = self.list.partition_point(|p| p.id < id);
        self.list.get(at).filter(|p| p.id == id).map(Packed::row)
    }

    /// How many ratings there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Ratings by id ascending, optionally of one movie; `limit: None` means all.
    pub fn page(
        &self,
        movie: Option<MovieId>,
        limit: Option<usize>,
        offset: usize,
    ) -> Page<RatingRow> {
        let take = limit.unwrap_or(usize::MAX);
        match movie {
            None => Page {
                items: self
                    .list
                    .iter()
                    .skip(offset)
                    .take(take)
                    .map(Packed::row)
                    .collect(),
                count: self.list.len(),
            },
            Some(m) => {
                let Some(ids) = self.by_movie.get(&m) else {
                    return Page {
                        items: Vec::new(),
                        count: 0,
                    };
                };
                Page {
                    items: ids
                        .iter()
                        .skip(offset)
                        .take(take)
                        .filter_map(|id| self.get(id))
                        .collect(),
                    count: ids.len(),
                }
            }
        }
    }

    /// The list as it is now, every event up to `position` applied, as a
    /// cut to read it at.
    pub(super) fn cut(&self, position: u64) -> RatingsCut {
        let mut tag = [0; 16];
        tag.copy_from_slice(&self.tag[..16]);
        RatingsCut {
            position,
            max_id: self.list.last().map_or(RatingId(0), |p| p.id),
            count: self.list.len(),
            tag,
        }
    }

    /// Up to `limit` ratings with an id above `after`, by id ascending, of
    /// the list as it was at `cut` (`cut.position` must be applied here).
    pub fn at(&self, cut: &RatingsCut, after: RatingId, limit: usize) -> Vec<RatingRow> {
        // Applied after the cut below its greatest id: the late ratings
        // after the cut's `count` first ones (few, and at the end).
        let after_cut = self.late_bits.ones_from(cut.count);
        let later: HashSet<RatingId> = self.late.iter_rev().take(after_cut).map(RatingId).collect();
        let start = self.list.partition_point(|p| p.id <= after);
        self.list
            .iter()
            .skip(start)
            .take_while(|p| p.id <= cut.max_id)
            .filter(|p| !later.contains(&p.id))
            .take(limit)
            .map(Packed::row)
            .collect()
    }

    /// What a snapshot writes of the list, as it is now: a clone that
    /// shares the list's chunks until either changes (the index by movie
    /// is rebuilt on decode, so not taken).
    pub(super) fn frozen(&self) -> FrozenRatings {
        FrozenRatings {
            tag: self.tag,
            list: self.list.clone(),
            late: self.late.clone(),
            late_bits: self.late_bits.clone(),
        }
    }

    pub(super) fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut ratings = RatingList {
            tag: input.array()?,
            ..Self::default()
        };
        input.records(24, |record| {
            let p = Packed {
                id: RatingId(i64_at(record, 0)),
                movie: MovieId(i64_at(record, 8)),
                user_rating: i64_at(record, 16),
            };
            if !(1..=5).contains(&(p.user_rating & 7)) {
                return Err(Damaged("a rating out of range"));
            }
            if ratings.list.last().is_some_and(|last| last.id >= p.id) {
                return Err(Damaged("ratings out of order"));
            }
            ratings.list.push(p);
            ratings.by_movie.entry(p.movie).or_default().push(p.id);
            Ok(())
        })?;
        for _ in 0..input.count(8)? {
            ratings.late.push(input.i64()?);
        }
        ratings.late_bits = LateBits::decode(input, ratings.list.len())?;
        if ratings.late_bits.ones_from(0) != ratings.late.len() {
            return Err(Damaged("late ratings that do not match their bits"));
        }
        Ok(ratings)
    }

    /// The late ratings, each with how many ratings were applied before it.
    #[cfg(test)]
    pub(super) fn late(&self) -> Vec<(RatingId, usize)> {
        let applied = (0..self.late_bits.len).filter(|&i| self.late_bits.get(i));
        self.late.iter().map(RatingId).zip(applied).collect()
    }
}

/// The rating list as a snapshot writes it (see [`RatingList::frozen`]).
pub(super) struct FrozenRatings {
    tag: [u8; 32],
    list: CompactVec<Packed>,
    late: DeltaVec,
    late_bits: LateBits,
}

impl FrozenRatings {
    pub(super) fn encode(&self, out: &mut Encoder<'_>) {
        out.fixed(&self.tag);
        out.records_of(self.list.iter(), 24, |p, slot| {
            slot[..8].copy_from_slice(&p.id.0.to_le_bytes());
            slot[8..16].copy_from_slice(&p.movie.0.to_le_bytes());
            slot[16..].copy_from_slice(&p.user_rating.to_le_bytes());
        });
        out.count(self.late.len());
        for id in self.late.iter() {
            out.i64(id);
        }
        self.late_bits.encode(out);
    }
}

/// A rating in 24 bytes: the user and the rating share one word. Kept in
/// 12 ([`NarrowRow`]) while its ids fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Packed {
    id: RatingId,
    movie: MovieId,
    /// `user << 3 | rating` (a rating is 1..=5; user ids are positive and
    /// far below 2^60).
    user_rating: i64,
}

/// A [`Packed`] in 12 bytes.
#[derive(Debug, Clone, Copy)]
struct NarrowRow {
    id: u32,
    movie: u32,
    user_rating: u32,
}

impl Narrow for Packed {
    type Narrow = NarrowRow;

    fn narrow(self) -> Option<NarrowRow> {
        Some(NarrowRow {
            id: narrow_id(self.id.0)?,
            movie: narrow_id(self.movie.0)?,
            user_rating: narrow_id(self.user_rating)?,
        })
    }

    fn widen(n: NarrowRow) -> Self {
        Packed {
            id: RatingId(n.id.into()),
            movie: MovieId(n.movie.into()),
            user_rating: n.user_rating.into(),
        }
    }
}

/// One bit per rating, in the order they were applied: whether it was
/// late (see `RatingList::late_bits`). Full words are kept copy-on-write.
#[derive(Debug, Default, Clone)]
struct LateBits {
    /// The full words, bit `i % 64` of word `i / 64` for rating `i`.
    words: CompactVec<u64>,
    /// The bits after them.
    last: u64,
    /// How many bits.
    len: usize,
}

impl LateBits {
    fn push(&mut self, bit: bool) {
        self.last |= u64::from(bit) << (self.len % 64);
        self.len += 1;
        if self.len % 64 == 0 {
            self.words.push(self.last);
            self.last = 0;
        }
    }

    #[cfg(test)]
    fn get(&self, i: usize) -> bool {
        let word = self.words.get(i / 64).unwrap_or(self.last);
        i < self.len && word >> (i % 64) & 1 == 1
    }

    /// How many bits are set from bit `from` on (0 past the end).
    fn ones_from(&self, from: usize) -> usize {
        if from >= self.len {
            return 0;
        }
        // The word holding bit `from` (shifted down to it), and every one
        // after it, the partial last one included.
        let words = self.words.iter().skip(from / 64).chain([self.last]);
        (0..)
            .zip(words)
            .map(|(k, word)| if k == 0 { word >> (from % 64) } else { word })
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// Written as its words, the partial last one included (its length is
    /// the list's).
    fn encode(&self, out: &mut Encoder<'_>) {
        for word in self.words.iter() {
            out.u64(word);
        }
        out.u64(self.last);
    }

    /// The bits of a list of `len` ratings, as [`LateBits::encode`] wrote
    /// them.
    fn decode(input: &mut Decoder<'_>, len: usize) -> Result<Self, Damaged> {
        let mut bits = LateBits::default();
        for _ in 0..len / 64 {
            bits.words.push(input.u64()?);
        }
        bits.last = input.u64()?;
        bits.len = len;
        if bits.last >> (len % 64) != 0 {
            return Err(Damaged("late bits past the list's end"));
        }
        Ok(bits)
    }
}

impl Narrow for RatingId {
    type Narrow = u32;

    fn narrow(self) -> Option<u32> {
        narrow_id(self.0)
    }

    fn widen(n: u32) -> Self {
        RatingId(n.into())
    }
}

impl Packed {
    fn new(row: RatingRow) -> Self {
        Self {
            id: row.id,
            movie: row.movie,
            user_rating: (row.user.0 << 3) | i64::from(row.rating.get()),
        }
    }

    fn row(self) -> RatingRow {
        RatingRow {
            id: self.id,
            movie: self.movie,
            user: UserId(self.user_rating >> 3),
            rating: Rating::from_stored((self.user_rating & 7) as u8),
        }
    }
}

/// Inserts `item` into `sorted` (ascending by `key`), where it almost
/// always goes last: ids are allocated in order, and only a race between
/// two commands commits them out of order.
fn insert_sorted<T: Narrow, K: Ord>(sorted: &mut CompactVec<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    match sorted.last() {
        Some(last) if key(&last) > k => {
            let at = sorted.partition_point(|x| key(&x) < k);
            sorted.insert(at, item);
        }
        _ => sorted.push(item),
    }
}

/// The next rating-list tag: `previous` extended by one rating.
fn chain_rating(previous: &[u8; 32], row: &RatingRow) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    for field in [
        row.id.0,
        row.movie.0,
        row.user.0,
        i64::from(row.rating.get()),
    ] {
        h.update(field.to_le_bytes());
    }
    h.finalize().into()
}
