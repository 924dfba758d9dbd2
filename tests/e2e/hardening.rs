use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Answer, TestApp, assert_answer};

crate::on_every_backend!(malformed_requests_get_drf_errors_and_never_a_5xx);

async fn malformed_requests_get_drf_errors_and_never_a_5xx(app: TestApp) {
    let (t, _) = app.user("u").await;
    let json_ct = Some("application/json");
    let a = send_json(&app, Method::POST, "/api/auth/movies", &t, b"{\"title\": ").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - "),
        "{}",
        a.text
    );

    let a = app
        .send(
            Method::POST,
            "/api/auth/movies",
            Some(&t),
            Some("text/plain"),
            Some(b"hi".to_vec()),
        )
        .await;
    assert_answer(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        json!({"detail": "Unsupported media type \"text/plain\" in request."}),
    );
    // A media type that is not even UTF-8: 415, not a crash.
    let odd = reqwest::header::HeaderValue::from_bytes(b"application/\xe9\xe9json").unwrap();
    let r = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .header(reqwest::header::CONTENT_TYPE, odd)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let a = app
        .send(
            Method::POST,
            "/api/auth/login",
            None,
            json_ct,
            Some(b"[1, 2]".to_vec()),
        )
        .await;
    assert_answer(
        &a,
        StatusCode::BAD_REQUEST,
        json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    );

    // 2 MiB: refused, and the server keeps serving.
    let big = vec![b' '; 2 * 1024 * 1024];
    let a = app
        .send(Method::POST, "/api/auth/register", None, json_ct, Some(big))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body["detail"].is_string());
    assert_eq!(
        app.get("/api/auth/movies", Some(&t)).await.status,
        StatusCode::OK
    );

    let a = app.get("/no/such/path", None).await;
    assert_answer(&a, StatusCode::NOT_FOUND, json!({"detail": "Not found."}));

    let a = send_json(&app, Method::PUT, "/api/auth/movies", &t, b"{}").await;
    assert_answer(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"detail": "Method \"PUT\" not allowed."}),
    );
    let allow = a.headers["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let a = app
        .send(Method::DELETE, "/api/auth/login", None, None, None)
        .await;
    assert_answer(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"detail": "Method \"DELETE\" not allowed."}),
    );

    // Deeply nested JSON, odd bytes, huge numbers: 4xx, never 5xx.
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        nested.into_bytes(),
        vec![0xff, 0xfe, 0x00],
        b"{\"movie\": 1e400, \"rating\": 1}".to_vec(),
    ] {
        let a = send_json(&app, Method::POST, "/api/auth/rating", &t, &body).await;
        assert!(a.status.is_client_error(), "{} {}", a.status, a.text);
    }
    let huge = b"{\"movie\": 99999999999999999999, \"rating\": 99999999999999999999}".to_vec();
    let a = send_json(&app, Method::POST, "/api/auth/rating", &t, &huge).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
}

/// A gateway whose backends are down answers 503 at once; one whose backend
/// never answers gives 504 at the deadline. Neither hangs.
#[tokio::test]
async fn backends_down_or_silent_are_503_or_504() {
    // Nothing listens on a port we just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    for (url, status) in [
        (format!("http://{free}"), StatusCode::SERVICE_UNAVAILABLE),
        (format!("http://{silent_addr}"), StatusCode::GATEWAY_TIMEOUT),
    ] {
        let gw = gateway::Application::build(&gateway::Config {
            gateway_listen: "127.0.0.1:0".parse().unwrap(),
            gateway_auth_url: url.clone(),
            gateway_catalog_url: url,
            gateway_grpc_timeout_ms: 500,
            gateway_metrics_listen: platform::MaybeAddr::OFF,
            ..gateway::Config::default()
        })
        .await
        .unwrap();
        let base = format!("http://{}", gw.local_addr());
        let server = tokio::spawn(gw.run_until_stopped(std::future::pending()));
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        let login = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": "u", "password": "p"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), status);
        assert!(login.json::<serde_json::Value>().await.unwrap()["detail"].is_string());
        let movies = http
            .get(format!("{base}/api/auth/movies"))
            .header("authorization", format!("Token {}", "ab".repeat(32)))
            .send()
            .await
            .unwrap();
        assert_eq!(movies.status(), status);
        assert!(started.elapsed() < Duration::from_secs(10));
        let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        server.abort();
    }
}

/// `method path` as the holder of `token`, with `body` sent as JSON.
async fn send_json(app: &TestApp, method: Method, path: &str, token: &str, body: &[u8]) -> Answer {
    let json = Some("application/json");
    app.send(method, path, Some(token), json, Some(body.to_vec()))
        .await
}
