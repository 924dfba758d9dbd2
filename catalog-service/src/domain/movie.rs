//! A movie's stream: added once.

use event_sourcing::decider::Decider;

use super::events::{CatalogEvent, Rejection};
use super::values::{MovieId, Text, UserId};

/// The stream of one movie; its first event is `MovieAdded`.
pub fn movie_stream(movie: MovieId) -> String {
    format!("movie-{movie}")
}

/// The stream allocating movie ids.
pub const MOVIE_IDS_STREAM: &str = "movie-ids";

/// A movie, as its own stream tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Movie {
    /// No movie with this id.
    #[default]
    Unknown,
    /// The movie exists.
    Added {
        /// Who added it.
        added_by: UserId,
    },
}

/// Add a movie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddMovie {
    /// A freshly allocated id.
    pub id: MovieId,
    /// Its title.
    pub title: Text,
    /// Its director.
    pub director: Text,
    /// Who adds it.
    pub added_by: UserId,
}

impl Decider for Movie {
    type Command = AddMovie;
    type Event = CatalogEvent;
    type State = Movie;
    type Rejection = Rejection;

    fn stream(c: &AddMovie) -> String {
        movie_stream(c.id)
    }

    /// A fresh id: the movie's stream does not exist yet.
    fn starts_stream(_: &AddMovie) -> bool {
        true
    }

    fn decide(c: &AddMovie, state: &Movie) -> Result<Vec<CatalogEvent>, Rejection> {
        match state {
            Movie::Added { .. } => Err(Rejection::MovieExists(c.id)),
            Movie::Unknown => Ok(vec![CatalogEvent::MovieAdded {
                id: c.id,
                title: c.title.as_str().to_owned(),
                director: c.director.as_str().to_owned(),
                added_by: c.added_by,
            }]),
        }
    }

    fn evolve(state: Movie, event: &CatalogEvent) -> Movie {
        match event {
            CatalogEvent::MovieAdded { added_by, .. } => Movie::Added {
                added_by: *added_by,
            },
            CatalogEvent::MovieRated { .. } => state,
        }
    }
}
