//! Movies and ratings: value types parsed at the edge, events, and errors.

use event_store::{EventStoreError, NewEvent};
use serde::{Deserialize, Serialize};

/// Longest title or director accepted.
pub const MAX_TEXT: usize = 200;

/// A field that failed validation and why, in DRF's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, as named in the REST API.
    pub field: &'static str,
    /// The message shown to the client.
    pub message: String,
}

/// What a catalog command or query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// One or more request fields are invalid.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// No credentials were sent.
    #[error("no credentials")]
    NoCredentials,
    /// The token is unknown, revoked, expired or malformed.
    #[error("invalid token")]
    InvalidToken,
    /// The caller may not rate this movie (added it, or rated it already).
    #[error("rating refused")]
    CannotRate,
    /// No such movie.
    #[error("not found")]
    NotFound,
    /// SubscribeEvents without the right service key.
    #[error("service key required")]
    ServiceKeyRequired,
    /// auth-service could not be asked.
    #[error("identity check unavailable: {0}")]
    IdentityUnavailable(String),
    /// The change committed but this instance has not applied it in time.
    #[error("committed, but not yet visible on this instance")]
    NotYetApplied,
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// `Result` with [`CatalogError`].
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A title or director: 1–200 characters after trimming surrounding white
/// space (as DRF's `CharField`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// Parses the value of `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let message = if trimmed.is_empty() {
            "This field may not be blank."
        } else if trimmed.chars().count() > MAX_TEXT {
            "Ensure this field has no more than 200 characters."
        } else {
            return Ok(Self(trimmed.to_owned()));
        };
        Err(FieldError {
            field,
            message: message.to_owned(),
        })
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A rating: an integer from 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating(u8);

impl Rating {
    /// Parses a rating.
    pub fn parse(raw: i64) -> Result<Self, FieldError> {
        let message = match raw {
            1..=5 => return Ok(Self(raw as u8)),
            ..=0 => "Ensure this value is greater than or equal to 1.",
            _ => "Ensure this value is less than or equal to 5.",
        };
        Err(FieldError {
            field: "rating",
            message: message.to_owned(),
        })
    }

    /// The value, 1..=5.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// The error for a movie id that names no movie, in DRF's words.
pub fn unknown_movie(id: i64) -> CatalogError {
    CatalogError::Invalid(vec![FieldError {
        field: "movie",
        message: format!("Invalid pk \"{id}\" - object does not exist."),
    }])
}

/// The stream of one movie; its first event, appended with `NoStream`, is `MovieAdded`.
pub fn movie_stream(movie: i64) -> String {
    format!("movie-{movie}")
}

/// The stream of one user's rating of one movie: appending with `NoStream`
/// makes "one rating per user and movie" hold under any concurrency.
pub fn rating_stream(movie: i64, user: i64) -> String {
    format!("rating-{movie}-{user}")
}

/// The stream allocating movie ids.
pub const MOVIE_IDS_STREAM: &str = "movie-ids";
/// The stream allocating rating ids.
pub const RATING_IDS_STREAM: &str = "rating-ids";

/// Every event of the catalog. The variant names are the stored event types:
/// stable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CatalogEvent {
    /// A movie was added.
    MovieAdded {
        /// Positive, unique, increasing.
        id: i64,
        /// 1–200 characters.
        title: String,
        /// 1–200 characters.
        director: String,
        /// The user who added it.
        added_by: i64,
    },
    /// A user rated a movie.
    MovieRated {
        /// Positive, unique, increasing.
        id: i64,
        /// The movie.
        movie: i64,
        /// The user.
        user: i64,
        /// 1..=5.
        rating: u8,
    },
}

impl CatalogEvent {
    /// The stored event type: the variant's name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::MovieAdded { .. } => "MovieAdded",
            Self::MovieRated { .. } => "MovieRated",
        }
    }

    /// The event ready to append.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), self).expect("catalog events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(Text::parse("title", "  Up  ").unwrap().into_inner(), "Up");
        assert!(Text::parse("title", "   ").is_err());
        assert!(Text::parse("title", &"é".repeat(200)).is_ok());
        assert_eq!(
            Text::parse("director", &"é".repeat(201)).unwrap_err().field,
            "director"
        );
    }

    #[test]
    fn ratings_are_one_to_five() {
        assert!(Rating::parse(0).is_err());
        assert_eq!(Rating::parse(1).unwrap().get(), 1);
        assert_eq!(Rating::parse(5).unwrap().get(), 5);
        assert_eq!(
            Rating::parse(6).unwrap_err().message,
            "Ensure this value is less than or equal to 5."
        );
        assert!(Rating::parse(i64::MIN).is_err());
    }
}
