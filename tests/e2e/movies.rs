use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_answer};

crate::on_every_backend!(
    the_documented_flow_reads_its_own_writes,
    movie_lists_paginate_like_drf,
    repeated_lists_follow_every_change,
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
    let a = app.rate(&rater, id, 2).await;
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

/// The gateway keeps list answers and has the catalog confirm them by tag:
/// every read after a change must still show it, in every form of the list.
async fn repeated_lists_follow_every_change(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let movie = |id: i64, title: &str| json!({"id": id, "title": title, "director": "D"});
    let page = |count: i64, next: Option<&str>, results: Value| {
        let next = next.map(|q| format!("{}/api/auth/movies?{q}", app.base));
        json!({"count": count, "next": next, "previous": null, "results": results})
    };
    for _ in 0..2 {
        assert_answer(
            &app.get("/api/auth/movies", Some(&adder)).await,
            StatusCode::OK,
            json!([]),
        );
        let a = app.get("/api/auth/movies?limit=1", Some(&adder)).await;
        assert_answer(&a, StatusCode::OK, page(0, None, json!([])));
    }
    let m0 = app.movie(&adder, "M0").await;
    for _ in 0..2 {
        let a = app.get("/api/auth/movies", Some(&rater)).await;
        assert_answer(&a, StatusCode::OK, json!([movie(m0, "M0")]));
        let a = app.get("/api/auth/movies?limit=1", Some(&rater)).await;
        assert_answer(&a, StatusCode::OK, page(1, None, json!([movie(m0, "M0")])));
    }
    // A rating does not change the list.
    let a = app.rate(&rater, m0, 5).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = app.get("/api/auth/movies", Some(&adder)).await;
    assert_answer(&a, StatusCode::OK, json!([movie(m0, "M0")]));
    let m1 = app.movie(&rater, "M1").await;
    let a = app.get("/api/auth/movies", Some(&adder)).await;
    assert_answer(
        &a,
        StatusCode::OK,
        json!([movie(m0, "M0"), movie(m1, "M1")]),
    );
    let a = app.get("/api/auth/movies?limit=1", Some(&adder)).await;
    assert_answer(
        &a,
        StatusCode::OK,
        page(2, Some("limit=1&offset=1"), json!([movie(m0, "M0")])),
    );
    // A kept page gets links built from the API's own address, whatever the
    // request's Host says.
    let a = app
        .http
        .get(format!("{}/api/auth/movies?limit=1", app.base))
        .header("authorization", format!("Token {adder}"))
        .header("host", "films.example")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    let body: Value = a.json().await.unwrap();
    assert_eq!(
        body["next"],
        format!("{}/api/auth/movies?limit=1&offset=1", app.base)
    );
    // A revoked token is refused even though the list is kept.
    let a = app.post("/api/auth/logout", Some(&adder), json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = app.get("/api/auth/movies", Some(&adder)).await;
    assert_answer(
        &a,
        StatusCode::UNAUTHORIZED,
        json!({"detail": "Invalid token."}),
    );
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
        app.rate(&t, id, r).await;
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

/// Lists are unpaginated unless asked (as in DRF), so one answer from the
/// catalog can be large: a list beyond tonic's default 4 MiB message limit
/// must still come back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_larger_than_four_mib_come_back_whole() {
    use std::sync::Arc;

    use catalog_service::domain::{CatalogEvent, movie_stream};
    use event_store::{Event, ExpectedVersion};

    let stores = crate::helpers::Stores::sqlite().await;
    // ~12,000 movies of ~400 characters: about 5 MiB of protobuf. Written
    // straight to the store (quicker than through the API); the stack reads
    // them at start-up like any other events.
    let store = event_store::open(stores.catalog.url()).await.unwrap();
    let (movies, writers) = (12_000_i64, 32_i64);
    let mut appends = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        appends.spawn(async move {
            for id in (1..=movies).filter(|id| id % writers == w) {
                let event = CatalogEvent::MovieAdded {
                    id: catalog_service::domain::MovieId(id),
                    title: format!("{id:0>200}"),
                    director: "d".repeat(200),
                    added_by: catalog_service::domain::UserId(1),
                };
                store
                    .append(
                        &movie_stream(catalog_service::domain::MovieId(id)),
                        ExpectedVersion::NoStream,
                        vec![event.to_new_event().unwrap()],
                    )
                    .await
                    .unwrap();
            }
        });
    }
    appends.join_all().await;
    drop(store);

    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (token, _) = app.user("reader").await;
    let a = app.get("/api/auth/movies", Some(&token)).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        &a.text[..a.text.len().min(300)]
    );
    let list = a.body.as_array().expect("a JSON array");
    assert_eq!(list.len(), movies as usize);
    assert_eq!(list[41]["id"], 42);
    assert!(a.text.len() > 4 << 20, "{} bytes", a.text.len());
}
