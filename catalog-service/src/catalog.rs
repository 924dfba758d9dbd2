//! The catalog's commands and queries: rules in, events out.

use std::sync::Arc;
use std::time::Duration;

use event_store::ids::IdSequence;
use event_store::projection::Projection;
use event_store::{EventStore, EventStoreError, ExpectedVersion};

use crate::domain::{
    CatalogError, CatalogEvent, MOVIE_IDS_STREAM, RATING_IDS_STREAM, Rating, Result, Text,
    movie_stream, rating_stream, unknown_movie,
};
use crate::model::{Catalog, MovieRow, Page, RatingRow};

/// How long a command waits for its own events to reach the read models.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Movies and ratings over an event store.
pub struct Movies {
    store: Arc<dyn EventStore>,
    model: Projection<Catalog>,
    movie_ids: IdSequence,
    rating_ids: IdSequence,
}

impl Movies {
    /// Rebuilds the read models from `store` and returns once they are current.
    pub async fn start(store: Arc<dyn EventStore>) -> Result<Self> {
        let model = Projection::start(store.clone(), Catalog::default()).await?;
        {
            let m = model.read();
            tracing::info!(
                movies = m.movies(Some(0), 0).count,
                ratings = m.ratings(None, Some(0), 0).count,
                checkpoint = m.checkpoint(),
                "catalog read models rebuilt"
            );
        }
        Ok(Self {
            store,
            model,
            movie_ids: IdSequence::new(MOVIE_IDS_STREAM, "MovieIdAllocated"),
            rating_ids: IdSequence::new(RATING_IDS_STREAM, "RatingIdAllocated"),
        })
    }

    /// The read models, for queries. Hold the guard briefly.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.model.read()
    }

    /// Adds a movie on behalf of `user`.
    #[tracing::instrument(skip(self, title, director))]
    pub async fn add_movie(&self, user: i64, title: &str, director: &str) -> Result<MovieRow> {
        let (title, director) = match (
            Text::parse("title", title),
            Text::parse("director", director),
        ) {
            (Ok(t), Ok(d)) => (t.into_inner(), d.into_inner()),
            (t, d) => {
                return Err(CatalogError::Invalid(
                    [t.err(), d.err()].into_iter().flatten().collect(),
                ));
            }
        };
        let id = self.movie_ids.next(&self.store).await?;
        let event = CatalogEvent::MovieAdded {
            id,
            title: title.clone(),
            director: director.clone(),
            added_by: user,
        };
        let appended = self
            .store
            .append(
                &movie_stream(id),
                ExpectedVersion::NoStream,
                vec![event.to_new_event()],
            )
            .await?;
        self.await_applied(appended.position).await?;
        tracing::info!(movie = id, "movie added");
        Ok(MovieRow {
            id,
            title,
            director,
            added_by: user,
            rating_count: 0,
            rating_sum: 0,
        })
    }

    /// Rates `movie` on behalf of `user`. The rules are checked against the
    /// event store, not the read models: the movie's own stream says whether
    /// it exists and who added it, and the rating's stream, appended with
    /// `NoStream`, admits exactly one rating per user and movie.
    #[tracing::instrument(skip(self))]
    pub async fn rate_movie(&self, user: i64, movie: i64, rating: i64) -> Result<RatingRow> {
        let rating = Rating::parse(rating).map_err(|e| CatalogError::Invalid(vec![e]))?;
        if movie <= 0 {
            return Err(unknown_movie(movie));
        }
        // Cheap refusal before touching the store; the store still decides.
        if self.read().has_rated(movie, user) {
            return Err(CatalogError::CannotRate);
        }
        let added_by = self
            .store
            .read_stream(&movie_stream(movie), 0)
            .await?
            .iter()
            .find_map(|e| match e.decode::<CatalogEvent>() {
                Ok(CatalogEvent::MovieAdded { added_by, .. }) => Some(added_by),
                _ => None,
            })
            .ok_or_else(|| unknown_movie(movie))?;
        if added_by == user {
            return Err(CatalogError::CannotRate);
        }
        let id = self.rating_ids.next(&self.store).await?;
        let event = CatalogEvent::MovieRated {
            id,
            movie,
            user,
            rating: rating.get(),
        };
        let appended = self
            .store
            .append(
                &rating_stream(movie, user),
                ExpectedVersion::NoStream,
                vec![event.to_new_event()],
            )
            .await;
        let position = match appended {
            Ok(r) => r.position,
            Err(EventStoreError::WrongExpectedVersion { .. }) => {
                return Err(CatalogError::CannotRate);
            }
            Err(e) => return Err(e.into()),
        };
        self.await_applied(position).await?;
        tracing::info!(rating = id, "movie rated");
        Ok(RatingRow {
            id,
            movie,
            user,
            rating: rating.get(),
        })
    }

    /// A movie with its statistics.
    pub fn movie(&self, id: i64) -> Result<MovieRow> {
        self.read().movie(id).cloned().ok_or(CatalogError::NotFound)
    }

    /// Movies by id ascending with the list's tag, both read at one instant;
    /// no rows when the list's tag is `if_none_match` (the caller has them).
    pub fn movies_unless(
        &self,
        limit: Option<u32>,
        offset: u32,
        if_none_match: &[u8],
    ) -> MovieListing {
        let model = self.read();
        let etag = *model.movies_etag();
        if if_none_match == etag {
            MovieListing::NotModified {
                etag,
                count: model.movies(Some(0), 0).count,
            }
        } else {
            MovieListing::Page {
                etag,
                page: model.movies(limit.map(|l| l as usize), offset as usize),
            }
        }
    }

    /// Ratings by id ascending, optionally of one movie.
    pub fn ratings(&self, movie: Option<i64>, limit: Option<u32>, offset: u32) -> Page<RatingRow> {
        self.read()
            .ratings(movie, limit.map(|l| l as usize), offset as usize)
    }

    /// The store, for event subscriptions.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    async fn await_applied(&self, position: u64) -> Result<()> {
        if self.model.wait_for(position, APPLY_TIMEOUT).await {
            Ok(())
        } else {
            tracing::error!(
                position,
                "read models did not apply a committed event in time"
            );
            Err(CatalogError::NotYetApplied)
        }
    }
}

/// The answer of [`Movies::movies_unless`].
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

/// Rebuilds every read model from scratch into a fresh [`Catalog`]: what the
/// `rebuild-projections` subcommand and the equality tests use.
pub async fn rebuild(store: Arc<dyn EventStore>) -> Result<Catalog> {
    let mut catalog = Catalog::default();
    let mut next = 0;
    loop {
        let batch = store.read_all(next, 10_000).await?;
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        for event in &batch {
            event_store::projection::ReadModel::apply(&mut catalog, event);
        }
    }
    Ok(catalog)
}
