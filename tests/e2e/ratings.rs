use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{TestApp, assert_answer};

crate::on_every_backend!(
    rating_refusals_match_the_contract,
    twenty_concurrent_identical_ratings_give_exactly_one_201,
    rating_lists_filter_by_movie_and_paginate,
    the_streamed_full_list_is_the_pages_put_together,
);

/// The full list streams in pages of 3 here (see `helpers::config`): with
/// 10 ratings it crosses four pages, and must still be exactly the pages
/// of `?limit` put together, with a tag that works like any other.
async fn the_streamed_full_list_is_the_pages_put_together(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    assert_eq!(app.get("/api/auth/rating", Some(&adder)).await.text, "[]");
    let mut movies = Vec::new();
    for i in 0..5 {
        movies.push(app.movie(&adder, &format!("M{i}")).await);
    }
    for u in 0..2 {
        let (rater, _) = app.user(&format!("rater{u}")).await;
        for (i, m) in movies.iter().enumerate() {
            let body = json!({"movie": m, "rating": 1 + (i + u) % 5});
            let a = app.post("/api/auth/rating", Some(&rater), body).await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        }
    }
    let full = app.get("/api/auth/rating", Some(&adder)).await;
    assert_eq!(full.status, StatusCode::OK);
    let mut pieces = Vec::new();
    for offset in (0..10).step_by(4) {
        let page = app
            .get(
                &format!("/api/auth/rating?limit=4&offset={offset}"),
                Some(&adder),
            )
            .await;
        pieces.extend(page.body["results"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(pieces.len(), 10);
    assert_eq!(
        full.text,
        serde_json::to_string(&pieces).unwrap(),
        "byte for byte"
    );

    let tag = full.headers["etag"].to_str().unwrap().to_owned();
    let again = app
        .http
        .get(format!("{}/api/auth/rating", app.base))
        .header("authorization", format!("Token {adder}"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let (late, _) = app.user("late").await;
    app.rate(&late, movies[0], 2).await;
    let after = app.get("/api/auth/rating", Some(&adder)).await;
    assert_ne!(
        after.headers["etag"].to_str().unwrap(),
        tag,
        "a rating changes the tag"
    );
    assert_eq!(after.body.as_array().unwrap().len(), 11);
}

async fn rating_refusals_match_the_contract(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let id = app.movie(&adder, "M").await;
    let cant = json!({"detail": "You cant rate it "});
    let a = app.rate(&adder, id, 3).await;
    assert_answer(&a, StatusCode::FORBIDDEN, cant.clone());
    let cases = [
        (
            json!({"movie": id, "rating": 6}),
            json!({"rating": ["Ensure this value is less than or equal to 5."]}),
        ),
        (
            json!({"movie": id, "rating": 0}),
            json!({"rating": ["Ensure this value is greater than or equal to 1."]}),
        ),
        (
            json!({"movie": id, "rating": "abc"}),
            json!({"rating": ["A valid integer is required."]}),
        ),
        (
            json!({"movie": id, "rating": 2.5}),
            json!({"rating": ["A valid integer is required."]}),
        ),
        (
            json!({"movie": 99, "rating": 3}),
            json!({"movie": ["Invalid pk \"99\" - object does not exist."]}),
        ),
        (
            json!({"movie": "abc", "rating": 3}),
            json!({"movie": ["Incorrect type. Expected pk value, received str."]}),
        ),
        (
            json!({}),
            json!({"movie": ["This field is required."], "rating": ["This field is required."]}),
        ),
    ];
    for (request, expected) in cases {
        let a = app.post("/api/auth/rating", Some(&rater), request).await;
        assert_answer(&a, StatusCode::BAD_REQUEST, expected);
    }
    // A rating given as text is read as DRF reads it.
    let a = app.rate(&rater, id.to_string(), "4").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = app.rate(&rater, id, 5).await;
    assert_answer(&a, StatusCode::FORBIDDEN, cant);
}

async fn twenty_concurrent_identical_ratings_give_exactly_one_201(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let id = app.movie(&adder, "Contested").await;
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (http, url, token) = (
            app.http.clone(),
            format!("{}/api/auth/rating", app.base),
            rater.clone(),
        );
        tasks.spawn(async move {
            http.post(url)
                .header("authorization", format!("Token {token}"))
                .json(&json!({"movie": id, "rating": 4}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = tasks.join_all().await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!((created, refused), (1, 19), "{statuses:?}");
    let a = app
        .get(&format!("/api/auth/rating?movie={id}"), Some(&adder))
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1);
}

async fn rating_lists_filter_by_movie_and_paginate(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let m1 = app.movie(&adder, "One").await;
    let m2 = app.movie(&adder, "Two").await;
    for i in 0..3 {
        let (t, _) = app.user(&format!("r{i}")).await;
        app.rate(&t, m1, i + 1).await;
        if i == 0 {
            app.rate(&t, m2, 5).await;
        }
    }
    let all = app.get("/api/auth/rating", Some(&adder)).await.body;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let a = app
        .get(&format!("/api/auth/rating?movie={m2}"), Some(&adder))
        .await;
    assert_eq!(a.body, json!([{"id": ids[1], "movie": m2, "rating": 5}]));
    let a = app
        .get(
            &format!("/api/auth/rating?movie={m1}&limit=1&offset=1"),
            Some(&adder),
        )
        .await;
    assert_eq!(a.body["count"], 3);
    assert_eq!(
        a.body["next"],
        format!("{}/api/auth/rating?limit=1&movie={m1}&offset=2", app.base)
    );
    assert_eq!(
        a.body["previous"],
        format!("{}/api/auth/rating?limit=1&movie={m1}", app.base)
    );
    let a = app.get("/api/auth/rating?movie=abc", Some(&adder)).await;
    assert_answer(
        &a,
        StatusCode::BAD_REQUEST,
        json!({"movie": ["Enter a number."]}),
    );
}
