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

    let a = app.get("/api/auth/movies", None).await;
    assert!(a.headers.contains_key("x-request-id"));
    let text = app.metrics().await;
    assert!(
        text.contains(
            "http_requests_total{method=\"GET\",route=\"/api/auth/movies\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/auth/movies\",status=\"401\",le=\"+Inf\"} 1"));
    // Not on the public port.
    assert_eq!(
        app.get("/metrics", None).await.status,
        StatusCode::NOT_FOUND
    );

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

/// In one process the gateway's `/metrics` shows all three services: its
/// own requests, its calls to the services, the calls the services served,
/// each read model's position and lag, and each store's appends and feed
/// subscribers; every family declared once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_metrics_show_all_three_services() {
    use crate::support::{assert_families_once, sample};

    let stores = Stores::sqlite().await;
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (adder, _) = app.user("adder").await;
    let (rater, _) = app.user("rater").await;
    let movie = app.movie(&adder, "Counted").await;
    let a = app.rate(&rater, movie, 4).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = app.metrics().await;
        let idle = ["auth", "catalog"].iter().all(|m| {
            sample(&text, &format!("projection_lag_positions{{model=\"{m}\"}}")) == Some(0.0)
        });
        if idle || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_families_once(&text);
    let catalog = "grpc_service=\"movies.catalog.v1.CatalogService\"";
    let auth = "grpc_service=\"movies.auth.v1.AuthService\"";
    for (series, at_least) in [
        // The gateway's calls, and the services' side of them.
        (
            format!(
                "grpc_client_requests_total{{{catalog},grpc_method=\"AddMovie\",grpc_code=\"OK\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "grpc_client_requests_total{{{auth},grpc_method=\"Register\",grpc_code=\"OK\"}}"
            ),
            2.0,
        ),
        (
            format!(
                "grpc_server_requests_total{{{catalog},grpc_method=\"RateMovie\",grpc_code=\"OK\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "grpc_server_request_duration_seconds_count{{{auth},grpc_method=\"Register\",grpc_code=\"OK\"}}"
            ),
            2.0,
        ),
        // Read models caught up with their stores (idle: no lag).
        ("projection_applied_position{model=\"catalog\"}".into(), 2.0),
        ("store_head_position{model=\"auth\"}".into(), 2.0),
        // Appends: two users, a movie and a rating, at least.
        (
            "event_store_append_duration_seconds_count{store=\"auth\"}".into(),
            2.0,
        ),
        (
            "event_store_append_duration_seconds_count{store=\"catalog\"}".into(),
            2.0,
        ),
        (
            "event_store_group_commit_appends_count{store=\"catalog\"}".into(),
            1.0,
        ),
        // Each read model follows its store's feed.
        (
            "event_store_feed_subscribers{store=\"catalog\"}".into(),
            1.0,
        ),
        ("event_store_feed_subscribers{store=\"auth\"}".into(), 1.0),
        // The steps of the rating, and the token checks of both calls.
        (
            "catalog_stage_duration_seconds_count{stage=\"authenticate\"}".into(),
            2.0,
        ),
        (
            "catalog_stage_duration_seconds_count{stage=\"rate_load_movie\"}".into(),
            1.0,
        ),
        (
            "catalog_stage_duration_seconds_count{stage=\"rate_allocate_id\"}".into(),
            1.0,
        ),
        (
            "catalog_stage_duration_seconds_count{stage=\"rate_append\"}".into(),
            1.0,
        ),
        (
            "catalog_stage_duration_seconds_count{stage=\"rate_apply_wait\"}".into(),
            1.0,
        ),
    ] {
        let value = sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(
            value >= at_least,
            "{series} = {value}, expected at least {at_least}"
        );
    }
    for model in ["auth", "catalog"] {
        let lag = format!("projection_lag_positions{{model=\"{model}\"}}");
        assert_eq!(sample(&text, &lag), Some(0.0), "{lag} when idle:\n{text}");
    }
    app.stop().await;
}

/// The compose profile's Grafana dashboard asks only for series the
/// platform exposes: every metric each panel's queries name is in the
/// one-process `/metrics` (which shows all three services); Prometheus
/// scrapes the ports the compose file has the services listen on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_queries_only_exposed_series() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/observability/grafana/dashboards/movies.json")).unwrap();

    let stores = Stores::sqlite().await;
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (token, _) = app.user("viewer").await;
    app.movie(&token, "M").await;
    let exposed = app.metrics().await;
    let sample_names: std::collections::HashSet<&str> = exposed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 7, "{} panels", panels.len());
    let mut named = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for expr in targets.iter().map(|t| t["expr"].as_str().unwrap()) {
            // Every selector is written `name{…}`: the names are what
            // stands right before a `{`.
            let names: Vec<&str> = expr
                .split('{')
                .filter_map(|before| {
                    let name = before
                        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                        .next()?;
                    (!name.is_empty()).then_some(name)
                })
                .collect();
            assert!(!names.is_empty(), "{title}: no metric in {expr}");
            for name in names {
                assert!(
                    sample_names.contains(name),
                    "{title}: {name} is not exposed\n{exposed}"
                );
                named += 1;
            }
        }
    }
    assert!(named >= 9);
    // What the dashboard must show, by family.
    let exprs = dashboard.to_string();
    for family in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "grpc_server_requests_total",
        "grpc_server_request_duration_seconds_bucket",
        "projection_lag_positions",
    ] {
        assert!(
            exprs.contains(family),
            "the dashboard does not show {family}"
        );
    }

    let prometheus = read("deploy/observability/prometheus.yml");
    let compose = read("docker-compose.yml");
    for (service, port) in [
        ("auth-service", "9051"),
        ("catalog-service", "9052"),
        ("gateway", "9053"),
    ] {
        assert!(
            prometheus.contains(&format!("names: [{service}]")),
            "{service} not scraped"
        );
        assert!(
            prometheus.contains(&format!("port: {port}")),
            "{service}: port {port} not scraped"
        );
    }
    assert!(compose.contains("AUTH_METRICS_LISTEN: 0.0.0.0:9051"));
    assert!(compose.contains("CATALOG_METRICS_LISTEN: 0.0.0.0:9052"));
    assert!(compose.contains("GATEWAY_METRICS_LISTEN: 0.0.0.0:9053"));
    app.stop().await;
}

/// Security review 3, finding 12: compose ran every service as one
/// PostgreSQL superuser on both databases. `deploy/postgres-init.sh` gives
/// each service a role of its own: owner of its database only, neither
/// superuser nor able to create roles or databases, with CONNECT revoked
/// from everyone else. Run here against the test server, as the postgres
/// image runs it: once on a database an earlier release made as the
/// superuser (its tables change owner), once on a fresh one, then again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_init_gives_each_service_a_role_of_its_own() {
    use event_store::EventStore as _;
    let admin = event_store::testing::admin_url();
    let psql = |db: &str, sql: &str| {
        let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
        let out = std::process::Command::new("psql")
            .args([url.as_str(), "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    if !psql("postgres", "SELECT 1").0 {
        assert!(
            !event_store::testing::postgres_required(),
            "PostgreSQL is required"
        );
        eprintln!("NOTICE: skipping: no PostgreSQL at {admin}");
        return;
    }
    let n = uuid::Uuid::new_v4().simple().to_string();
    let (auth_db, catalog_db) = (format!("movies_init_{n}_a"), format!("movies_init_{n}_c"));
    let (auth_role, catalog_role) = (format!("movies_init_{n}_ra"), format!("movies_init_{n}_rc"));
    struct Cleanup(Vec<String>, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for sql in &self.0 {
                let _ = std::process::Command::new("psql")
                    .args([&self.1, "-qc", sql])
                    .output();
            }
        }
    }
    let _cleanup = Cleanup(
        vec![
            format!("DROP DATABASE IF EXISTS {auth_db} WITH (FORCE)"),
            format!("DROP DATABASE IF EXISTS {catalog_db} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {auth_role}"),
            format!("DROP ROLE IF EXISTS {catalog_role}"),
        ],
        admin.clone(),
    );
    let url_of = |db: &str, role: Option<&str>| {
        let base = admin.rsplit_once('/').unwrap().0.to_owned();
        match role {
            Some(role) => base.replacen("://postgres@", &format!("://{role}@"), 1) + "/" + db,
            None => format!("{base}/{db}"),
        }
    };
    // An earlier release's auth database: made and migrated by the superuser.
    assert!(psql("postgres", &format!("CREATE DATABASE {auth_db}")).0);
    drop(
        event_store::postgres::PostgresStore::connect(&url_of(&auth_db, None))
            .await
            .unwrap(),
    );

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let admin_url: reqwest::Url = admin.parse().unwrap();
    for _ in 0..2 {
        let ran = std::process::Command::new("bash")
            .arg(root.join("deploy/postgres-init.sh"))
            .env("PGHOST", admin_url.host_str().unwrap())
            .env("PGPORT", admin_url.port().unwrap_or(5432).to_string())
            .env("POSTGRES_USER", admin_url.username())
            .env("MOVIES_AUTH_DB_PASSWORD", "auth-secret")
            .env("MOVIES_CATALOG_DB_PASSWORD", "catalog-secret")
            .env("AUTH_DB", &auth_db)
            .env("AUTH_ROLE", &auth_role)
            .env("CATALOG_DB", &catalog_db)
            .env("CATALOG_ROLE", &catalog_role)
            .output()
            .expect("bash runs");
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    for (db, role) in [(&auth_db, &auth_role), (&catalog_db, &catalog_role)] {
        let (_, powers) = psql(
            "postgres",
            &format!(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{role}'"
            ),
        );
        assert_eq!(powers, "f|f|f", "{role}");
        let (_, owner) = psql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"),
        );
        assert_eq!(&owner, role);
        let (_, public) = psql(
            "postgres",
            &format!("SELECT has_database_privilege('public', '{db}', 'CONNECT')"),
        );
        assert_eq!(public, "f", "{db}: PUBLIC may connect");
        // The service connects as its role, migrates and writes.
        let store = event_store::postgres::PostgresStore::connect(&url_of(db, Some(role)))
            .await
            .unwrap_or_else(|e| panic!("{role} on {db}: {e}"));
        let event = event_store::NewEvent::new("Probed", &serde_json::json!({})).unwrap();
        store
            .append("probe", event_store::ExpectedVersion::Any, vec![event])
            .await
            .unwrap_or_else(|e| panic!("{role} writes to {db}: {e}"));
        let (_, tables) = psql(
            db,
            &format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> '{role}'"
            ),
        );
        assert_eq!(tables, "0", "{db}: tables not the role's");
    }
    // Neither role reaches the other's database.
    let crossed =
        event_store::postgres::PostgresStore::connect(&url_of(&auth_db, Some(&catalog_role))).await;
    assert!(
        crossed.is_err(),
        "the catalog's role connected to auth's database"
    );
}
