//! Finding movies, as DRF clients know it: `?search=`, `?ordering=`,
//! `?min_ratings=` and `?cursor=` over HTTP.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::on_every_backend!(
    search_is_case_and_accent_insensitive_and_needs_every_term,
    each_ordering_sorts_and_ties_fall_back_to_the_id,
    min_ratings_keeps_movies_rated_often_enough,
    a_cursor_walk_skips_and_repeats_nothing_while_movies_are_added,
    without_the_new_parameters_the_answers_are_as_before,
);

/// Adds `(title, director)` as `token`'s user; their ids.
async fn movies(app: &TestApp, token: &str, list: &[(&str, &str)]) -> Vec<i64> {
    let mut ids = vec![];
    for (title, director) in list {
        let a = app
            .post(
                "/api/auth/movies",
                Some(token),
                json!({"title": title, "director": director}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        ids.push(a.body["id"].as_i64().unwrap());
    }
    ids
}

async fn titles(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let a = app
        .get(&format!("/api/auth/movies?{query}"), Some(token))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
    let rows = a.body.get("results").unwrap_or(&a.body);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn search_is_case_and_accent_insensitive_and_needs_every_term(app: TestApp) {
    let (token, _) = app.user("finder").await;
    movies(
        &app,
        &token,
        &[
            ("Amélie", "Jean-Pierre Jeunet"),
            ("Ran", "Akira KUROSAWA"),
            ("Ikiru", "Akira Kurosawa"),
            ("Delicatessen", "Jeunet, Caro"),
        ],
    )
    .await;
    assert_eq!(titles(&app, &token, "search=amelie").await, ["Amélie"]);
    assert_eq!(
        titles(&app, &token, "search=kurosawa").await,
        ["Ran", "Ikiru"]
    );
    assert_eq!(titles(&app, &token, "search=akira%20ran").await, ["Ran"]);
    assert_eq!(
        titles(&app, &token, "search=jeunet,%20DELI").await,
        ["Delicatessen"]
    );
    assert!(
        titles(&app, &token, "search=kurosawa%20jeunet")
            .await
            .is_empty()
    );
    assert!(
        titles(&app, &token, "search=nothing-like-it")
            .await
            .is_empty()
    );
    // An empty search finds everything, as DRF's does.
    assert_eq!(titles(&app, &token, "search=").await.len(), 4);
    // Every item of a find carries the statistics.
    let a = app.get("/api/auth/movies?search=ran", Some(&token)).await;
    let keys: Vec<&String> = a.body[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "director",
            "id",
            "rating_average",
            "rating_count",
            "score",
            "title"
        ]
    );
    assert_eq!(a.body[0]["rating_count"], 0);
    assert_eq!(a.body[0]["rating_average"], Value::Null);
    assert_eq!(a.body[0]["score"], Value::Null, "nothing is rated yet");
    assert!(a.headers.contains_key("etag"));
}

/// Four movies, rated so that each field orders them differently.
async fn rated_catalog(app: &TestApp) -> (String, Vec<i64>) {
    let (adder, _) = app.user("adder").await;
    let ids = movies(
        app,
        &adder,
        &[
            ("Beta", "Zed"),
            ("alpha", "Young"),
            ("Gamma", "Xavier"),
            ("Delta", "Young"),
        ],
    )
    .await;
    // Beta: one 5. alpha: ten 5s. Gamma: unrated. Delta: ten 3s.
    for i in 0..10 {
        let (rater, _) = app.user(&format!("rater{i}")).await;
        if i == 0 {
            assert_eq!(
                app.rate(&rater, ids[0], 5).await.status,
                StatusCode::CREATED
            );
        }
        for (movie, rating) in [(ids[1], 5), (ids[3], 3)] {
            let a = app.rate(&rater, movie, rating).await;
            assert_eq!(a.status, StatusCode::CREATED);
        }
    }
    (adder, ids)
}

async fn each_ordering_sorts_and_ties_fall_back_to_the_id(app: TestApp) {
    let (token, ids) = rated_catalog(&app).await;
    let order = |q: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let a = app
                .get(&format!("/api/auth/movies?ordering={q}"), Some(token))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            a.body
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    let [beta, alpha, gamma, delta] = ids[..] else {
        unreachable!()
    };
    assert_eq!(order("id").await, [beta, alpha, gamma, delta]);
    assert_eq!(order("-id").await, [delta, gamma, alpha, beta]);
    assert_eq!(
        order("title").await,
        [alpha, beta, delta, gamma],
        "case-insensitive"
    );
    assert_eq!(order("-title").await, [gamma, delta, beta, alpha]);
    // Ties (two by Young) by id.
    assert_eq!(order("director").await, [gamma, alpha, delta, beta]);
    assert_eq!(order("-rating_count").await, [alpha, delta, beta, gamma]);
    assert_eq!(order("rating_count").await, [gamma, beta, alpha, delta]);
    // Unrated last when descending; a lone 5 ties ten 5s on the average
    // (the tie by id)...
    assert_eq!(order("-rating_average").await, [beta, alpha, delta, gamma]);
    // ...but not on the score: C = (5 + 50 + 30) / 21, m = 10. An unrated
    // movie scores C: above ten 3s.
    assert_eq!(order("-score").await, [alpha, beta, gamma, delta]);
    assert_eq!(
        order("-rating_count,-id").await,
        [delta, alpha, beta, gamma]
    );
    // Unknown fields are ignored, as DRF does.
    assert_eq!(order("nonsense").await, [beta, alpha, gamma, delta]);
    assert_eq!(order("nonsense,-title").await, [gamma, delta, beta, alpha]);
    let a = app
        .get("/api/auth/movies?ordering=-score&limit=1", Some(&token))
        .await;
    let top = &a.body["results"][0];
    let c = 85.0 / 21.0;
    let expected = 10.0 / 20.0 * 5.0 + 10.0 / 20.0 * c;
    assert!(
        (top["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{top}"
    );
    assert_eq!(top["rating_average"], 5.0);
    assert_eq!(a.body["count"], 4);
    assert!(a.body["next"].as_str().unwrap().contains("ordering=-score"));
}

async fn min_ratings_keeps_movies_rated_often_enough(app: TestApp) {
    let (token, ids) = rated_catalog(&app).await;
    let found = |q: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let a = app.get(&format!("/api/auth/movies?{q}"), Some(token)).await;
            (a.status, a.body)
        }
    };
    let (status, body) = found("min_ratings=1").await;
    assert_eq!(status, StatusCode::OK);
    let got = ids_of(&body);
    assert_eq!(got, [ids[0], ids[1], ids[3]]);
    let (_, body) = found("min_ratings=10&ordering=-title").await;
    let got = ids_of(&body);
    assert_eq!(got, [ids[3], ids[1]]);
    assert_eq!(found("min_ratings=11").await.1, json!([]));
    assert_eq!(
        found("min_ratings=-1").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"min_ratings": ["A valid integer is required."]})
        )
    );
}

/// The path of a `next` or `previous` link (links are absolute).
fn path_of(app: &TestApp, link: &Value) -> String {
    let link = link.as_str().expect("a link");
    link.strip_prefix(&app.base)
        .expect("a link of ours")
        .to_owned()
}

/// The ids of a list's movies, in order.
fn ids_of(list: &Value) -> Vec<i64> {
    let rows = list.as_array().expect("a list");
    rows.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

/// Walks every page by `next` links, with `ordering`, adding a movie
/// after each page: every movie there at the start is seen exactly once.
async fn walk(app: &TestApp, token: &str, ordering: &str, adder: &str) -> Vec<i64> {
    let mut url = format!("/api/auth/movies?cursor=&limit=3&ordering={ordering}");
    let mut seen = vec![];
    for page in 0..50 {
        let a = app.get(&url, Some(token)).await;
        assert_eq!(a.status, StatusCode::OK, "{url}: {}", a.text);
        assert!(a.body.get("count").is_none(), "a cursor page has no count");
        for m in a.body["results"].as_array().unwrap() {
            seen.push(m["id"].as_i64().unwrap());
        }
        movies(
            app,
            adder,
            &[(&format!("Added during {ordering} {page}"), "New")],
        )
        .await;
        match a.body["next"] {
            Value::Null => return seen,
            ref next => url = path_of(app, next),
        }
    }
    panic!("the walk did not end")
}

async fn a_cursor_walk_skips_and_repeats_nothing_while_movies_are_added(app: TestApp) {
    let (token, _) = app.user("walker").await;
    let (adder, _) = app.user("adder2").await;
    let names: Vec<(String, String)> = (0..10)
        .map(|i| {
            (
                format!("Film {:02}", (i * 7) % 10),
                format!("Dir {}", i % 3),
            )
        })
        .collect();
    let list: Vec<(&str, &str)> = names
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_str()))
        .collect();
    let first = movies(&app, &token, &list).await;
    for ordering in ["id", "-id", "title", "-director", "-score"] {
        let seen = walk(&app, &token, ordering, &adder).await;
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{ordering}: repeated {seen:?}");
        for id in &first {
            assert!(unique.contains(id), "{ordering}: skipped {id} in {seen:?}");
        }
    }
    // Backwards from the second page gives the first again.
    let a = app
        .get(
            "/api/auth/movies?cursor=&limit=4&ordering=title",
            Some(&token),
        )
        .await;
    let first_page = a.body["results"].clone();
    assert_eq!(a.body["previous"], Value::Null);
    let next = path_of(&app, &a.body["next"]);
    let b = app.get(&next, Some(&token)).await;
    let back = app
        .get(&path_of(&app, &b.body["previous"]), Some(&token))
        .await;
    assert_eq!(back.body["results"], first_page);
    // A cursor of another ordering, or none of ours: 404 as DRF's.
    let other = next.replace("ordering=title", "ordering=-title");
    for bad in [other, "/api/auth/movies?cursor=bm9wZQ".to_owned()] {
        let a = app.get(&bad, Some(&token)).await;
        assert_eq!(
            (a.status, a.body),
            (StatusCode::NOT_FOUND, json!({"detail": "Invalid cursor"})),
            "{bad}"
        );
    }
}

async fn without_the_new_parameters_the_answers_are_as_before(app: TestApp) {
    let (token, _) = rated_catalog(&app).await;
    for query in [
        "",
        "?limit=2",
        "?limit=2&offset=1",
        "?offset=1",
        "?unknown=1",
    ] {
        let a = app
            .get(&format!("/api/auth/movies{query}"), Some(&token))
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let rows = a.body.get("results").unwrap_or(&a.body);
        for m in rows.as_array().unwrap() {
            let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["director", "id", "title"], "{query}");
        }
    }
}
