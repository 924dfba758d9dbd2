//! The movie list: every movie by id, with its rating statistics, and the
//! list's tag (what `GET` answers `304 Not Modified` from).

use std::collections::BTreeMap;

use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Page;
use super::finding::{Cursor, Folded, Found, Query, Scoring, Sorted};
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
    rows: BTreeMap<MovieId, MovieRow>,
    /// The list's tag: SHA-256 chained over every movie added, in feed
    /// order (derived, so not part of the canonical JSON). Any future event
    /// that changes what a list shows (id, title, director) must extend it.
    #[serde(skip)]
    etag: [u8; 32],
    /// How many ratings there are, and their sum: the mean a score pulls
    /// toward (derived).
    #[serde(skip)]
    rated: (u64, u64),
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
                if let Some(m) = self.rows.get_mut(&movie) {
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
        self.rows.get(&id)
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
                .values()
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
    /// with its score under `scoring`. A scan of every movie: the search,
    /// threshold and scores change with every rating; only the page is
    /// sorted in full (the rest is partitioned around it).
    pub fn find(&self, query: &Query, scoring: Scoring, window: &Window) -> FoundPage {
        let mut found: Vec<Sorted<'_>> = self
            .rows
            .values()
            .filter(|row| query.matches(row, &row.folded))
            .map(|row| Sorted {
                found: Found {
                    row,
                    score: scoring.score(row.rating_count, row.rating_sum),
                },
                folded: &row.folded,
            })
            .collect();
        let count = found.len();
        let order = |a: &Sorted<'_>, b: &Sorted<'_>| query.compare(a, b);
        let (page, next, previous) = match window {
            Window::Offset { limit, offset } => {
                let end = limit.map_or(count, |l| offset.saturating_add(l).min(count));
                let start = (*offset).min(end);
                sort_prefix(&mut found, end, order);
                (found.drain(start..end).collect::<Vec<_>>(), None, None)
            }
            Window::Cursor { cursor, size } => {
                let size = (*size).max(1);
                let reverse = cursor.as_ref().is_some_and(|c| c.reverse);
                if let Some(c) = cursor {
                    // Only the movies past the boundary, in the page's
                    // direction.
                    found.retain(|s| {
                        let side = query.compare_key(&c.key, s);
                        if c.reverse {
                            side == std::cmp::Ordering::Greater
                        } else {
                            side == std::cmp::Ordering::Less
                        }
                    });
                }
                let beyond = found.len() > size;
                let page = if reverse {
                    // The last `size` before the boundary.
                    let flipped = |a: &Sorted<'_>, b: &Sorted<'_>| order(b, a);
                    let n = size.min(found.len());
                    sort_prefix(&mut found, n, flipped);
                    found.truncate(size);
                    found.reverse();
                    found
                } else {
                    let n = size.min(found.len());
                    sort_prefix(&mut found, n, order);
                    found.truncate(size);
                    found
                };
                let ordering = query.ordering.canonical();
                let make = |s: &Sorted<'_>, reverse| Cursor {
                    ordering: ordering.clone(),
                    key: query.key_of(s),
                    reverse,
                };
                // Forward: a next page if more remain; a previous one if a
                // boundary was given. Backwards: the mirror.
                let (has_next, has_previous) = if reverse {
                    (true, beyond)
                } else {
                    (beyond, cursor.is_some())
                };
                let next = page.last().filter(|_| has_next).map(|s| make(s, false));
                let previous = page.first().filter(|_| has_previous).map(|s| make(s, true));
                (page, next, previous)
            }
        };
        FoundPage {
            items: page
                .into_iter()
                .map(|s| (s.found.row.clone(), s.found.score))
                .collect(),
            count,
            next,
            previous,
        }
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

    pub(super) fn encode(&self, out: &mut Encoder<'_>) {
        out.fixed(&self.etag);
        out.count(self.rows.len());
        for m in self.rows.values() {
            out.i64(m.id);
            out.str(&m.title);
            out.str(&m.director);
            out.i64(m.added_by);
            out.u64(m.rating_count);
            out.u64(m.rating_sum);
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
            list.rows.insert(id, row);
        }
        Ok(list)
    }
}

/// Sorts the first `n` of `items` by `order` (the smallest `n`, in
/// order); the rest are left after them, unsorted.
fn sort_prefix<T>(items: &mut [T], n: usize, order: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if n == 0 {
        return;
    }
    if n < items.len() {
        items.select_nth_unstable_by(n - 1, &order);
    }
    items[..n].sort_unstable_by(&order);
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
