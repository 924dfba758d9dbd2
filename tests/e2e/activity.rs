//! `GET /api/auth/me/activity`: each user's own history from both
//! services, newest first, and nothing of anyone else's.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::on_every_backend!(
    my_activity_is_mine_newest_first_and_paginated,
    a_throttled_login_shows_once_in_the_activity,
);

fn kinds(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|e| e["kind"].as_str().expect("a kind"))
        .collect()
}

async fn my_activity_is_mine_newest_first_and_paginated(app: TestApp) {
    let (adder, _) = app.user("adder").await;
    let m = app.movie(&adder, "Heat").await;
    let (rater, _) = app.user("rater").await;
    let rated = app.rate(&rater, m, 4).await;
    assert_eq!(rated.status, StatusCode::CREATED, "{}", rated.text);
    assert_eq!(
        app.post("/api/auth/logout", Some(&rater), json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let login = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "rater", "password": "password123"}),
        )
        .await;
    let rater = login.body["token"].as_str().expect("a token").to_owned();

    let mine = app.get("/api/auth/me/activity", Some(&rater)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(
        kinds(&mine.body),
        [
            "logged_in",
            "logged_out",
            "rated",
            "logged_in",
            "registered"
        ]
    );
    let rating = &mine.body[2];
    assert_eq!(rating["movie"], json!({"id": m, "title": "Heat"}));
    assert_eq!(rating["rating"], 4);
    let times: Vec<&str> = mine
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    for secret in [&rater, &adder] {
        assert!(
            !mine.text.contains(secret.as_str()),
            "a token in the activity"
        );
    }
    assert!(
        !mine.text.contains("added"),
        "the adder's doings: {}",
        mine.text
    );

    let theirs = app.get("/api/auth/me/activity", Some(&adder)).await;
    assert_eq!(
        kinds(&theirs.body),
        ["movie_added", "logged_in", "registered"]
    );
    assert_eq!(theirs.body[0]["movie"], json!({"id": m, "title": "Heat"}));
    assert!(
        !theirs.text.contains("rated"),
        "the rater's doings: {}",
        theirs.text
    );

    let page = app
        .get("/api/auth/me/activity?limit=2&offset=1", Some(&rater))
        .await;
    assert_eq!(page.body["count"], 5);
    assert_eq!(kinds(&page.body["results"]), ["logged_out", "rated"]);
    assert!(
        page.body["next"]
            .as_str()
            .unwrap()
            .ends_with("/api/auth/me/activity?limit=2&offset=3")
    );
    assert!(
        page.body["previous"]
            .as_str()
            .unwrap()
            .ends_with("/api/auth/me/activity?limit=2")
    );

    let none = app.get("/api/auth/me/activity", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let revoked = app.get("/api/auth/me/activity", Some(&rater)).await;
    assert_eq!(revoked.status, StatusCode::OK);
    app.post("/api/auth/logoutall", Some(&rater), json!({}))
        .await;
    let revoked = app.get("/api/auth/me/activity", Some(&rater)).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "{}", revoked.text);
}

async fn a_throttled_login_shows_once_in_the_activity(app: TestApp) {
    let (token, _) = app.user("victim").await;
    let login = |password: &'static str| {
        app.post(
            "/api/auth/login",
            None,
            json!({"username": "victim", "password": password}),
        )
    };
    for _ in 0..5 {
        assert_eq!(login("nope-nope").await.status, StatusCode::BAD_REQUEST);
    }
    let mut refused = 0;
    for _ in 0..3 {
        if login("nope-nope").await.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused > 0, "the sixth guess in a row was not throttled");
    let mine = app.get("/api/auth/me/activity", Some(&token)).await;
    // Every wrong password is in the log too (the security log), the
    // throttle once.
    let failed = 5 + (3 - refused);
    let expected: Vec<&str> = std::iter::once("throttled")
        .chain(std::iter::repeat_n("login_failed", failed))
        .chain(["logged_in", "registered"])
        .collect();
    let mut shown = kinds(&mine.body);
    // A failure let through after the throttle's pause is logged after it.
    shown.sort_by_key(|k| *k != "throttled");
    assert_eq!(shown, expected, "{}", mine.text);
}
