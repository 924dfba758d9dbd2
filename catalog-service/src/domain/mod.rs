//! The catalog's rules, no I/O here:
//!
//! - [`values`]: what a request carries, parsed once at the edge;
//! - [`events`]: every event, and why a command is refused;
//! - [`movie`]: the decider of a movie's stream;
//! - [`rating`]: the decider of one user's rating of one movie.

pub mod events;
pub mod movie;
pub mod rating;
pub mod values;

pub use events::{CatalogEvent, Rejection};
pub use movie::{AddMovie, MOVIE_IDS_STREAM, Movie, movie_stream};
pub use rating::{MovieRating, RATING_IDS_STREAM, RateMovie, Rated, rating_stream};
pub use values::{MAX_TEXT, MovieId, Rating, RatingId, Text, UserId};

#[cfg(test)]
mod tests;
