//! The movie list: every movie by id, with its rating statistics, and the
//! list's tag (what `GET` answers `304 Not Modified` from).

use std::collections::BTreeMap;

use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Page;
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
            let row = MovieRow {
                id,
                title: input.str()?,
                director: input.str()?,
                added_by: input.id()?,
                rating_count: input.u64()?,
                rating_sum: input.u64()?,
            };
            list.rows.insert(id, row);
        }
        Ok(list)
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
