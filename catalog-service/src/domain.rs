//! The catalog's rules: value types parsed at the edge, the events, and two
//! pure deciders (a movie, and one user's rating of one movie). No I/O here.

use event_sourcing::decider::Decider;
use event_store::Event;
use platform::FieldError;
use serde::{Deserialize, Serialize};

event_store::id_type! {
    /// A movie's id: positive, unique, increasing, never reused.
    pub struct MovieId;
}
event_store::id_type! {
    /// A rating's id: positive, unique, increasing, never reused.
    pub struct RatingId;
}
event_store::id_type! {
    /// A user's id, as auth-service gives it.
    pub struct UserId;
}

/// Longest title or director accepted.
pub const MAX_TEXT: usize = 200;

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
        } else if trimmed.contains('\0') {
            "Null characters are not allowed."
        } else if trimmed.chars().any(disguises_text) {
            "Control characters and invisible formatting characters are not allowed."
        } else {
            return Ok(Self(trimmed.to_owned()));
        };
        Err(FieldError::new(field, message))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` is a control character (Unicode Cc: NUL, ESC of ANSI
/// sequences, ...) or an invisible character that can make text read
/// otherwise than it is stored: bidi marks, embeddings, overrides and
/// isolates, zero-width space, word joiner, BOM. The zero-width joiner and
/// non-joiner (U+200D, U+200C), which real scripts and emoji need, pass.
fn disguises_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A rating: an integer from 1 to 5. Stored as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    /// A rating read back from a read model that stored a valid one (out
    /// of range: clamped, never a panic).
    pub fn from_stored(value: u8) -> Self {
        Self(value.clamp(1, 5))
    }

    /// Parses a rating as the API receives it.
    pub fn parse(raw: i32) -> Result<Self, FieldError> {
        let message = match raw {
            1..=5 => return Ok(Self(raw as u8)),
            ..=0 => "Ensure this value is greater than or equal to 1.",
            _ => "Ensure this value is less than or equal to 5.",
        };
        Err(FieldError::new("rating", message))
    }

    /// The value, 1..=5.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, String> {
        Self::parse(i32::from(value)).map_err(|e| e.message)
    }
}

impl From<Rating> for u8 {
    fn from(r: Rating) -> u8 {
        r.0
    }
}

/// The stream of one movie; its first event is `MovieAdded`.
pub fn movie_stream(movie: MovieId) -> String {
    format!("movie-{movie}")
}

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

#[cfg(test)]
mod tests {
    use event_sourcing::decider::spec::given;

    use super::*;

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    fn text(s: &str) -> Text {
        Text::parse("title", s).unwrap()
    }

    fn added(id: MovieId, by: UserId) -> CatalogEvent {
        CatalogEvent::MovieAdded {
            id,
            title: "Up".into(),
            director: "Docter".into(),
            added_by: by,
        }
    }

    fn rate(user: UserId, rating: u8) -> RateMovie {
        RateMovie {
            id: RatingId(9),
            movie_id: MovieId(7),
            user,
            rating: Rating(rating),
        }
    }

    #[test]
    fn a_new_movie_is_added_with_trimmed_texts() {
        given::<Movie>([])
            .when(AddMovie {
                id: MovieId(7),
                title: text("  Up "),
                director: text("Docter"),
                added_by: ALICE,
            })
            .then([added(MovieId(7), ALICE)]);
    }

    #[test]
    fn a_movie_id_is_never_added_twice() {
        given::<Movie>([added(MovieId(7), ALICE)])
            .when(AddMovie {
                id: MovieId(7),
                title: text("Up"),
                director: text("Docter"),
                added_by: BOB,
            })
            .then_rejects(Rejection::MovieExists(MovieId(7)));
    }

    #[test]
    fn another_user_rates_a_movie_once() {
        let rated = CatalogEvent::MovieRated {
            id: RatingId(9),
            movie: MovieId(7),
            user: BOB,
            rating: Rating(4),
        };
        given::<MovieRating>([added(MovieId(7), ALICE)])
            .when(rate(BOB, 4))
            .then([rated.clone()]);
        given::<MovieRating>([added(MovieId(7), ALICE), rated])
            .when(rate(BOB, 5))
            .then_rejects(Rejection::CannotRate);
    }

    #[test]
    fn rating_ones_own_movie_is_refused() {
        given::<MovieRating>([added(MovieId(7), ALICE)])
            .when(rate(ALICE, 5))
            .then_rejects(Rejection::CannotRate);
    }

    #[test]
    fn rating_an_unknown_movie_names_it() {
        given::<MovieRating>([])
            .when(rate(BOB, 3))
            .then_rejects(Rejection::UnknownMovie(MovieId(7)));
    }

    #[test]
    fn a_rating_reads_its_movie_and_writes_its_own_stream() {
        let c = rate(BOB, 3);
        assert_eq!(MovieRating::stream(&c), "rating-7-2");
        assert_eq!(MovieRating::reads(&c), ["movie-7"]);
        let nothing = RateMovie {
            movie_id: MovieId(0),
            ..c
        };
        assert!(MovieRating::reads(&nothing).is_empty(), "no read for id 0");
        assert_eq!(
            Movie::stream(&AddMovie {
                id: MovieId(7),
                title: text("Up"),
                director: text("Docter"),
                added_by: ALICE,
            }),
            "movie-7"
        );
    }

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(Text::parse("title", "  Up  ").unwrap().as_str(), "Up");
        assert!(Text::parse("title", "   ").is_err());
        assert!(Text::parse("title", &"é".repeat(200)).is_ok());
        assert_eq!(
            Text::parse("director", &"é".repeat(201)).unwrap_err().field,
            "director"
        );
    }

    #[test]
    fn texts_refuse_control_and_disguising_characters() {
        let refused = |t: &str| Text::parse("title", t).unwrap_err().message;
        assert_eq!(refused("a\0b"), "Null characters are not allowed.");
        for t in [
            "\u{1b}[31mred",
            "evil\u{202E}txt.exe",
            "a\u{200B}b",
            "\u{FEFF}a",
            "a\u{2066}b",
        ] {
            assert!(refused(t).starts_with("Control characters"), "{t:?}");
        }
        for t in ["👩\u{200D}💻", "می\u{200C}خواهم", "Amélie", "東京物語"] {
            assert!(Text::parse("title", t).is_ok(), "{t:?}");
        }
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
        assert!(Rating::parse(i32::MIN).is_err());
    }

    #[test]
    fn stored_ratings_are_plain_numbers_and_checked_when_read() {
        let e = CatalogEvent::MovieRated {
            id: RatingId(1),
            movie: MovieId(2),
            user: UserId(3),
            rating: Rating(5),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"MovieRated","id":1,"movie":2,"user":3,"rating":5}"#
        );
        let bad = json.replace(":5}", ":9}");
        assert!(serde_json::from_str::<CatalogEvent>(&bad).is_err());
    }
}
