use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_answer};

crate::on_every_backend!(
    the_documented_flow_reads_its_own_writes,
    movie_lists_paginate_like_drf,
    movie_detail_has_stats_and_unknown_ids_are_404,
    invalid_movies_are_400_per_field,
);

async fn the_documented_flow_reads_its_own_writes(app: TestApp) {
    let (adder, adder_id) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let a = app
        .post(
            "/api/auth/movies",
            Some(&adder),
            json!({"title": "Transformer", "director": "XYZ"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let id = a.body["id"].as_i64().unwrap();
    assert_eq!(
        a.body,
        json!({"id": id, "title": "Transformer", "director": "XYZ"})
    );
    // The very next GET includes it.
    let a = app.get("/api/auth/movies", Some(&rater)).await;
    assert_answer(
        &a,
        StatusCode::OK,
        json!([{"id": id, "title": "Transformer", "director": "XYZ"}]),
    );
    let a = app
        .post(
            "/api/auth/rating",
            Some(&rater),
            json!({"movie": id, "rating": 2}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let rating_id = a.body["id"].as_i64().unwrap();
    assert_eq!(a.body, json!({"id": rating_id, "movie": id, "rating": 2}));
    let a = app.get("/api/auth/rating", Some(&adder)).await;
    assert_answer(
        &a,
        StatusCode::OK,
        json!([{"id": rating_id, "movie": id, "rating": 2}]),
    );
    let a = app
        .get(&format!("/api/auth/movies/{id}"), Some(&adder))
        .await;
    assert_answer(
        &a,
        StatusCode::OK,
        json!({"id": id, "title": "Transformer", "director": "XYZ", "added_by": adder_id, "rating_count": 1, "rating_average": 2.0}),
    );
}

async fn movie_lists_paginate_like_drf(app: TestApp) {
    let (t, _) = app.user("adder").await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(app.movie(&t, &format!("M{i}")).await);
    }
    let a = app.get("/api/auth/movies?limit=2&offset=2", Some(&t)).await;
    assert_eq!(a.status, StatusCode::OK);
    let base = app.base.clone();
    assert_eq!(a.body["count"], 5);
    assert_eq!(
        a.body["next"],
        format!("{base}/api/auth/movies?limit=2&offset=4")
    );
    assert_eq!(
        a.body["previous"],
        format!("{base}/api/auth/movies?limit=2")
    );
    let got: Vec<i64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[2..4]);
    assert_eq!(
        a.body["results"][0],
        json!({"id": ids[2], "title": "M2", "director": "D"})
    );
    let a = app.get("/api/auth/movies?limit=2", Some(&t)).await;
    assert_eq!(
        (
            a.body["previous"].clone(),
            a.body["results"].as_array().unwrap().len()
        ),
        (json!(null), 2)
    );
    let a = app
        .get("/api/auth/movies?limit=10&offset=4", Some(&t))
        .await;
    assert_eq!(a.body["next"], json!(null));
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1);
    // offset alone (or a useless limit) does not paginate.
    for q in ["?offset=3", "?limit=0", "?limit=abc"] {
        let a = app.get(&format!("/api/auth/movies{q}"), Some(&t)).await;
        assert_eq!(a.body.as_array().map(Vec::len), Some(5), "{q}");
    }
}

async fn movie_detail_has_stats_and_unknown_ids_are_404(app: TestApp) {
    let (adder, adder_id) = app.user("adder").await;
    let id = app.movie(&adder, "Up").await;
    let a = app
        .get(&format!("/api/auth/movies/{id}"), Some(&adder))
        .await;
    assert_answer(
        &a,
        StatusCode::OK,
        json!({"id": id, "title": "Up", "director": "D", "added_by": adder_id, "rating_count": 0, "rating_average": null}),
    );
    for (i, r) in [4, 5].into_iter().enumerate() {
        let (t, _) = app.user(&format!("r{i}")).await;
        app.post(
            "/api/auth/rating",
            Some(&t),
            json!({"movie": id, "rating": r}),
        )
        .await;
    }
    let a = app
        .get(&format!("/api/auth/movies/{id}"), Some(&adder))
        .await;
    assert_eq!(
        (
            a.body["rating_count"].clone(),
            a.body["rating_average"].clone()
        ),
        (json!(2), json!(4.5))
    );
    for path in [
        "/api/auth/movies/99999",
        "/api/auth/movies/abc",
        "/api/auth/movies/-1",
    ] {
        let a = app.get(path, Some(&adder)).await;
        assert_answer(&a, StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    }
}

async fn invalid_movies_are_400_per_field(app: TestApp) {
    let (t, _) = app.user("adder").await;
    let a = app
        .post(
            "/api/auth/movies",
            Some(&t),
            json!({"title": "", "director": "d".repeat(201)}),
        )
        .await;
    assert_answer(
        &a,
        StatusCode::BAD_REQUEST,
        json!({"title": ["This field may not be blank."], "director": ["Ensure this field has no more than 200 characters."]}),
    );
    let a = app
        .post("/api/auth/movies", Some(&t), json!({"title": "T"}))
        .await;
    assert_answer(
        &a,
        StatusCode::BAD_REQUEST,
        json!({"director": ["This field is required."]}),
    );
    assert_eq!(app.get("/api/auth/movies", Some(&t)).await.body, json!([]));
}
