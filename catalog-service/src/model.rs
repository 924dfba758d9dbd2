//! The catalog's read models, folded from the global feed: the movie list,
//! the rating list and per-movie rating statistics.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use event_store::RecordedEvent;
use event_store::projection::ReadModel;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::{CatalogEvent, MOVIE_IDS_STREAM, RATING_IDS_STREAM};

/// A movie with its rating statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovieRow {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
    /// Who added it.
    pub added_by: i64,
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

/// A rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RatingRow {
    /// Its id.
    pub id: i64,
    /// The movie rated.
    pub movie: i64,
    /// Who rated it.
    pub user: i64,
    /// 1..=5.
    pub rating: u8,
}

/// Every read model of the catalog. Ordered maps keep listings by id
/// ascending and make the snapshot canonical.
#[derive(Debug, Default, Serialize)]
pub struct Catalog {
    movies: BTreeMap<i64, MovieRow>,
    ratings: BTreeMap<i64, RatingRow>,
    #[serde(skip)]
    ratings_by_movie: HashMap<i64, BTreeSet<i64>>,
    /// The movie list's tag: SHA-256 chained over every movie added, in
    /// feed order (derived, so not part of the snapshot). Any future event
    /// that changes what a list shows (id, title, director) must extend it.
    #[serde(skip)]
    movies_etag: [u8; 32],
    /// Position of the last event folded in: the checkpoint.
    checkpoint: u64,
}

/// One page of a listing and the size of the whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of the page.
    pub items: Vec<T>,
    /// How many rows the whole listing has.
    pub count: usize,
}

impl Catalog {
    /// A movie by id.
    pub fn movie(&self, id: i64) -> Option<&MovieRow> {
        self.movies.get(&id)
    }

    /// Movies by id ascending; `limit: None` means all.
    pub fn movies(&self, limit: Option<usize>, offset: usize) -> Page<MovieRow> {
        Page {
            items: self
                .movies
                .values()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .cloned()
                .collect(),
            count: self.movies.len(),
        }
    }

    /// Names the movie list's content: it changes with every movie added, and
    /// replicas that folded the same events agree on it.
    pub fn movies_etag(&self) -> &[u8; 32] {
        &self.movies_etag
    }

    /// Ratings by id ascending, optionally of one movie; `limit: None` means all.
    pub fn ratings(
        &self,
        movie: Option<i64>,
        limit: Option<usize>,
        offset: usize,
    ) -> Page<RatingRow> {
        let take = limit.unwrap_or(usize::MAX);
        match movie {
            None => Page {
                items: self
                    .ratings
                    .values()
                    .skip(offset)
                    .take(take)
                    .copied()
                    .collect(),
                count: self.ratings.len(),
            },
            Some(m) => {
                let ids = self.ratings_by_movie.get(&m);
                Page {
                    items: ids
                        .into_iter()
                        .flatten()
                        .skip(offset)
                        .take(take)
                        .filter_map(|id| self.ratings.get(id).copied())
                        .collect(),
                    count: ids.map_or(0, BTreeSet::len),
                }
            }
        }
    }

    /// Whether `user` has rated `movie` (a fast pre-check; the store decides).
    pub fn has_rated(&self, movie: i64, user: i64) -> bool {
        self.ratings_by_movie
            .get(&movie)
            .is_some_and(|ids| ids.iter().any(|id| self.ratings[id].user == user))
    }

    /// The global position of the last event folded in.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Canonical JSON of every read model: equal models give equal bytes.
    pub fn snapshot(&self) -> String {
        serde_json::to_string(self).expect("read models always serialize")
    }

    /// SHA-256 (hex) of [`Catalog::snapshot`].
    pub fn snapshot_digest(&self) -> String {
        hex::encode(Sha256::digest(self.snapshot().as_bytes()))
    }

    fn apply_event(&mut self, event: CatalogEvent) {
        match event {
            CatalogEvent::MovieAdded {
                id,
                title,
                director,
                added_by,
            } => {
                self.movies_etag = chain_movie(&self.movies_etag, id, &title, &director);
                self.movies.insert(
                    id,
                    MovieRow {
                        id,
                        title,
                        director,
                        added_by,
                        rating_count: 0,
                        rating_sum: 0,
                    },
                );
            }
            CatalogEvent::MovieRated {
                id,
                movie,
                user,
                rating,
            } => {
                if let Some(m) = self.movies.get_mut(&movie) {
                    m.rating_count += 1;
                    m.rating_sum += u64::from(rating);
                }
                self.ratings.insert(
                    id,
                    RatingRow {
                        id,
                        movie,
                        user,
                        rating,
                    },
                );
                self.ratings_by_movie.entry(movie).or_default().insert(id);
            }
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

impl ReadModel for Catalog {
    fn apply(&mut self, event: &RecordedEvent) {
        self.checkpoint = event.position;
        if event.stream == MOVIE_IDS_STREAM || event.stream == RATING_IDS_STREAM {
            return;
        }
        match event.decode::<CatalogEvent>() {
            Ok(e) => self.apply_event(e),
            Err(e) => tracing::warn!(
                position = event.position,
                event_type = %event.event_type,
                error = %e,
                "skipping an event the catalog cannot read"
            ),
        }
    }
}
