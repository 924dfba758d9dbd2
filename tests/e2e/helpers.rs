use std::time::Duration;

use event_store::testing::TempStore;
use movies::{Config, Stack, Wiring};
use platform::testing::Running;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Runs each named case once per backend and wiring: `sqlite::case` (one
/// process, in-process wiring), `postgres::case` (one process, gRPC over
/// TCP) and `processes::case` (the release binaries, run by `.ci/run`).
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        platform::cases_on!([$($case),*];
            sqlite => $crate::helpers::TestApp::on_sqlite;
            postgres => $crate::helpers::TestApp::on_postgres;
            processes => $crate::helpers::TestApp::on_processes
                ["needs the binaries (cargo build --workspace --bins) and PostgreSQL; .ci/run runs it"];
        );
    };
}

/// One store per service; removed when dropped.
pub struct Stores {
    pub auth: TempStore,
    pub catalog: TempStore,
}

impl Stores {
    pub async fn sqlite() -> Self {
        Self {
            auth: TempStore::sqlite(),
            catalog: TempStore::sqlite(),
        }
    }

    pub async fn postgres(test: &str) -> Option<Self> {
        Some(Self {
            auth: TempStore::postgres(test).await?,
            catalog: TempStore::postgres(test).await?,
        })
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An answer: status, headers, and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

/// The running stack and an HTTP client for it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The in-process stack (none in the multi-process variant).
    server: Option<Running>,
    /// The processes, in the multi-process variant.
    _processes: Option<crate::support::Deployment>,
    /// The stores, when the app owns them (dropped after it).
    _stores: Option<Stores>,
    /// Where the gateway serves `/metrics`, in one process.
    metrics: Option<String>,
}

pub fn config(stores: &Stores) -> Config {
    config_on(stores.auth.url(), stores.catalog.url())
}

/// A test stack's configuration on these two stores.
pub fn config_on(auth_store_url: &str, catalog_store_url: &str) -> Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = Config::default();
    c.auth.auth_listen = any;
    c.auth.auth_store_url = auth_store_url.to_owned();
    c.catalog.catalog_listen = any;
    c.catalog.catalog_store_url = catalog_store_url.to_owned();
    c.gateway.gateway_listen = any;
    // A key of the test's own: the launcher would otherwise keep one in a
    // file (beside a SQLite store, or in the working directory).
    c.catalog.catalog_service_key = Some("e2e-service-key".into());
    c.auth.auth_service_key = Some("e2e-auth-key".into());
    // Full rating lists stream in pages of 3: every test reading one
    // crosses pages.
    c.gateway.gateway_list_page = 3;
    // Every test's stack on its own: no fixed metrics ports.
    c.auth.auth_metrics_listen = platform::MaybeAddr::OFF;
    c.catalog.catalog_metrics_listen = platform::MaybeAddr::OFF;
    // The gateway's, on a free port (TestApp::metrics).
    c.gateway.gateway_metrics_listen = platform::MaybeAddr(Some(any));
    c
}

impl TestApp {
    /// One process on SQLite, wired in-process (what `cargo run` runs).
    pub async fn on_sqlite(_case: &str) -> Option<Self> {
        Some(Self::owning(Stores::sqlite().await, Wiring::InProcess).await)
    }

    /// One process on PostgreSQL, every hop gRPC over loopback TCP.
    pub async fn on_postgres(case: &str) -> Option<Self> {
        let stores = Stores::postgres(case).await?;
        Some(Self::owning(stores, Wiring::Grpc).await)
    }

    /// The release binaries, on PostgreSQL.
    pub async fn on_processes(case: &str) -> Option<Self> {
        let stores = Stores::postgres(case).await?;
        let mut app = Self::processes(&stores).await;
        app._stores = Some(stores);
        Some(app)
    }

    async fn owning(stores: Stores, wiring: Wiring) -> Self {
        let mut app = Self::start(&stores, wiring).await;
        app._stores = Some(stores);
        app
    }

    pub async fn start(stores: &Stores, identity: Wiring) -> Self {
        let stack = Stack::build(&config(stores), identity)
            .await
            .expect("stack starts");
        Self::serve(stack).await
    }

    pub async fn serve(stack: Stack) -> Self {
        let base = format!("http://{}", stack.gateway_addr());
        let metrics = stack.gateway_metrics_addr().map(|a| a.to_string());
        let server = Running::spawn(|stopped| async move {
            stack.run_until_stopped(stopped).await.expect("stack runs");
        });
        Self {
            base,
            http: client(),
            server: Some(server),
            _processes: None,
            _stores: None,
            metrics,
        }
    }

    /// The gateway's `/metrics` (the one-process stack's: all three
    /// services).
    pub async fn metrics(&self) -> String {
        let addr = self.metrics.as_deref().expect("a metrics listener");
        crate::support::scrape(&self.http, addr).await
    }

    /// The stack as three processes of the real binaries, on `stores`.
    pub async fn processes(stores: &Stores) -> Self {
        Self::processes_with(stores, &[]).await
    }

    /// As [`TestApp::processes`], with `extra` settings for all three.
    pub async fn processes_with(stores: &Stores, extra: &[(&str, &str)]) -> Self {
        let deployment =
            crate::support::Deployment::start_with(stores.auth.url(), stores.catalog.url(), extra)
                .await;
        let app = Self {
            base: deployment.base.clone(),
            http: client(),
            server: None,
            _processes: Some(deployment),
            _stores: None,
            metrics: None,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let ready = format!("{}/readyz", app.base);
        while !app
            .http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the processes did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        app
    }

    /// Stops the in-process stack and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.header("authorization", format!("Token {t}"));
        }
        if let Some(ct) = content_type {
            r = r.header(CONTENT_TYPE, ct);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let response = r.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send(
            Method::POST,
            path,
            token,
            Some("application/json"),
            Some(bytes),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None, None).await
    }

    /// Registers `name` (password `password123`); returns (token, id).
    pub async fn user(&self, name: &str) -> (String, i64) {
        let a = self
            .post(
                "/api/auth/register",
                None,
                serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        (
            a.body["token"].as_str().unwrap().to_owned(),
            a.body["user"]["id"].as_i64().unwrap(),
        )
    }

    /// Adds a movie; returns its id.
    /// `POST /api/auth/rating` as `token`'s user (the answer, unchecked).
    pub async fn rate(
        &self,
        token: &str,
        movie: impl Into<Value>,
        rating: impl Into<Value>,
    ) -> Answer {
        let body = serde_json::json!({"movie": movie.into(), "rating": rating.into()});
        self.post("/api/auth/rating", Some(token), body).await
    }

    pub async fn movie(&self, token: &str, title: &str) -> i64 {
        let a = self
            .post(
                "/api/auth/movies",
                Some(token),
                serde_json::json!({"title": title, "director": "D"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.body["id"].as_i64().unwrap()
    }
}

/// Asserts status and exact JSON body.
pub fn assert_answer(a: &Answer, status: StatusCode, body: Value) {
    assert_eq!((a.status, &a.body), (status, &body), "body: {}", a.text);
}

/// `POST path` with an `Idempotency-Key`: the status and the JSON body.
pub async fn post_keyed(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut r = app
        .http
        .post(format!("{}{path}", app.base))
        .header("idempotency-key", key)
        .json(&body);
    if let Some(t) = token {
        r = r.header("authorization", format!("Token {t}"));
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}
