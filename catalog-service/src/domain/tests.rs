use event_sourcing::decider::spec::given;

use event_sourcing::decider::Decider;

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
        rating: Rating::parse(rating.into()).unwrap(),
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
        rating: Rating::parse(4).unwrap(),
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
        rating: Rating::parse(5).unwrap(),
    };
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(
        json,
        r#"{"type":"MovieRated","id":1,"movie":2,"user":3,"rating":5}"#
    );
    let bad = json.replace(":5}", ":9}");
    assert!(serde_json::from_str::<CatalogEvent>(&bad).is_err());
}

fn added_as(id: i64) -> AddMovie {
    AddMovie {
        id: MovieId(id),
        title: text("Up"),
        director: text("Docter"),
        added_by: BOB,
    }
}

fn rated_by(user: UserId, rating: u8) -> CatalogEvent {
    CatalogEvent::MovieRated {
        id: RatingId(9),
        movie: MovieId(7),
        user,
        rating: Rating::parse(rating.into()).unwrap(),
    }
}

#[test]
fn a_movie_records_who_added_it() {
    given::<Movie>([])
        .when(added_as(7))
        .then([added(MovieId(7), BOB)]);
}

#[test]
fn the_same_user_cannot_add_a_movie_id_twice_either() {
    given::<Movie>([added(MovieId(7), BOB)])
        .when(added_as(7))
        .then_rejects(Rejection::MovieExists(MovieId(7)));
}

#[test]
fn a_movie_rated_already_still_refuses_its_id_again() {
    given::<Movie>([added(MovieId(7), ALICE), rated_by(BOB, 3)])
        .when(added_as(7))
        .then_rejects(Rejection::MovieExists(MovieId(7)));
}

#[test]
fn every_value_from_one_to_five_is_recorded_as_given() {
    for value in 1..=5 {
        given::<MovieRating>([added(MovieId(7), ALICE)])
            .when(rate(BOB, value))
            .then([rated_by(BOB, value)]);
    }
}

#[test]
fn a_second_rating_with_another_value_is_refused_too() {
    given::<MovieRating>([added(MovieId(7), ALICE), rated_by(BOB, 1)])
        .when(rate(BOB, 5))
        .then_rejects(Rejection::CannotRate);
}

#[test]
fn the_owner_is_refused_even_before_anyone_rated() {
    given::<MovieRating>([added(MovieId(7), BOB)])
        .when(rate(BOB, 4))
        .then_rejects(Rejection::CannotRate);
}

#[test]
fn the_rating_records_the_commands_id_movie_and_user() {
    let command = RateMovie {
        id: RatingId(42),
        movie_id: MovieId(7),
        user: BOB,
        rating: Rating::parse(2).unwrap(),
    };
    given::<MovieRating>([added(MovieId(7), ALICE)])
        .when(command)
        .then([CatalogEvent::MovieRated {
            id: RatingId(42),
            movie: MovieId(7),
            user: BOB,
            rating: Rating::parse(2).unwrap(),
        }]);
}

#[test]
fn ids_below_one_name_no_movie_and_read_nothing() {
    for id in [0, -1, i64::MIN] {
        let command = RateMovie {
            movie_id: MovieId(id),
            ..rate(BOB, 3)
        };
        assert!(MovieRating::reads(&command).is_empty(), "{id}");
        given::<MovieRating>([])
            .when(command)
            .then_rejects(Rejection::UnknownMovie(MovieId(id)));
    }
}

#[test]
fn a_rating_of_an_unknown_movie_is_refused_whatever_the_value() {
    for value in [1, 5] {
        given::<MovieRating>([])
            .when(rate(ALICE, value))
            .then_rejects(Rejection::UnknownMovie(MovieId(7)));
    }
}

#[test]
fn each_user_and_movie_has_a_rating_stream_of_its_own() {
    let of = |movie: i64, user: UserId| {
        MovieRating::stream(&RateMovie {
            movie_id: MovieId(movie),
            ..rate(user, 1)
        })
    };
    assert_ne!(of(7, ALICE), of(7, BOB));
    assert_ne!(of(7, ALICE), of(8, ALICE));
    assert_eq!(of(7, ALICE), rating_stream(MovieId(7), ALICE));
}

#[test]
fn new_movies_and_ratings_start_their_streams_and_never_commute() {
    assert!(Movie::starts_stream(&added_as(7)));
    assert!(MovieRating::starts_stream(&rate(BOB, 1)));
    assert!(!Movie::commutes(&added_as(7)));
    assert!(!MovieRating::commutes(&rate(BOB, 1)));
    assert!(Movie::reads(&added_as(7)).is_empty());
}

#[test]
fn a_ratings_state_folds_the_movie_and_the_users_rating() {
    let state = [added(MovieId(7), ALICE), rated_by(BOB, 2)]
        .iter()
        .fold(Rated::default(), MovieRating::evolve);
    assert_eq!(
        state,
        Rated {
            movie: Movie::Added { added_by: ALICE },
            rated: true
        }
    );
    assert_eq!(Rated::default().movie, Movie::Unknown);
}

#[test]
fn a_movies_state_ignores_ratings() {
    let state = [rated_by(BOB, 2)]
        .iter()
        .fold(Movie::default(), Movie::evolve);
    assert_eq!(state, Movie::Unknown);
}

const CAROL: UserId = UserId(3);

#[test]
fn anyone_but_the_owner_may_rate_a_movie() {
    for user in [BOB, CAROL] {
        given::<MovieRating>([added(MovieId(7), ALICE)])
            .when(rate(user, 3))
            .then([rated_by(user, 3)]);
    }
}

#[test]
fn the_owner_is_refused_whatever_the_value() {
    for value in 1..=5 {
        given::<MovieRating>([added(MovieId(7), ALICE)])
            .when(rate(ALICE, value))
            .then_rejects(Rejection::CannotRate);
    }
}

#[test]
fn a_movie_keeps_its_texts_as_parsed() {
    given::<Movie>([])
        .when(AddMovie {
            id: MovieId(3),
            title: text(" Spirited  Away "),
            director: Text::parse("director", "宮崎 駿").unwrap(),
            added_by: CAROL,
        })
        .then([CatalogEvent::MovieAdded {
            id: MovieId(3),
            title: "Spirited  Away".into(),
            director: "宮崎 駿".into(),
            added_by: CAROL,
        }]);
}

#[test]
fn a_movie_takes_the_id_its_command_was_given() {
    given::<Movie>([])
        .when(added_as(123_456))
        .then([added(MovieId(123_456), BOB)]);
}

#[test]
fn the_refusal_names_the_movie_asked_for() {
    given::<MovieRating>([])
        .when(RateMovie {
            movie_id: MovieId(8),
            ..rate(BOB, 3)
        })
        .then_rejects(Rejection::UnknownMovie(MovieId(8)));
}

#[test]
fn a_rating_does_not_depend_on_the_movies_texts() {
    let other_texts = CatalogEvent::MovieAdded {
        id: MovieId(7),
        title: "Another".into(),
        director: "Someone".into(),
        added_by: ALICE,
    };
    given::<MovieRating>([other_texts])
        .when(rate(BOB, 4))
        .then([rated_by(BOB, 4)]);
}
