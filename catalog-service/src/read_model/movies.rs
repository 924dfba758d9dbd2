//! The movie list: every movie by id, with its rating statistics, and the
//! list's tag (what `GET` answers `304 Not Modified` from).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use event_sourcing::read_model::cow::CowRanges;
use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Page;
use super::finding::{Cursor, Folded, Found, Query, Scoring};
use crate::domain::{CatalogEvent, MovieId, UserId};

/// A movie with its rating statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovieRow {
    /// Its id.
    pub id: MovieId,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
    /// Who added it.
    pub added_by: UserId,
    /// How many ratings it has.
    pub rating_count: u64,
    /// The sum of its ratings (the average is derived).
    pub rating_sum: u64,
    /// Its title and director as search and ordering compare them
    /// (derived, so not part of the canonical JSON).
    #[serde(skip)]
    pub folded: Folded,
}

impl MovieRow {
    /// The mean rating, or `None` when unrated.
    pub fn rating_average(&self) -> Option<f64> {
        (self.rating_count > 0).then(|| self.rating_sum as f64 / self.rating_count as f64)
    }
}

/// Every movie, by id ascending.
#[derive(Debug, Default, Serialize)]
pub struct MovieList {
    /// By id (handed out in order, so dense), copy-on-write: a snapshot
    /// takes them in microseconds (see [`MovieList::frozen`]).
    rows: CowRanges<MovieId, MovieRow>,
    /// The list's tag: SHA-256 chained over every movie added, in feed
    /// order (derived, so not part of the canonical JSON). Any future event
    /// that changes what a list shows (id, title, director) must extend it.
    #[serde(skip)]
    etag: [u8; 32],
    /// How many ratings there are, and their sum: the mean a score pulls
    /// toward (derived).
    #[serde(skip)]
    rated: (u64, u64),
    /// Finds' orders, kept until the next event (derived).
    #[serde(skip)]
    orders: Orders,
}

/// The most finds' orders kept, and the most ids in them all (8 bytes
/// each): what the distinct finds of outsiders can make us hold.
const MAX_ORDERS: usize = 32;
/// See [`MAX_ORDERS`].
const MAX_ORDERED_IDS: usize = 2_000_000;

/// The full orders of recent finds, by query: valid for the list as it is,
/// so every event applied clears them (`apply` has the list to itself).
/// Past [`MAX_ORDERS`] or [`MAX_ORDERED_IDS`], all are dropped at once.
/// Read-locked: concurrent finds of kept orders do not wait on each other.
#[derive(Debug, Default)]
struct Orders(RwLock<HashMap<String, Arc<[MovieId]>>>);

impl Orders {
    fn get(&self, key: &str) -> Option<Arc<[MovieId]>> {
        let kept = self.0.read().unwrap_or_else(|p| p.into_inner());
        kept.get(key).cloned()
    }

    fn put(&self, key: String, order: Arc<[MovieId]>) {
        let mut kept = self.0.write().unwrap_or_else(|p| p.into_inner());
        let held: usize = kept.values().map(|o| o.len()).sum();
        if kept.len() >= MAX_ORDERS || held + order.len() > MAX_ORDERED_IDS {
            kept.clear();
        }
        kept.insert(key, order);
    }

    fn clear(&mut self) {
        let kept = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        if !kept.is_empty() {
            kept.clear();
        }
    }
}

/// Which part of a found list to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// `?limit&offset` (`limit: None`: all).
    Offset {
        /// Page size.
        limit: Option<usize>,
        /// Rows skipped.
        offset: usize,
    },
    /// `?cursor`: `size` movies after (or before) the cursor's boundary,
    /// or the first `size` without one.
    Cursor {
        /// Where the page starts.
        cursor: Option<Cursor>,
        /// Page size.
        size: usize,
    },
}

/// A found list's page.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPage {
    /// The movies, each with its score.
    pub items: Vec<(MovieRow, Option<f64>)>,
    /// How many movies match (offset windows).
    pub count: usize,
    /// The cursor of the next page (cursor windows), if there is one.
    pub next: Option<Cursor>,
    /// The cursor of the previous page (cursor windows), if there is one.
    pub previous: Option<Cursor>,
}

/// What [`MovieList::listing`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum MovieListing {
    /// The list still has the tag the caller gave.
    NotModified {
        /// The list's tag.
        etag: [u8; 32],
        /// How many movies exist.
        count: usize,
    },
    /// The list has changed, or the caller gave no tag.
    Page {
        /// The list's tag.
        etag: [u8; 32],
        /// The rows asked for.
        page: Page<MovieRow>,
    },
}

impl MovieList {
    /// Folds one event: a movie added, or a rating counted in its movie's
    /// statistics.
    pub(super) fn apply(&mut self, event: CatalogEvent) {
        self.orders.clear();
        match event {
            CatalogEvent::MovieAdded {
                id,
                title,
                director,
                added_by,
            } => {
                self.etag = chain_movie(&self.etag, id.0, &title, &director);
                let row = MovieRow {
                    id,
                    folded: Folded::of(&title, &director),
                    title,
                    director,
                    added_by,
                    rating_count: 0,
                    rating_sum: 0,
                };
                self.rows.insert(id, row);
            }
            CatalogEvent::MovieRated { movie, rating, .. } => {
                if let Some(m) = self.rows.get_mut(movie) {
                    m.rating_count += 1;
                    m.rating_sum += u64::from(rating.get());
                    self.rated.0 += 1;
                    self.rated.1 += u64::from(rating.get());
                }
            }
        }
    }

    /// A movie by id.
    pub fn get(&self, id: MovieId) -> Option<&MovieRow> {
        self.rows.get(id)
    }

    /// How many movies there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Movies by id ascending; `limit: None` means all.
    pub fn page(&self, limit: Option<usize>, offset: usize) -> Page<MovieRow> {
        Page {
            items: self
                .rows
                .iter()
                .map(|(_, row)| row)
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .cloned()
                .collect(),
            count: self.rows.len(),
        }
    }

    /// How scores are made, with `min_votes` as `m`.
    pub fn scoring(&self, min_votes: u64) -> Scoring {
        let (count, sum) = self.rated;
        Scoring {
            mean: (count > 0).then(|| sum as f64 / count as f64),
            min_votes,
        }
    }

    /// The movies `query` finds, in its order, the `window` of them, each
    /// with its score under `scoring`. The whole order is made once (a
    /// scan and a sort) and kept until the list changes (see [`Orders`]):
    /// repeated finds, pages and cursor walks over unchanged data are
    /// slices and binary searches of it.
    pub fn find(&self, query: &Query, scoring: Scoring, window: &Window) -> FoundPage {
        let order = self.order_of(query, scoring);
        // A kept order names only listed movies: every event clears them.
        let sorted =
            |id: &MovieId| scoring.found(self.get(*id).expect("an ordered movie is listed"));
        let count = order.len();
        let (range, next, previous) = match window {
            Window::Offset { limit, offset } => {
                let end = limit.map_or(count, |l| offset.saturating_add(l).min(count));
                ((*offset).min(end)..end, None, None)
            }
            Window::Cursor { cursor, size } => {
                let size = (*size).max(1);
                let range = match cursor {
                    None => 0..size.min(count),
                    Some(c) if c.reverse => {
                        // The last `size` before the boundary.
                        let end = order.partition_point(|id| {
                            query.compare_key(&c.key, &sorted(id)) == std::cmp::Ordering::Greater
                        });
                        end.saturating_sub(size)..end
                    }
                    Some(c) => {
                        // The first `size` after the boundary.
                        let start = order.partition_point(|id| {
                            query.compare_key(&c.key, &sorted(id)) != std::cmp::Ordering::Less
                        });
                        start..start.saturating_add(size).min(count)
                    }
                };
                let make = |id: &MovieId, reverse| Cursor {
                    ordering: query.ordering.canonical(),
                    key: query.key_of(&sorted(id)),
                    reverse,
                };
                let next = (range.end < count && !range.is_empty())
                    .then(|| make(&order[range.end - 1], false));
                let previous =
                    (range.start > 0 && !range.is_empty()).then(|| make(&order[range.start], true));
                (range, next, previous)
            }
        };
        FoundPage {
            items: order[range]
                .iter()
                .map(|id| {
                    let s = sorted(id);
                    (s.row.clone(), s.score)
                })
                .collect(),
            count,
            next,
            previous,
        }
    }

    /// The ids `query` finds, in its order: kept, or made now and kept.
    fn order_of(&self, query: &Query, scoring: Scoring) -> Arc<[MovieId]> {
        let key = format!(
            "{:?}|{}|{}|{}",
            query.terms,
            query.ordering.canonical(),
            query.min_ratings,
            scoring.min_votes
        );
        if let Some(kept) = self.orders.get(&key) {
            return kept;
        }
        let mut found: Vec<Found<'_>> = self
            .rows
            .iter()
            .map(|(_, row)| row)
            .filter(|row| query.matches(row))
            .map(|row| scoring.found(row))
            .collect();
        found.sort_unstable_by(|a, b| query.compare(a, b));
        let order: Arc<[MovieId]> = found.iter().map(|s| s.row.id).collect();
        self.orders.put(key, order.clone());
        order
    }

    /// Names the list's content: it changes with every movie added, and
    /// replicas that folded the same events agree on it.
    pub fn etag(&self) -> &[u8; 32] {
        &self.etag
    }

    /// Movies by id ascending with the list's tag, both read at one instant;
    /// no rows when the list's tag is `if_none_match` (the caller has them).
    pub fn listing(
        &self,
        limit: Option<usize>,
        offset: usize,
        if_none_match: &[u8],
    ) -> MovieListing {
        let etag = self.etag;
        if if_none_match == etag {
            MovieListing::NotModified {
                etag,
                count: self.rows.len(),
            }
        } else {
            MovieListing::Page {
                etag,
                page: self.page(limit, offset),
            }
        }
    }

    /// What a snapshot writes of the list, as it is now: a clone that
    /// shares the rows' ranges until either changes.
    pub(super) fn frozen(&self) -> FrozenMovies {
        FrozenMovies {
            etag: self.etag,
            rows: self.rows.clone(),
        }
    }

    pub(super) fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut list = MovieList {
            etag: input.array()?,
            ..Self::default()
        };
        for _ in 0..input.count(48)? {
            let id = MovieId(input.i64()?);
            let (title, director) = (input.str()?, input.str()?);
            let row = MovieRow {
                id,
                folded: Folded::of(&title, &director),
                title,
                director,
                added_by: input.id()?,
                rating_count: input.u64()?,
                rating_sum: input.u64()?,
            };
            list.rated.0 += row.rating_count;
            list.rated.1 += row.rating_sum;
            if list.rows.insert(id, row).is_some() {
                return Err(Damaged("a movie twice"));
            }
        }
        Ok(list)
    }
}

/// The movie list as a snapshot writes it (see [`MovieList::frozen`]).
pub(super) struct FrozenMovies {
    etag: [u8; 32],
    rows: CowRanges<MovieId, MovieRow>,
}

impl FrozenMovies {
    pub(super) fn encode(&self, out: &mut Encoder<'_>) {
        out.fixed(&self.etag);
        out.count(self.rows.len());
        for (_, m) in self.rows.iter() {
            out.i64(m.id);
            out.str(&m.title);
            out.str(&m.director);
            out.i64(m.added_by);
            out.u64(m.rating_count);
            out.u64(m.rating_sum);
        }
    }
}

/// The next movie-list tag: `previous` extended by one movie, each field
/// length-prefixed so that no two different lists hash the same input.
fn chain_movie(previous: &[u8; 32], id: i64, title: &str, director: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(id.to_le_bytes());
    for text in [title, director] {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rating;
    use crate::read_model::finding::{Ordering, search_terms};

    fn list(n: i64) -> MovieList {
        let mut list = MovieList::default();
        for id in 1..=n {
            list.apply(CatalogEvent::MovieAdded {
                id: MovieId(id),
                title: format!("Film {}", (id * 7) % n),
                director: format!("Director {}", id % 3),
                added_by: UserId(1),
            });
        }
        list
    }

    fn ids(page: &FoundPage) -> Vec<i64> {
        page.items.iter().map(|(m, _)| m.id.0).collect()
    }

    /// Every page of a cursor walk, forwards and back, is the matching
    /// slice of the whole order; nothing is skipped or repeated.
    #[test]
    fn cursor_pages_are_slices_of_the_whole_order_both_ways() {
        let list = list(23);
        let query = Query {
            ordering: Ordering::parse("-director,title"),
            ..Query::default()
        };
        let scoring = list.scoring(10);
        let all = Window::Offset {
            limit: None,
            offset: 0,
        };
        let whole = ids(&list.find(&query, scoring, &all));
        assert_eq!(whole.len(), 23);
        let mut pages = vec![];
        let mut cursor = None;
        loop {
            let window = Window::Cursor { cursor, size: 5 };
            let page = list.find(&query, scoring, &window);
            pages.push((ids(&page), page.previous.clone()));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let walked: Vec<i64> = pages.iter().flat_map(|(p, _)| p.clone()).collect();
        assert_eq!(walked, whole);
        assert!(pages[0].1.is_none(), "no previous page before the first");
        // Back from each page: the page before it.
        for i in 1..pages.len() {
            let back = Window::Cursor {
                cursor: pages[i].1.clone(),
                size: 5,
            };
            assert_eq!(ids(&list.find(&query, scoring, &back)), pages[i - 1].0);
        }
    }

    /// A kept order is dropped by the next event: a find after a rating
    /// or a new movie sees it.
    #[test]
    fn kept_orders_do_not_outlive_a_change() {
        let mut list = list(5);
        let query = Query {
            terms: search_terms("film"),
            ordering: Ordering::parse("-rating_count"),
            min_ratings: 0,
        };
        let first = Window::Offset {
            limit: Some(1),
            offset: 0,
        };
        assert_eq!(ids(&list.find(&query, list.scoring(10), &first)), [1]);
        list.apply(CatalogEvent::MovieRated {
            id: crate::domain::RatingId(1),
            movie: MovieId(4),
            user: UserId(2),
            rating: Rating::from_stored(3),
        });
        assert_eq!(ids(&list.find(&query, list.scoring(10), &first)), [4]);
        list.apply(CatalogEvent::MovieAdded {
            id: MovieId(6),
            title: "Film new".into(),
            director: "D".into(),
            added_by: UserId(1),
        });
        let all = Window::Offset {
            limit: None,
            offset: 0,
        };
        assert_eq!(list.find(&query, list.scoring(10), &all).count, 6);
    }
}
