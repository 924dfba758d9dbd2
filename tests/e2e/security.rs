//! What an attacker on the network can make the gateway hold: connections
//! that never finish, connections past the file limit, metric series. Each
//! runs a real gateway on loopback (its backends are not needed: nothing
//! here reaches them).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with `config`'s limits and no backends.
async fn gateway(config: gateway::Config) -> (String, tokio::task::JoinHandle<()>) {
    let (addr, _, server) = gateway_with_metrics(config).await;
    (addr, server)
}

/// As [`gateway`], with its metrics listener on a free port: the REST
/// address, the metrics address, the server.
async fn gateway_with_metrics(
    config: gateway::Config,
) -> (String, String, tokio::task::JoinHandle<()>) {
    let gw = gateway::Application::build(&gateway::Config {
        gateway_listen: "127.0.0.1:0".parse().unwrap(),
        gateway_auth_url: "http://127.0.0.1:9".into(),
        gateway_catalog_url: "http://127.0.0.1:9".into(),
        gateway_metrics_listen: platform::MaybeAddr(Some("127.0.0.1:0".parse().unwrap())),
        ..config
    })
    .await
    .unwrap();
    let addr = gw.local_addr().to_string();
    let metrics = gw.metrics_addr().expect("a metrics listener").to_string();
    let server = tokio::spawn(async move {
        gw.run_until_stopped(std::future::pending()).await.unwrap();
    });
    (addr, metrics, server)
}

/// GET /healthz on a connection of its own (a pooled one may have been
/// closed as idle by the server's header timeout, which is the point of
/// these tests).
async fn healthz(addr: &str) -> StatusCode {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    http.get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Whether the server closed `s` (EOF or reset) within `within`, reading
/// whatever it sent first.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// 500 slowloris connections (a byte, then silence) and idle ones are all
/// closed by the server at the header timeout, while /healthz answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_connections_are_closed_at_the_header_timeout() {
    let (addr, _server) = gateway(gateway::Config {
        gateway_header_timeout_secs: 1,
        ..gateway::Config::default()
    })
    .await;
    let mut held = vec![];
    for i in 0..500 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"G").await.unwrap(); // slowloris: a head never finished
        }
        held.push(s);
    }
    assert_eq!(healthz(&addr).await, StatusCode::OK);
    let started = Instant::now();
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(5)).await,
            "connection {i} outlived the header timeout"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(healthz(&addr).await, StatusCode::OK);
}

/// Past the connection cap a new connection gets 503 with Retry-After and
/// is closed; once others close, connections are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_cap_are_refused_with_503() {
    let (addr, _server) = gateway(gateway::Config {
        gateway_max_connections: 20,
        ..gateway::Config::default()
    })
    .await;
    let mut held = vec![];
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_string(&mut answer))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(healthz(&addr).await, StatusCode::OK);
}

/// 5,000 made-up methods leave /metrics small (they share the `other`
/// label), and /metrics keeps answering, on its own listener: the public
/// port has no `/metrics` (security review 3, finding 8: it showed login
/// successes and failures over time to anyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let (addr, metrics_addr, _server) = gateway_with_metrics(gateway::Config::default()).await;
    let http = reqwest::Client::new();
    let mut sent = tokio::task::JoinSet::new();
    for worker in 0..10 {
        let (http, addr) = (http.clone(), addr.clone());
        sent.spawn(async move {
            for i in 0..500 {
                let method = Method::from_bytes(format!("M{worker}X{i}").as_bytes()).unwrap();
                let path = format!("http://{addr}/api/auth/movies/{i}");
                http.request(method, path).send().await.unwrap();
            }
        });
    }
    while let Some(done) = sent.join_next().await {
        done.unwrap();
    }
    let metrics = crate::support::scrape(&http, &metrics_addr).await;
    assert!(metrics.len() < 100_000, "{} bytes", metrics.len());
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    let public = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
}

/// Pagination links come from the API's own address, never from the
/// `Host` header a client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_links_ignore_the_host_header() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (token, _) = app.user("u").await;
    app.movie(&token, "One").await;
    app.movie(&token, "Two").await;
    let page: serde_json::Value = app
        .http
        .get(format!("{}/api/auth/movies?limit=1", app.base))
        .header("authorization", format!("Token {token}"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["next"].as_str().unwrap();
    assert_eq!(
        next,
        format!("{}/api/auth/movies?limit=1&offset=1", app.base)
    );
}

/// A flood of logins for made-up names from one address: that address is
/// refused past its bucket (429; a burst of 50 here, so that the flood is
/// small), its admitted ones take turns so the hashing queue never fills
/// (no 503), and a real user logging in from another address meanwhile gets
/// in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_from_one_address_does_not_lock_out_others() {
    let stores = crate::helpers::Stores::sqlite().await;
    let mut config = crate::helpers::config(&stores);
    config.gateway.gateway_auth_burst = 50;
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("stack starts");
    let app = crate::helpers::TestApp::serve(stack).await;
    app.user("owner").await;
    let url = format!("{}/api/auth/login", app.base);
    let flood = reqwest::Client::new();
    let mut attacks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (flood, url) = (flood.clone(), url.clone());
        attacks.spawn(async move {
            let body =
                serde_json::json!({"username": format!("nobody{i}"), "password": "guess-guess"});
            flood.post(url).json(&body).send().await.unwrap().status()
        });
    }
    let owner = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = owner
        .post(&url)
        .json(&serde_json::json!({"username": "owner", "password": "password123"}))
        .send()
        .await
        .unwrap();
    let owner_took = started.elapsed();
    assert_eq!(answer.status(), StatusCode::OK);
    let mut seen = std::collections::BTreeMap::new();
    while let Some(status) = attacks.join_next().await {
        *seen.entry(status.unwrap().as_u16()).or_insert(0) += 1;
    }
    eprintln!("owner's login took {owner_took:?} during the flood; flood answers: {seen:?}");
    assert!(seen.get(&429).copied().unwrap_or(0) >= 100, "{seen:?}");
    assert!(seen.keys().all(|s| [400, 429].contains(s)), "{seen:?}");
}

/// With the defaults, a client sending many more registrations at once
/// than the hashing queue holds (`AUTH_HASH_QUEUE`, 64) from one address is
/// served in turns: no 429 (well inside the burst) and no 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_client_takes_turns_and_never_fills_the_hash_queue() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    let url = format!("{}/api/auth/register", app.base);
    let mut registrations = tokio::task::JoinSet::new();
    for i in 0..150 {
        let (http, url) = (app.http.clone(), url.clone());
        registrations.spawn(async move {
            let body = serde_json::json!({
                "username": format!("parallel{i}"),
                "email": format!("parallel{i}@example.com"),
                "password": "password123",
            });
            http.post(url).json(&body).send().await.unwrap().status()
        });
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(status) = registrations.join_next().await {
        *seen.entry(status.unwrap().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(seen, [(200, 150)].into(), "{seen:?}");
}

/// Titles and directors with control characters or invisible formatting
/// characters are refused with a field error; joiners real scripts need pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_that_disguises_itself_is_refused() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (token, _) = app.user("u").await;
    for (title, message) in [
        ("a\u{0}b", "Null characters are not allowed."),
        (
            "\u{1b}[31mred",
            "Control characters and invisible formatting characters are not allowed.",
        ),
        (
            "evil\u{202E}txt.exe",
            "Control characters and invisible formatting characters are not allowed.",
        ),
        (
            "zero\u{200B}width",
            "Control characters and invisible formatting characters are not allowed.",
        ),
    ] {
        let a = app
            .post(
                "/api/auth/movies",
                Some(&token),
                serde_json::json!({"title": title, "director": "d"}),
            )
            .await;
        crate::helpers::assert_answer(
            &a,
            StatusCode::BAD_REQUEST,
            serde_json::json!({"title": [message]}),
        );
    }
    let a = app
        .post(
            "/api/auth/movies",
            Some(&token),
            serde_json::json!({"title": "👩\u{200D}💻", "director": "d"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

/// Answers that carry a token tell caches not to keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_with_a_token_are_not_stored_by_caches() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    let body = serde_json::json!({"username": "cached", "email": "c@example.com", "password": "password123"});
    let a = app.post("/api/auth/register", None, body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["cache-control"], "no-store");
    let body = serde_json::json!({"username": "cached", "password": "password123"});
    let a = app.post("/api/auth/login", None, body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["cache-control"], "no-store");
}

/// Security review 3, finding 11: every answer says `nosniff` (JSON ones
/// did not), and personal answers that may be revalidated (the activity)
/// say `private`, so that no shared cache keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_are_not_sniffed_and_personal_ones_not_shared() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (token, _) = app.user("private").await;
    for (path, token) in [
        ("/api/auth/movies", Some(token.as_str())),
        ("/api/auth/movies", None),
        ("/api/auth/me/activity", Some(token.as_str())),
        ("/api/auth/nowhere", Some(token.as_str())),
    ] {
        let a = app.get(path, token).await;
        assert_eq!(
            a.headers["x-content-type-options"], "nosniff",
            "{path}: {}",
            a.status
        );
    }
    let a = app.get("/api/auth/me/activity", Some(&token)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["cache-control"], "private");
    for path in ["/api/auth/me", "/api/auth/me/export"] {
        let a = app.get(path, Some(&token)).await;
        assert_eq!(a.headers["cache-control"], "no-store", "{path}");
    }
}

/// CORS only for the configured origins; none configured, no CORS header.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_answers_only_the_configured_origins() {
    let preflight = |addr: &str, origin: &str| {
        reqwest::Client::new()
            .request(Method::OPTIONS, format!("http://{addr}/api/auth/movies"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let (addr, _server) = gateway(gateway::Config {
        gateway_cors_origins: vec!["https://app.example".into()],
        ..gateway::Config::default()
    })
    .await;
    let allowed = preflight(&addr, "https://app.example").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let other = preflight(&addr, "https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        get.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("etag")
    );

    let (plain, _server) = gateway(gateway::Config::default()).await;
    let get = reqwest::Client::new()
        .get(format!("http://{plain}/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        get.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    );
    assert!(get.headers().get("vary").is_none());
}

/// Security review 3, finding 9: `GATEWAY_CORS_ORIGINS='*'` made the
/// gateway exit (a panic, exit code 101), and the origin `null` was taken
/// without a word. Now `*` alone means any origin, and what is not an
/// origin, `*` beside others, or `null` not explicitly allowed is a clear
/// error at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_settings_start_or_say_why_not() {
    let config = |origins: &[&str], allow_null: bool| gateway::Config {
        gateway_listen: "127.0.0.1:0".parse().unwrap(),
        gateway_auth_url: "http://127.0.0.1:9".into(),
        gateway_catalog_url: "http://127.0.0.1:9".into(),
        gateway_cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        gateway_cors_allow_null_origin: allow_null,
        gateway_metrics_listen: platform::MaybeAddr::OFF,
        ..gateway::Config::default()
    };
    for (origins, allow_null, error) in [
        (&["https://a.example", "*"][..], false, "stands alone"),
        (&["null"][..], false, "GATEWAY_CORS_ALLOW_NULL_ORIGIN"),
        (&["app.example"][..], false, "is not an origin"),
        (&["https://a.example/path"][..], false, "is not an origin"),
    ] {
        let built = gateway::Application::build(&config(origins, allow_null)).await;
        let Err(e) = built else {
            panic!("{origins:?} was accepted")
        };
        assert!(e.to_string().contains(error), "{origins:?}: {e}");
    }
    assert!(
        gateway::Application::build(&config(&["null"], true))
            .await
            .is_ok()
    );
    let (addr, _server) = gateway(gateway::Config {
        gateway_cors_origins: vec!["*".into()],
        ..gateway::Config::default()
    })
    .await;
    let get = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers()["access-control-allow-origin"], "*");
}

/// Logins and registrations carry the IETF `RateLimit` fields: the policy
/// and what is left of it for this client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_carry_the_rate_limit_fields() {
    let stores = crate::helpers::Stores::sqlite().await;
    let app = crate::helpers::TestApp::start(&stores, movies::Wiring::InProcess).await;
    // Ten at once (refused by the field checks: no hashing, no waiting).
    let mut sent = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url) = (app.http.clone(), format!("{}/api/auth/login", app.base));
        sent.spawn(async move {
            http.post(url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap()
        });
    }
    let mut remaining = vec![];
    while let Some(answer) = sent.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let h = answer.headers();
        // The defaults: a bucket of 1000, refilled at 300 a minute (so
        // full again 200 s after it was emptied).
        assert_eq!(h["ratelimit-policy"], "\"auth\";q=1000;w=200");
        let value = h["ratelimit"].to_str().unwrap();
        assert!(
            value.starts_with("\"auth\";r=") && value.contains(";t="),
            "{value}"
        );
        let r = value.split(';').find_map(|p| p.strip_prefix("r=")).unwrap();
        remaining.push(r.parse::<u64>().unwrap());
    }
    // Each took one of the 1000: the last saw at most 990 left, plus what a
    // second refills (5).
    assert!(remaining.iter().min().unwrap() <= &995, "{remaining:?}");
    // Other routes do not carry them.
    let movies = app.get("/api/auth/movies", None).await;
    assert!(movies.headers.get("ratelimit").is_none());
}

/// Security review 3, finding 10: the launcher opened `SubscribeEvents` to
/// every local process when every listener was on loopback (the feed says
/// who rated what, which REST hides). Now it always takes a key: without
/// one set, the launcher's own, in a file only its owner can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_launchers_event_feed_takes_the_key_in_its_owners_file() {
    use proto::catalog::SubscribeEventsRequest;
    use proto::catalog::catalog_service_client::CatalogServiceClient;
    let stores = crate::helpers::Stores::sqlite().await;
    let mut config = crate::helpers::config_on(stores.auth.url(), stores.catalog.url());
    config.catalog.catalog_service_key = None;
    let file = config.service_key_file();
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("the stack starts");
    let catalog = format!("http://{}", stack.catalog_addr());
    let app = crate::helpers::TestApp::serve(stack).await;
    let mut client = CatalogServiceClient::connect(catalog).await.unwrap();
    let request = |key: Option<&str>| {
        let mut r = tonic::Request::new(SubscribeEventsRequest { from_position: 0 });
        if let Some(key) = key {
            r.metadata_mut()
                .insert("x-service-key", key.parse().unwrap());
        }
        r
    };
    let refused = client.subscribe_events(request(None)).await;
    assert!(refused.is_err(), "subscribed without a key");
    let key = std::fs::read_to_string(&file).expect("the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    assert!(
        client
            .subscribe_events(request(Some(key.trim())))
            .await
            .is_ok()
    );
    app.stop().await;
}

/// Security review 3, finding 7: one user may add movies and ratings only
/// up to the write quota in any window (here 3 a minute): each write says
/// how many are left (`RateLimit`), the next is 429 with `Retry-After`,
/// movies and ratings count together, other users are not held back, and a
/// keyed retry of a stored write still answers (it stores nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_writes_are_under_a_quota() {
    let stores = crate::helpers::Stores::sqlite().await;
    let mut config = crate::helpers::config_on(stores.auth.url(), stores.catalog.url());
    config.catalog.catalog_write_quota = 3;
    config.catalog.catalog_write_quota_window_secs = 60;
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("the stack starts");
    let app = crate::helpers::TestApp::serve(stack).await;
    let (writer, _) = app.user("writer").await;
    let (other, _) = app.user("other").await;
    let theirs = app.movie(&other, "Theirs").await;
    let movie = serde_json::json!({"title": "Kept", "director": "D"});
    let (status, first) =
        crate::helpers::post_keyed(&app, "/api/auth/movies", Some(&writer), "k", movie.clone())
            .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let mut left = vec![];
    for i in 0..2 {
        let a = app
            .post(
                "/api/auth/movies",
                Some(&writer),
                serde_json::json!({"title": format!("M{i}"), "director": "D"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        assert_eq!(a.headers["ratelimit-policy"], "\"writes\";q=3;w=60");
        left.push(a.headers["ratelimit"].to_str().unwrap().to_owned());
    }
    assert!(left[1].starts_with("\"writes\";r=0;t="), "{left:?}");
    let refused = app.rate(&writer, theirs, 4).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    assert!(refused.headers.contains_key("retry-after"));
    let refused = app
        .post(
            "/api/auth/movies",
            Some(&writer),
            serde_json::json!({"title": "X", "director": "D"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    // The keyed retry answers as before; the other user writes on.
    let (status, again) =
        crate::helpers::post_keyed(&app, "/api/auth/movies", Some(&writer), "k", movie).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    app.movie(&other, "Theirs too").await;
    app.stop().await;
}
