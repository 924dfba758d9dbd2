//! Every event of the catalog, and why its commands are refused.

use event_store::Event;
use serde::{Deserialize, Serialize};

use super::values::{MovieId, Rating, RatingId, UserId};

/// Every event of the catalog. The variant names are the stored event types:
/// stable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CatalogEvent {
    /// A movie was added.
    MovieAdded {
        /// Its id.
        id: MovieId,
        /// 1–200 characters.
        title: String,
        /// 1–200 characters.
        director: String,
        /// The user who added it.
        added_by: UserId,
    },
    /// A user rated a movie.
    MovieRated {
        /// The rating's id.
        id: RatingId,
        /// The movie.
        movie: MovieId,
        /// The user.
        user: UserId,
        /// 1..=5.
        rating: Rating,
    },
}

impl Event for CatalogEvent {}

/// Why the catalog refuses a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No movie has this id.
    UnknownMovie(MovieId),
    /// The user added this movie, or rated it already.
    CannotRate,
    /// A movie with this id exists (ids are never reused, so: a bug).
    MovieExists(MovieId),
}
