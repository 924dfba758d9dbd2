//! One user's rating of one movie: its own stream, and the movie's read.

use event_sourcing::decider::Decider;

use super::events::{CatalogEvent, Rejection};
use super::movie::{Movie, movie_stream};
use super::values::{MovieId, Rating, RatingId, UserId};

/// The stream of one user's rating of one movie: it admits one `MovieRated`,
/// so "one rating per user and movie" holds under any concurrency. Its
/// arguments cannot be swapped:
///
/// ```compile_fail
/// use catalog_service::domain::{MovieId, UserId, rating_stream};
/// rating_stream(UserId(1), MovieId(2));
/// ```
pub fn rating_stream(movie: MovieId, user: UserId) -> String {
    format!("rating-{movie}-{user}")
}

/// The stream allocating rating ids.
pub const RATING_IDS_STREAM: &str = "rating-ids";

/// What a rating's decision reads: the movie (from its own stream) and
/// whether this user rated it already (from the rating's stream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rated {
    /// The movie, as its stream tells it.
    pub movie: Movie,
    /// Whether the user rated it already.
    pub rated: bool,
}

/// Rate a movie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateMovie {
    /// A freshly allocated id.
    pub id: RatingId,
    /// The movie's id.
    pub movie_id: MovieId,
    /// Who rates it.
    pub user: UserId,
    /// The rating.
    pub rating: Rating,
}

/// The decider of one user's rating of one movie.
pub struct MovieRating;

impl Decider for MovieRating {
    type Command = RateMovie;
    type Event = CatalogEvent;
    type State = Rated;
    type Rejection = Rejection;

    fn stream(c: &RateMovie) -> String {
        rating_stream(c.movie_id, c.user)
    }

    /// The movie's stream: once added, a movie and who added it never
    /// change. Ids are positive: anything else names no movie, without a
    /// read.
    fn reads(c: &RateMovie) -> Vec<String> {
        if c.movie_id.0 > 0 {
            vec![movie_stream(c.movie_id)]
        } else {
            vec![]
        }
    }

    /// A user's rating of a movie is one event: its stream is usually new
    /// (if not, the append conflicts and the decision sees the rating).
    fn starts_stream(_: &RateMovie) -> bool {
        true
    }

    fn decide(c: &RateMovie, state: &Rated) -> Result<Vec<CatalogEvent>, Rejection> {
        match state.movie {
            Movie::Unknown => Err(Rejection::UnknownMovie(c.movie_id)),
            Movie::Added { added_by } if added_by == c.user => Err(Rejection::CannotRate),
            Movie::Added { .. } if state.rated => Err(Rejection::CannotRate),
            Movie::Added { .. } => Ok(vec![CatalogEvent::MovieRated {
                id: c.id,
                movie: c.movie_id,
                user: c.user,
                rating: c.rating,
            }]),
        }
    }

    fn evolve(state: Rated, event: &CatalogEvent) -> Rated {
        match event {
            CatalogEvent::MovieAdded { .. } => Rated {
                movie: Movie::evolve(state.movie, event),
                ..state
            },
            CatalogEvent::MovieRated { .. } => Rated {
                rated: true,
                ..state
            },
        }
    }
}
