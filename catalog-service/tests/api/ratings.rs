use proto::catalog::Rating;
use tokio::task::JoinSet;
use tonic::Code;

use crate::helpers::{Stack, Stores, assert_code, authed, violations};

crate::on_every_backend!(
    another_user_rates_a_movie_and_stats_follow,
    rating_ones_own_movie_is_refused,
    rating_twice_is_refused,
    twenty_concurrent_identical_ratings_have_one_success,
    bad_ratings_name_the_field,
);

async fn another_user_rates_a_movie_and_stats_follow(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (adder, _) = stack.user("adder").await;
    let (alice, alice_id) = stack.user("alice").await;
    let (bob, _) = stack.user("bob").await;
    let m1 = stack.add_movie(&adder, "One", "D").await.unwrap().id;
    let m2 = stack.add_movie(&adder, "Two", "D").await.unwrap().id;
    let r = stack.rate(&alice, m1, 2).await.unwrap();
    assert!(r.id > 0);
    assert_eq!((r.movie, r.rating, r.user), (m1, 2, alice_id));
    stack.rate(&bob, m1, 5).await.unwrap();
    let r3 = stack.rate(&bob, m2, 4).await.unwrap();

    let all = stack.list_ratings(&adder, None, None, 0).await.unwrap();
    assert_eq!(all.count, 3);
    assert!(all.ratings.windows(2).all(|w| w[0].id < w[1].id));
    // Lists do not tell who rated (the answer to RateMovie, the caller's
    // own rating, does).
    assert!(all.ratings.iter().all(|r| r.user == 0), "{all:?}");
    let of_m2 = stack.list_ratings(&adder, Some(m2), None, 0).await.unwrap();
    assert_eq!(of_m2.ratings, [Rating { user: 0, ..r3 }]);
    assert_eq!(
        stack
            .list_ratings(&adder, Some(999), None, 0)
            .await
            .unwrap()
            .count,
        0
    );
    let paged = stack
        .list_ratings(&adder, Some(m1), Some(1), 1)
        .await
        .unwrap();
    assert_eq!(
        (paged.count, paged.ratings.len(), paged.ratings[0].rating),
        (2, 1, 5)
    );

    let d = stack.get_movie(&adder, m1).await.unwrap();
    assert_eq!((d.rating_count, d.rating_average), (2, Some(3.5)));
}

async fn rating_ones_own_movie_is_refused(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (adder, _) = stack.user("adder").await;
    let m = stack.add_movie(&adder, "Mine", "Me").await.unwrap().id;
    let s = assert_code(stack.rate(&adder, m, 5).await, Code::PermissionDenied);
    assert_eq!(s.message(), "You cant rate it ");
    assert_eq!(
        stack
            .list_ratings(&adder, None, None, 0)
            .await
            .unwrap()
            .count,
        0
    );
}

async fn rating_twice_is_refused(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (adder, _) = stack.user("adder").await;
    let (rater, _) = stack.user("rater").await;
    let m = stack.add_movie(&adder, "M", "D").await.unwrap().id;
    stack.rate(&rater, m, 3).await.unwrap();
    let s = assert_code(stack.rate(&rater, m, 4).await, Code::PermissionDenied);
    assert_eq!(s.message(), "You cant rate it ");
}

async fn twenty_concurrent_identical_ratings_have_one_success(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (adder, _) = stack.user("adder").await;
    let (rater, _) = stack.user("rater").await;
    for round in 0..3 {
        let m = stack
            .add_movie(&adder, &format!("M{round}"), "D")
            .await
            .unwrap()
            .id;
        let mut tasks = JoinSet::new();
        for _ in 0..20 {
            let client = stack.client.clone();
            let req = authed(
                &rater,
                proto::catalog::RateMovieRequest {
                    movie: m,
                    rating: 4,
                },
            );
            tasks.spawn(async move { client.clone().rate_movie(req).await });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(s) if s.code() == Code::PermissionDenied => refused += 1,
                Err(s) => panic!("unexpected {s:?}"),
            }
        }
        assert_eq!((ok, refused), (1, 19), "round {round}");
        let d = stack.get_movie(&adder, m).await.unwrap();
        assert_eq!(d.rating_count, 1);
    }
}

async fn bad_ratings_name_the_field(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (adder, _) = stack.user("adder").await;
    let (rater, _) = stack.user("rater").await;
    let m = stack.add_movie(&adder, "M", "D").await.unwrap().id;
    for (rating, message) in [
        (6, "Ensure this value is less than or equal to 5."),
        (0, "Ensure this value is greater than or equal to 1."),
    ] {
        let s = assert_code(stack.rate(&rater, m, rating).await, Code::InvalidArgument);
        assert_eq!(violations(&s), [("rating".into(), message.into())]);
    }
    for unknown in [99, 0, -5] {
        let s = assert_code(stack.rate(&rater, unknown, 3).await, Code::InvalidArgument);
        assert_eq!(
            violations(&s),
            [(
                "movie".into(),
                format!("Invalid pk \"{unknown}\" - object does not exist.")
            )]
        );
    }
    assert_eq!(
        stack
            .list_ratings(&rater, None, None, 0)
            .await
            .unwrap()
            .count,
        0
    );
}
