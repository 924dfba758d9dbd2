//! Sessions as users of knox, Kratos and Keycloak expect them: the live
//! tokens listed and revoked by id, a password change that ends every
//! other session, sliding expiry, and a security log that says where from.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Answer, Stores, TestApp, config};

crate::on_every_backend!(
    tokens_are_listed_named_and_revoked_by_id,
    another_users_token_id_is_not_found,
    a_password_change_keeps_this_token_and_ends_the_others,
    the_security_log_says_where_from,
);

/// A request as a client with its own `User-Agent` sends it.
async fn send_as(
    app: &TestApp,
    (method, path): (Method, &str),
    token: Option<&str>,
    agent: &str,
    body: Option<Value>,
) -> Answer {
    let mut r = app
        .http
        .request(method, format!("{}{path}", app.base))
        .header("user-agent", agent);
    if let Some(t) = token {
        r = r.header("authorization", format!("Token {t}"));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let response = r.send().await.expect("the gateway answers");
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// Logs `name` in (password `password123`) from a client calling itself
/// `agent`, naming the token `token_name`: its token.
async fn log_in(app: &TestApp, name: &str, agent: &str, token_name: Option<&str>) -> String {
    let mut body = json!({"username": name, "password": "password123"});
    if let Some(n) = token_name {
        body["name"] = json!(n);
    }
    let a = send_as(
        app,
        (Method::POST, "/api/auth/login"),
        None,
        agent,
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["token"].as_str().unwrap().to_owned()
}

async fn tokens(app: &TestApp, token: &str) -> Vec<Value> {
    let a = app.get("/api/auth/tokens", Some(token)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.headers["cache-control"], "no-store");
    a.body.as_array().unwrap().clone()
}

async fn revoke(app: &TestApp, token: &str, id: &str) -> StatusCode {
    let path = format!("/api/auth/tokens/{id}");
    app.send(Method::DELETE, &path, Some(token), None, None)
        .await
        .status
}

async fn works(app: &TestApp, token: &str) -> bool {
    let status = app.get("/api/auth/me", Some(token)).await.status;
    assert!(matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED));
    status == StatusCode::OK
}

async fn tokens_are_listed_named_and_revoked_by_id(app: TestApp) {
    let (first, _) = app.user("sessions").await;
    let laptop = log_in(&app, "sessions", "Laptop/1.0 (X11)", Some("  my laptop\n")).await;
    let list = tokens(&app, &first).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let (mine, other) = (&list[0], &list[1]);
    assert_eq!(
        mine.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "address",
            "created",
            "current",
            "expiry",
            "id",
            "name",
            "user_agent"
        ]
    );
    assert_eq!(
        (mine["current"].clone(), other["current"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(other["name"], "my laptop", "trimmed, one line");
    assert_eq!(other["user_agent"], "Laptop/1.0 (X11)");
    assert_eq!(other["address"], "127.0.0.1");
    assert_eq!(mine["name"], Value::Null);
    // The id is opaque: nothing of either token in it.
    let id = other["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    for secret in [&first, &laptop] {
        assert!(
            !secret.contains(id) && !secret.starts_with(&id[..8]),
            "{id}"
        );
    }
    // The same ids, seen from the other token.
    let seen = tokens(&app, &laptop).await;
    assert_eq!(seen[1]["id"], other["id"]);
    assert_eq!(seen[1]["current"], true);
    // Pages, as every list.
    let page = app
        .get("/api/auth/tokens?limit=1&offset=1", Some(&first))
        .await;
    assert_eq!(page.body["count"], 2, "{}", page.text);
    assert_eq!(page.body["results"][0]["id"], other["id"]);
    assert_eq!(page.body["next"], Value::Null);
    // Revoked by id: refused at once.
    assert_eq!(revoke(&app, &first, id).await, StatusCode::NO_CONTENT);
    assert!(!works(&app, &laptop).await);
    assert!(works(&app, &first).await);
    assert_eq!(tokens(&app, &first).await.len(), 1);
    assert_eq!(revoke(&app, &first, id).await, StatusCode::NOT_FOUND);
    assert_eq!(
        revoke(&app, &first, "nonsense").await,
        StatusCode::NOT_FOUND
    );
    // Without a token: 401, as everywhere.
    assert_eq!(revoke(&app, "", id).await, StatusCode::UNAUTHORIZED);
    // Its own id is a logout.
    let own = mine["id"].as_str().unwrap();
    assert_eq!(revoke(&app, &first, own).await, StatusCode::NO_CONTENT);
    assert!(!works(&app, &first).await);
}

async fn another_users_token_id_is_not_found(app: TestApp) {
    let (mine, _) = app.user("owner").await;
    let (theirs, _) = app.user("stranger").await;
    let their_id = tokens(&app, &theirs).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app
        .send(
            Method::DELETE,
            &format!("/api/auth/tokens/{their_id}"),
            Some(&mine),
            None,
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );
    assert!(
        works(&app, &theirs).await,
        "another user's token was revoked"
    );
    assert!(
        tokens(&app, &mine)
            .await
            .iter()
            .all(|t| t["id"] != their_id.as_str())
    );
}

async fn a_password_change_keeps_this_token_and_ends_the_others(app: TestApp) {
    let (this, _) = app.user("changer").await;
    let other = log_in(&app, "changer", "Phone/2", None).await;
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let a = app.post("/api/auth/password", Some(&this), json!({})).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"old_password": ["This field is required."], "new_password": ["This field is required."]})
        )
    );
    let a = app
        .post(
            "/api/auth/password",
            Some(&this),
            change("password123", "short"),
        )
        .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"new_password": ["Ensure this field has at least 8 characters."]})
        )
    );
    let a = app
        .post(
            "/api/auth/password",
            Some(&this),
            change("not-mine-1", "new-password-1"),
        )
        .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"non_field_errors": ["Incorrect Credentials"]})
        )
    );
    assert!(
        works(&app, &other).await,
        "a refused change ended a session"
    );
    let a = app
        .post(
            "/api/auth/password",
            Some(&this),
            change("password123", "new-password-1"),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    assert!(
        works(&app, &this).await,
        "the request's own token was ended"
    );
    assert!(!works(&app, &other).await, "another session survived");
    let login = |password: &str| {
        app.post(
            "/api/auth/login",
            None,
            json!({"username": "changer", "password": password}),
        )
    };
    assert_eq!(login("password123").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(login("new-password-1").await.status, StatusCode::OK);
    // Without a token: 401, before the body is read.
    let a = app
        .post("/api/auth/password", None, change("new-password-1", "x"))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let kinds = activity_kinds(&app, &this).await;
    assert!(kinds.contains(&"password_changed".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"login_failed".to_owned()), "{kinds:?}");
}

async fn activity(app: &TestApp, token: &str) -> Vec<Value> {
    let a = app.get("/api/auth/me/activity", Some(token)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body.as_array().unwrap().clone()
}

async fn activity_kinds(app: &TestApp, token: &str) -> Vec<String> {
    activity(app, token)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_security_log_says_where_from(app: TestApp) {
    let (first, _) = app.user("logged").await;
    let wrong = send_as(
        &app,
        (Method::POST, "/api/auth/login"),
        None,
        "Guesser/0.1",
        Some(json!({"username": "logged", "password": "wrong-guess"})),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let second = log_in(&app, "logged", "Curl/8.5\tx", Some("ci")).await;
    let second_id = tokens(&app, &second).await[1]["id"].clone();
    assert_eq!(
        revoke(&app, &first, second_id.as_str().unwrap()).await,
        StatusCode::NO_CONTENT
    );
    let log = activity(&app, &first).await;
    let kinds: Vec<&str> = log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "token_revoked",
            "logged_in",
            "login_failed",
            "logged_in",
            "registered"
        ],
        "{log:?}"
    );
    // The revocation names the token; the login says where from, with
    // the same id; the failure says where from.
    assert_eq!(log[0]["token"], second_id);
    assert_eq!(log[1]["token"], second_id);
    assert_eq!(log[1]["address"], "127.0.0.1");
    assert_eq!(
        log[1]["user_agent"], "Curl/8.5?x",
        "a control character is not passed on"
    );
    assert_eq!(log[2]["user_agent"], "Guesser/0.1");
    assert_eq!(log[2]["address"], "127.0.0.1");
    assert!(log[2].get("token").is_none());
    assert!(
        log[4].get("address").is_none(),
        "registration carries no client"
    );
    // The export holds them too.
    let export = app.get("/api/auth/me/export", Some(&first)).await;
    assert_eq!(export.body["activity"][1]["user_agent"], "Curl/8.5?x");
    assert_eq!(export.body["tokens"][0]["current"], true);
}

/// With auto-refresh on (a 2 s interval, a cap 5 s past the lifetime),
/// use moves the expiry, and it stops at the cap.
async fn sliding_expiry_moves_with_use_and_stops_at_the_cap(
    stores: Stores,
    wiring: movies::Wiring,
) {
    let mut c = config(&stores);
    c.auth.auth_token_auto_refresh = true;
    c.auth.auth_token_min_refresh_secs = 2;
    c.auth.auth_token_max_ttl_secs = c.auth.auth_token_ttl_secs + 5;
    let stack = movies::Stack::build(&c, wiring)
        .await
        .expect("stack starts");
    let app = TestApp::serve(stack).await;
    let (token, _) = app.user("slider").await;
    let expiry = || async {
        let list = tokens(&app, &token).await;
        let (created, expiry) = (&list[0]["created"], &list[0]["expiry"]);
        let parse = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        (parse(created), parse(expiry))
    };
    let (created, first) = expiry().await;
    let lifetime = chrono::TimeDelta::seconds(c.auth.auth_token_ttl_secs as i64);
    // Issued a full lifetime from the login (a little before it was
    // recorded), not moved within the interval.
    let issued_for = created + lifetime - first;
    assert!(
        issued_for >= chrono::TimeDelta::zero() && issued_for < chrono::TimeDelta::seconds(1),
        "{first} for a token recorded at {created}"
    );
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert!(works(&app, &token).await);
    let (_, moved) = expiry().await;
    assert!(moved > first, "{moved} after {first}");
    let cap = created + lifetime + chrono::TimeDelta::seconds(5);
    assert!(moved <= cap);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert!(works(&app, &token).await);
    let (_, capped) = expiry().await;
    assert_eq!(capped, cap, "the expiry reaches the cap");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(works(&app, &token).await);
    assert_eq!(expiry().await.1, cap, "and stops there");
    app.stop().await;
}

#[tokio::test]
async fn sliding_expiry_on_sqlite() {
    let stores = Stores::sqlite().await;
    sliding_expiry_moves_with_use_and_stops_at_the_cap(stores, movies::Wiring::InProcess).await;
}

#[tokio::test]
async fn sliding_expiry_on_postgres() {
    let Some(stores) = Stores::postgres("sliding_expiry").await else {
        return;
    };
    sliding_expiry_moves_with_use_and_stops_at_the_cap(stores, movies::Wiring::Grpc).await;
}
