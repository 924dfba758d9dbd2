//! The HTTP conventions newer clients rely on, beside the DRF contract:
//! conditional GETs and problem details.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::json;

use crate::helpers::TestApp;

crate::on_every_backend!(
    every_get_has_a_strong_etag_that_changes_exactly_with_the_answer,
    problem_details_are_given_to_who_asks_for_them,
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
    let a = app
        .post(
            "/api/auth/rating",
            Some(&rater),
            json!({"movie": m, "rating": 5}),
        )
        .await;
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
