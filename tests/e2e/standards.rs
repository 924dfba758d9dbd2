//! The HTTP conventions newer clients rely on, beside the DRF contract:
//! conditional GETs, problem details, idempotency keys.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::json;

use crate::helpers::{TestApp, post_keyed};

crate::on_every_backend!(
    every_get_has_a_strong_etag_that_changes_exactly_with_the_answer,
    problem_details_are_given_to_who_asks_for_them,
    a_retried_post_with_a_key_gives_the_first_answer_and_stores_once,
    parallel_retries_with_one_key_store_one_movie,
    a_retried_registration_with_a_key_is_answered_as_a_login,
    a_keyed_registration_retry_is_no_password_oracle,
);

async fn get_with(app: &TestApp, path: &str, token: &str, tag: Option<&str>) -> reqwest::Response {
    let mut r = app
        .http
        .get(format!("{}{path}", app.base))
        .header("authorization", format!("Token {token}"));
    if let Some(t) = tag {
        r = r.header(IF_NONE_MATCH, t);
    }
    r.send().await.unwrap()
}

/// The tag of `path`'s answer now, checked to be strong and to give a bodiless
/// 304 when sent back.
async fn tag_of(app: &TestApp, path: &str, token: &str) -> String {
    let first = get_with(app, path, token, None).await;
    assert_eq!(first.status(), StatusCode::OK, "{path}");
    let tag = first.headers()[ETAG].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "{path}: {tag} is not strong"
    );
    let again = get_with(app, path, token, Some(&tag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    assert_eq!(again.headers()[ETAG].to_str().unwrap(), tag);
    assert!(
        again.bytes().await.unwrap().is_empty(),
        "{path}: a 304 has no body"
    );
    tag
}

async fn every_get_has_a_strong_etag_that_changes_exactly_with_the_answer(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let m = app.movie(&adder, "Tagged").await;
    let paths = [
        "/api/auth/movies".to_owned(),
        "/api/auth/movies?limit=1".to_owned(),
        format!("/api/auth/movies/{m}"),
        "/api/auth/rating".to_owned(),
        format!("/api/auth/rating?movie={m}"),
    ];
    let mut before = Vec::new();
    for p in &paths {
        before.push(tag_of(&app, p, &rater).await);
    }
    // The same answer for another user: the same tag.
    assert_eq!(tag_of(&app, &paths[0], &adder).await, before[0]);
    // A stale tag (or another list's) gets the whole answer.
    let stale = get_with(&app, &paths[2], &rater, Some(&before[0])).await;
    assert_eq!(stale.status(), StatusCode::OK);
    // Weak comparison, lists and `*`, as RFC 9110 says for If-None-Match.
    for header in [
        format!("W/{}", before[0]),
        format!("\"x\", {}", before[0]),
        "*".into(),
    ] {
        let r = get_with(&app, &paths[0], &rater, Some(&header)).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{header}");
    }

    // A rating moves the movie's average and the ratings lists; the movie
    // list (no averages in it) stays as it was.
    let a = app.rate(&rater, m, 5).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let mut after = Vec::new();
    for p in &paths {
        after.push(tag_of(&app, p, &rater).await);
    }
    assert_eq!(after[0], before[0], "the movie list did not change");
    assert_eq!(after[1], before[1], "its first page did not change");
    for i in 2..5 {
        assert_ne!(after[i], before[i], "{} changed", paths[i]);
    }
    // An error has no tag.
    let missing = get_with(&app, "/api/auth/movies/999999", &rater, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers().get(ETAG).is_none());
}

async fn problem_details_are_given_to_who_asks_for_them(app: TestApp) {
    let (token, _) = app.user("asker").await;
    let ask = |accept: Option<&'static str>, path: &'static str| {
        let mut r = app
            .http
            .post(format!("{}{path}", app.base))
            .header("authorization", format!("Token {token}"))
            .json(&json!({"title": "", "director": "D"}));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    // Field errors: the DRF body by default, a problem with `errors` on request.
    let drf = ask(None, "/api/auth/movies").await.unwrap();
    assert_eq!(drf.status(), StatusCode::BAD_REQUEST);
    assert_eq!(drf.headers()[CONTENT_TYPE], "application/json");
    let drf_body: serde_json::Value = drf.json().await.unwrap();
    assert!(drf_body["title"].is_array(), "{drf_body}");
    let p = ask(Some("application/problem+json"), "/api/auth/movies")
        .await
        .unwrap();
    assert_eq!(p.status(), StatusCode::BAD_REQUEST);
    assert_eq!(p.headers()[CONTENT_TYPE], "application/problem+json");
    let body: serde_json::Value = p.json().await.unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Bad Request");
    assert_eq!(body["status"], 400);
    assert_eq!(body["errors"], drf_body);
    // A `detail` error, and errors the router makes (404, 405).
    for (method, path, status, detail) in [
        (
            reqwest::Method::GET,
            "/api/auth/movies/999999",
            404,
            "Not found.",
        ),
        (reqwest::Method::GET, "/no/such/path", 404, "Not found."),
        (
            reqwest::Method::PUT,
            "/api/auth/movies",
            405,
            "Method \"PUT\" not allowed.",
        ),
    ] {
        let r = app
            .http
            .request(method, format!("{}{path}", app.base))
            .header("authorization", format!("Token {token}"))
            .header("accept", "application/json, application/problem+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(
            r.headers()[CONTENT_TYPE],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], status);
        assert_eq!(body["detail"], detail, "{path}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    // A zero weight is a refusal: DRF's body.
    let r = ask(Some("application/problem+json;q=0"), "/api/auth/movies")
        .await
        .unwrap();
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
}

async fn a_retried_post_with_a_key_gives_the_first_answer_and_stores_once(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let movie = json!({"title": "Once", "director": "D"});
    let first = post_keyed(&app, "/api/auth/movies", Some(&adder), "k-1", movie.clone()).await;
    assert_eq!(first.0, StatusCode::CREATED, "{first:?}");
    // The retry: the same answer, nothing added (quoted or not, the same key).
    for key in ["k-1", "\"k-1\""] {
        let again = post_keyed(&app, "/api/auth/movies", Some(&adder), key, movie.clone()).await;
        assert_eq!(again, first);
    }
    let list = app.get("/api/auth/movies", Some(&adder)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    // The same key with another body: 422, DRF-shaped.
    let other = post_keyed(
        &app,
        "/api/auth/movies",
        Some(&adder),
        "k-1",
        json!({"title": "Twice", "director": "D"}),
    )
    .await;
    assert_eq!(other.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.1,
        json!({"detail": "This Idempotency-Key was already used with a different request."})
    );
    // Keys are per user: another user's "k-1" is a request of its own.
    let theirs = post_keyed(&app, "/api/auth/movies", Some(&rater), "k-1", movie.clone()).await;
    assert_eq!(theirs.0, StatusCode::CREATED);
    assert_ne!(theirs.1["id"], first.1["id"]);

    // A rating: its retry gives the rating again, not "You cant rate it ".
    let m = first.1["id"].clone();
    let rating = json!({"movie": m, "rating": 4});
    let rate = || {
        post_keyed(
            &app,
            "/api/auth/rating",
            Some(&rater),
            "r-1",
            rating.clone(),
        )
    };
    let rated = rate().await;
    assert_eq!(rated.0, StatusCode::CREATED, "{rated:?}");
    let again = rate().await;
    assert_eq!(again, rated);
    let ratings = app.get("/api/auth/rating", Some(&rater)).await;
    assert_eq!(
        ratings.body.as_array().unwrap().len(),
        1,
        "{}",
        ratings.text
    );
    // Without a key, or with another key, a second rating is still refused.
    let unkeyed = app.rate(&rater, m.clone(), 4).await;
    assert_eq!(unkeyed.status, StatusCode::FORBIDDEN);
    let other_key = post_keyed(
        &app,
        "/api/auth/rating",
        Some(&rater),
        "r-2",
        json!({"movie": m, "rating": 4}),
    )
    .await;
    assert_eq!(other_key.0, StatusCode::FORBIDDEN);

    // A key that is not 1–255 visible ASCII characters is refused.
    for bad in ["", "has space", &"x".repeat(256)] {
        let r = post_keyed(&app, "/api/auth/movies", Some(&adder), bad, movie.clone()).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad:?}");
    }
}

/// Eight copies of one keyed POST at once: every copy gets the one answer.
async fn race(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let answers = race_all(app, path, token, key, body).await;
    for a in &answers {
        assert_eq!(*a, answers[0], "{path}: every copy gets the one answer");
    }
    answers[0].clone()
}

/// Eight copies of one keyed POST at once: their answers.
async fn race_all(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: serde_json::Value,
) -> Vec<(StatusCode, serde_json::Value)> {
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url) = (app.http.clone(), format!("{}{path}", app.base));
        let (token, key, body) = (token.map(str::to_owned), key.to_owned(), body.clone());
        racers.spawn(async move {
            let mut r = http.post(url).header("idempotency-key", key).json(&body);
            if let Some(t) = token {
                r = r.header("authorization", format!("Token {t}"));
            }
            let r = r.send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        });
    }
    racers.join_all().await
}

async fn parallel_retries_with_one_key_store_one_movie(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let movie = json!({"title": "Raced", "director": "D"});
    let added = race(&app, "/api/auth/movies", Some(&adder), "race", movie).await;
    assert_eq!(added.0, StatusCode::CREATED, "{added:?}");
    let list = app.get("/api/auth/movies", Some(&adder)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{}", list.text);
    let rating = json!({"movie": added.1["id"], "rating": 3});
    let rated = race(&app, "/api/auth/rating", Some(&rater), "race", rating).await;
    assert_eq!(rated.0, StatusCode::CREATED, "{rated:?}");
    // Registrations: one user. The copy that registered answers it; every
    // other is answered as a login, so that a burst of them meets the login
    // throttle as a burst of logins would (each attempt counts until it is
    // settled): 200 with the user and a working token, or 429.
    let user = json!({"username": "racer", "email": "r@example.com", "password": "password123"});
    let registered = race_all(&app, "/api/auth/register", None, "race", user).await;
    let ok: Vec<_> = registered
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert!(!ok.is_empty(), "{registered:?}");
    for (status, answer) in &registered {
        if *status == StatusCode::OK {
            assert_eq!(answer["user"], ok[0].1["user"], "one user");
            let token = answer["token"].as_str().unwrap();
            let me = app.get("/api/auth/me", Some(token)).await;
            assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        } else {
            assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
        }
    }
}

/// README, "Idempotency keys on register": a retry of a keyed
/// registration (same key, username and email) is answered as a login with
/// the password it carries: the same user, and a new token.
async fn a_retried_registration_with_a_key_is_answered_as_a_login(app: TestApp) {
    let body = json!({"username": "keyed", "email": "k@example.com", "password": "password123"});
    let first = post_keyed(&app, "/api/auth/register", None, "reg-1", body.clone()).await;
    assert_eq!(first.0, StatusCode::OK, "{first:?}");
    let again = post_keyed(&app, "/api/auth/register", None, "reg-1", body.clone()).await;
    assert_eq!(again.0, StatusCode::OK, "{again:?}");
    assert_eq!(again.1["user"], first.1["user"], "one user");
    assert_ne!(again.1["token"], first.1["token"], "a login's new token");
    for answer in [&first.1, &again.1] {
        let token = answer["token"].as_str().unwrap();
        let a = app.get("/api/auth/movies", Some(token)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    // The retry shows in her activity as the login it is.
    let token = again.1["token"].as_str().unwrap();
    let activity = app.get("/api/auth/me/activity", Some(token)).await;
    let kinds: Vec<_> = activity
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("logged_in"), json!("logged_in"), json!("registered")],
        "the retry's login, the registration's token, the registration: {}",
        activity.text
    );
    // Without the key, the name is taken, as before.
    let unkeyed = app.post("/api/auth/register", None, body.clone()).await;
    assert_eq!(unkeyed.status, StatusCode::BAD_REQUEST, "{}", unkeyed.text);
    // The same key with another password or email: another request.
    for other in [
        json!({"username": "keyed", "email": "k@example.com", "password": "other-password"}),
        json!({"username": "keyed", "email": "other@example.com", "password": "password123"}),
    ] {
        let r = post_keyed(&app, "/api/auth/register", None, "reg-1", other).await;
        assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
        assert_eq!(
            r.1,
            json!({"detail": "This Idempotency-Key was already used with a different request."})
        );
    }
    // Keys are per username: "reg-1" for another name is a registration of its own.
    let other = post_keyed(
        &app,
        "/api/auth/register",
        None,
        "reg-1",
        json!({"username": "keyed2", "email": "k2@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(other.0, StatusCode::OK, "{other:?}");
    assert_ne!(other.1["token"], first.1["token"]);
}

/// Security review 3, finding 1: whoever learns a registration's key
/// (username, email and key) gets no password oracle outside the login
/// throttle. Every mismatch, of password or of email, counts as a failed
/// login: after `AUTH_LOGIN_MAX_FAILURES` (5) the retry answers 429, as
/// login does, even with the right password. And a retry never hands out
/// a token that was logged out.
async fn a_keyed_registration_retry_is_no_password_oracle(app: TestApp) {
    let body = json!({"username": "victim", "email": "v@example.com", "password": "password123"});
    let first = post_keyed(&app, "/api/auth/register", None, "k", body.clone()).await;
    assert_eq!(first.0, StatusCode::OK, "{first:?}");
    let revoked = first.1["token"].as_str().unwrap();
    let out = app.post("/api/auth/logout", Some(revoked), json!({})).await;
    assert!(out.status.is_success(), "{}", out.text);
    // After the logout, the right retry answers a new token, never the
    // revoked one.
    let retry = post_keyed(&app, "/api/auth/register", None, "k", body.clone()).await;
    assert_eq!(retry.0, StatusCode::OK, "{retry:?}");
    assert_ne!(retry.1["token"].as_str(), Some(revoked));
    let refused = app.get("/api/auth/me", Some(revoked)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // Five guesses: wrong passwords and wrong emails alike.
    for i in 0..5 {
        let guess = if i % 2 == 0 {
            json!({"username": "victim", "email": "v@example.com", "password": format!("guess-{i}-long")})
        } else {
            json!({"username": "victim", "email": format!("guess{i}@example.com"), "password": "password123"})
        };
        let r = post_keyed(&app, "/api/auth/register", None, "k", guess).await;
        assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "guess {i}: {r:?}");
    }
    // Throttled now, the right guess included, and login alike.
    let right = post_keyed(&app, "/api/auth/register", None, "k", body).await;
    assert_eq!(right.0, StatusCode::TOO_MANY_REQUESTS, "{right:?}");
    assert!(right.1.get("token").is_none(), "{right:?}");
    let login = json!({"username": "victim", "password": "password123"});
    let a = app.post("/api/auth/login", None, login).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
}
