use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_answer};

crate::on_every_backend!(
    register_answers_the_user_a_token_and_its_expiry,
    register_refuses_each_bad_field_in_drf_words,
    login_answers_a_new_token_and_refuses_bad_credentials_alike,
    failed_logins_are_throttled_with_retry_after,
    missing_and_invalid_tokens_are_401_with_www_authenticate,
    logout_revokes_that_token_at_once_and_only_it,
    logoutall_revokes_every_token,
    me_is_the_callers_profile_and_only_theirs,
);

async fn register_answers_the_user_a_token_and_its_expiry(app: TestApp) {
    let a = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "hp1", "email": "rit@gmail.com", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let body = a.body.as_object().unwrap();
    assert_eq!(body.keys().collect::<Vec<_>>(), ["expiry", "token", "user"]);
    let id = a.body["user"]["id"].as_i64().unwrap();
    assert!(id > 0);
    assert_eq!(
        a.body["user"],
        json!({"id": id, "username": "hp1", "email": "rit@gmail.com"})
    );
    let token = a.body["token"].as_str().unwrap();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()));
    let expiry = chrono::DateTime::parse_from_rfc3339(a.body["expiry"].as_str().unwrap()).unwrap();
    let hours = (expiry.timestamp() - chrono::Utc::now().timestamp()) as f64 / 3600.0;
    assert!((9.9..=10.1).contains(&hours), "{hours}");
    // The token works at once.
    assert_eq!(
        app.get("/api/auth/movies", Some(token)).await.status,
        StatusCode::OK
    );
}

async fn register_refuses_each_bad_field_in_drf_words(app: TestApp) {
    app.user("taken").await;
    let cases = [
        (
            json!({"username": "TAKEN", "email": "a@b.co", "password": "password123"}),
            json!({"username": ["A user with that username already exists."]}),
        ),
        (
            json!({"username": "ok", "email": "nope", "password": "password123"}),
            json!({"email": ["Enter a valid email address."]}),
        ),
        (
            json!({}),
            json!({"username": ["This field is required."], "email": ["This field is required."], "password": ["This field is required."]}),
        ),
        (
            json!({"username": "bad name", "email": "nope", "password": "short"}),
            json!({
             "username": ["Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."],
             "email": ["Enter a valid email address."],
             "password": ["Ensure this field has at least 8 characters."]}),
        ),
        (
            json!({"username": "x".repeat(151), "email": "a@b.co", "password": "p".repeat(1025)}),
            json!({"username": ["Ensure this field has no more than 150 characters."], "password": ["Ensure this field has no more than 1024 characters."]}),
        ),
        (
            json!({"username": "", "email": "a@b.co", "password": "password123"}),
            json!({"username": ["This field may not be blank."]}),
        ),
        (
            json!({"username": null, "email": ["a"], "password": "password123"}),
            json!({"username": ["This field may not be null."], "email": ["Not a valid string."]}),
        ),
    ];
    for (request, expected) in cases {
        let a = app.post("/api/auth/register", None, request.clone()).await;
        assert_answer(&a, StatusCode::BAD_REQUEST, expected);
    }
}

async fn login_answers_a_new_token_and_refuses_bad_credentials_alike(app: TestApp) {
    let (first, id) = app.user("hp1").await;
    let a = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "hp1", "password": "password123"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.body["user"],
        json!({"id": id, "username": "hp1", "email": "hp1@example.com"})
    );
    assert_ne!(a.body["token"].as_str().unwrap(), first);
    assert!(a.body["expiry"].is_string());
    let bad = json!({"non_field_errors": ["Incorrect Credentials"]});
    for (u, p) in [("hp1", "wrong-password"), ("nobody", "password123")] {
        let a = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": u, "password": p}),
            )
            .await;
        assert_answer(&a, StatusCode::BAD_REQUEST, bad.clone());
    }
    let a = app
        .post("/api/auth/login", None, json!({"username": "hp1"}))
        .await;
    assert_answer(
        &a,
        StatusCode::BAD_REQUEST,
        json!({"password": ["This field is required."]}),
    );
}

async fn failed_logins_are_throttled_with_retry_after(app: TestApp) {
    app.user("victim").await;
    for _ in 0..5 {
        let a = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": "victim", "password": "nope-nope"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
    let a = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "victim", "password": "password123"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 1, "the first pause: a second, doubling per failure");
    assert_eq!(
        a.body,
        json!({"detail": format!("Request was throttled. Expected available in {retry} seconds.")})
    );
}

async fn missing_and_invalid_tokens_are_401_with_www_authenticate(app: TestApp) {
    let missing = json!({"detail": "Authentication credentials were not provided."});
    let invalid = json!({"detail": "Invalid token."});
    let valid_shape = "ab".repeat(32);
    for (path, method) in [
        ("/api/auth/movies", "GET"),
        ("/api/auth/movies", "POST"),
        ("/api/auth/movies/1", "GET"),
        ("/api/auth/rating", "GET"),
        ("/api/auth/rating", "POST"),
        ("/api/auth/logout", "POST"),
        ("/api/auth/logoutall", "POST"),
    ] {
        let method: reqwest::Method = method.parse().unwrap();
        let a = app.send(method.clone(), path, None, None, None).await;
        assert_answer(&a, StatusCode::UNAUTHORIZED, missing.clone());
        assert_eq!(a.headers["www-authenticate"], "Token");
        for token in [valid_shape.as_str(), "not-hex", "x"] {
            let a = app
                .send(method.clone(), path, Some(token), None, None)
                .await;
            assert_answer(&a, StatusCode::UNAUTHORIZED, invalid.clone());
            assert_eq!(a.headers["www-authenticate"], "Token");
        }
    }
    // "Token" with nothing after it.
    let r = app
        .http
        .get(format!("{}/api/auth/movies", app.base))
        .header("authorization", "Token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), invalid);
}

async fn logout_revokes_that_token_at_once_and_only_it(app: TestApp) {
    let (first, _) = app.user("hp1").await;
    let second = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "hp1", "password": "password123"}),
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app.post("/api/auth/logout", Some(&first), json!({})).await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::NO_CONTENT, ""));
    let a = app.get("/api/auth/movies", Some(&first)).await;
    assert_answer(
        &a,
        StatusCode::UNAUTHORIZED,
        json!({"detail": "Invalid token."}),
    );
    assert_eq!(
        app.get("/api/auth/movies", Some(&second)).await.status,
        StatusCode::OK
    );
}

async fn logoutall_revokes_every_token(app: TestApp) {
    let (first, _) = app.user("hp1").await;
    let login = json!({"username": "hp1", "password": "password123"});
    let second = app.post("/api/auth/login", None, login.clone()).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app
        .send(
            reqwest::Method::POST,
            "/api/auth/logoutall",
            Some(&second),
            None,
            None,
        )
        .await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::NO_CONTENT, ""));
    for t in [&first, &second] {
        assert_eq!(
            app.get("/api/auth/movies", Some(t)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let third = app.post("/api/auth/login", None, login).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/api/auth/movies", Some(&third)).await.status,
        StatusCode::OK
    );
}

async fn me_is_the_callers_profile_and_only_theirs(app: TestApp) {
    let before = chrono::Utc::now();
    let (token, id) = app.user("zoe").await;
    let (other, _) = app.user("other").await;
    let a = app.get("/api/auth/me", Some(&token)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.headers["cache-control"], "no-store");
    let joined = a.body["date_joined"].as_str().unwrap().to_owned();
    assert_eq!(
        a.body,
        json!({"id": id, "username": "zoe", "email": "zoe@example.com", "date_joined": joined})
    );
    let joined = chrono::DateTime::parse_from_rfc3339(&joined).unwrap();
    let after = chrono::Utc::now();
    assert!(
        before - chrono::TimeDelta::seconds(1) <= joined && joined <= after,
        "{joined}"
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&other)).await.body["username"],
        "other"
    );
    let detail = json!({"detail": "Authentication credentials were not provided."});
    assert_answer(
        &app.get("/api/auth/me", None).await,
        StatusCode::UNAUTHORIZED,
        detail,
    );
    app.post("/api/auth/logout", Some(&token), json!({})).await;
    let a = app.get("/api/auth/me", Some(&token)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
}
