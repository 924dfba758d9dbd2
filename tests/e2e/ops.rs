use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Stores, TestApp, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_readiness_metrics_and_openapi_answer() {
    let stores = Stores::sqlite().await;
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let a = app.get("/healthz", None).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let a = app.get("/readyz", None).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    app.get("/api/auth/movies", None).await;
    let a = app.get("/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.text.contains(
            "http_requests_total{method=\"GET\",route=\"/api/auth/movies\",status=\"401\"} 1"
        ),
        "{}",
        a.text
    );
    assert!(a.text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/auth/movies\",status=\"401\",le=\"+Inf\"} 1"));
    assert!(a.headers.contains_key("x-request-id"));

    let a = app.get("/api/openapi.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["openapi"], "3.1.0");
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/logoutall",
        "/api/auth/movies",
        "/api/auth/movies/{id}",
        "/api/auth/rating",
    ] {
        assert!(a.body["paths"][path].is_object(), "{path} missing");
    }
    assert!(a.body["paths"]["/api/auth/rating"]["post"]["responses"]["403"].is_object());
    app.stop().await;
}

/// The request id a client sends comes back; a new one is made otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_ids_are_echoed_or_made() {
    let stores = Stores::sqlite().await;
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let r = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 32);
}

/// Stopping the stack (Ctrl-C, SIGTERM) lets the requests under way finish
/// with their real answers: the gateway drains first, and the services stop
/// only after it (their TCP listeners included).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_lets_requests_in_flight_finish() {
    use std::time::{Duration, Instant};
    let stores = Stores::sqlite().await;
    // Many logins of one user from one address at once: lift the login
    // limits, which are not what this test is about.
    let mut config = config(&stores);
    config.auth.auth_login_max_failures = 10_000;
    config.auth.auth_login_max_failures_per_user = 10_000;
    config.auth.auth_hash_queue = 10_000;
    config.gateway.gateway_auth_per_minute = 1_000_000;
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("stack starts");
    let auth_addr = stack.auth_addr();
    let app = TestApp::serve(stack).await;
    app.user("walker").await;
    // Logins are slow (argon2id, one hash at a time per core): with 32 per
    // core, many are still being worked on when the stop comes.
    let url = format!("{}/api/auth/login", app.base);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let logins: Vec<_> = (0..32 * cores)
        .map(|_| {
            let (http, url) = (app.http.clone(), url.clone());
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .json(&json!({"username": "walker", "password": "password123"}))
                    .send()
                    .await;
                (r.map(|r| r.status()), Instant::now())
            })
        })
        .collect();
    // Long enough for every connection to be accepted, even on a busy
    // machine; far shorter than the hashing queued up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        platform::probe::grpc_serving(auth_addr).await,
        "auth-service still serves while the gateway drains"
    );
    let probed = Instant::now();
    stopping.await.unwrap();
    let mut later = 0;
    for login in logins {
        let (status, at) = login.await.unwrap();
        assert_eq!(
            status.expect("every request gets an answer"),
            StatusCode::OK
        );
        later += usize::from(at > probed);
    }
    assert!(
        later > 0,
        "no request was still in flight: the test proved nothing"
    );
    assert!(
        !platform::probe::grpc_serving(auth_addr).await,
        "auth-service stops after the gateway"
    );
}
