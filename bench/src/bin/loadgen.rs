//! A small HTTP load generator for the REST API, and the baseline it is
//! compared with.
//!
//! - `loadgen bare --listen 127.0.0.1:8100`: a bare axum handler answering
//!   `GET /api/auth/movies` with the same 100-movie JSON from memory (the
//!   ceiling of one HTTP hop).
//! - `loadgen run --url http://127.0.0.1:8000 --scenario movies|rating|login`:
//!   64 keep-alive connections (one per worker, like wrk) for `--seconds`;
//!   prints requests/s and p50/p99. `--rate` paces the total rate instead of
//!   running flat out. Setup (users, 100 movies) goes through the API itself.
//!
//! `bench/http.sh` runs the whole comparison.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use bench::run_for;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

// glibc malloc's arena locks showed up as the top cost under load (futex
// waits in malloc/free); mimalloc has none of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bare baseline.
    Bare {
        #[arg(long, default_value = "127.0.0.1:8100")]
        listen: SocketAddr,
    },
    /// Register a user, make sure 100 movies exist, print the user's token
    /// (for other load tools, e.g. wrk).
    Setup {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
    },
    /// Generate load.
    Run {
        /// Base URL of the API (http only).
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        #[arg(long, value_enum)]
        scenario: Scenario,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Total requests per second to pace at (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// Authenticated GET /api/auth/movies (100 movies).
    Movies,
    /// POST /api/auth/rating, each a new (user, movie) pair.
    Rating,
    /// POST /api/auth/login with correct credentials.
    Login,
}

fn movies_json() -> Bytes {
    let movies: Vec<Value> = (1..=100)
        .map(|i| json!({"id": i, "title": format!("Movie {i}"), "director": "Director"}))
        .collect();
    Bytes::from(serde_json::to_vec(&movies).unwrap())
}

async fn bare(listen: SocketAddr) {
    let body = movies_json();
    let app = axum::Router::new().route(
        "/api/auth/movies",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(hyper::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    eprintln!("bare baseline on {listen}");
    axum::serve(listener, app).await.unwrap();
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let io = hyper_util_io::TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Self {
            host: addr.to_owned(),
            sender,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Bytes) {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(t) = token {
            r = r.header("authorization", format!("Token {t}"));
        }
        let body = match body {
            Some(b) => {
                r = r.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&b).unwrap()))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await.expect("connection open");
        let response = self
            .sender
            .send_request(r.body(body).unwrap())
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, bytes)
    }
}

/// Tokio I/O for hyper, without pulling in hyper-util.
mod hyper_util_io {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct TokioIo<T>(T);

    impl<T> TokioIo<T> {
        pub fn new(inner: T) -> Self {
            Self(inner)
        }
    }

    impl<T: tokio::io::AsyncRead + Unpin> hyper::rt::Read for TokioIo<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            // SAFETY: ReadBuf only writes initialized bytes and we advance by
            // exactly what it filled.
            let filled = unsafe {
                let mut tbuf = tokio::io::ReadBuf::uninit(buf.as_mut());
                match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut tbuf) {
                    Poll::Ready(Ok(())) => tbuf.filled().len(),
                    other => return other,
                }
            };
            unsafe { buf.advance(filled) };
            Poll::Ready(Ok(()))
        }
    }

    impl<T: tokio::io::AsyncWrite + Unpin> hyper::rt::Write for TokioIo<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
        }
    }
}

/// Registers a user (or logs in if it exists); returns its token.
async fn user(conn: &mut Conn, name: &str) -> String {
    let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
    let (status, bytes) = conn
        .send(Method::POST, "/api/auth/register", None, Some(body))
        .await;
    let (status, bytes) = if status == StatusCode::OK {
        (status, bytes)
    } else {
        let login = json!({"username": name, "password": "password123"});
        conn.send(Method::POST, "/api/auth/login", None, Some(login))
            .await
    };
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice::<Value>(&bytes).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Makes sure the user `token` sees at least `n` movies; returns their ids.
async fn movies(conn: &mut Conn, token: &str, n: usize) -> Vec<i64> {
    let (_, bytes) = conn
        .send(Method::GET, "/api/auth/movies", Some(token), None)
        .await;
    let have = serde_json::from_slice::<Value>(&bytes)
        .unwrap()
        .as_array()
        .map_or(0, Vec::len);
    for i in have..n {
        let body = json!({"title": format!("Movie {i}"), "director": "Director"});
        let (status, _) = conn
            .send(Method::POST, "/api/auth/movies", Some(token), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, bytes) = conn
        .send(Method::GET, "/api/auth/movies", Some(token), None)
        .await;
    serde_json::from_slice::<Value>(&bytes)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

struct Worker {
    conn: Conn,
    token: String,
    name: String,
    /// Movies this worker's user may still rate.
    to_rate: Vec<i64>,
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Bare { listen } => bare(listen).await,
        Command::Setup { url } => {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let mut conn = Conn::open(&addr).await;
            let token = user(&mut conn, &format!("wrk{}", std::process::id())).await;
            movies(&mut conn, &token, 100).await;
            println!("{token}");
        }
        Command::Run {
            url,
            scenario,
            connections,
            seconds,
            rate,
        } => {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let mut setup = Conn::open(&addr).await;
            let run_id = std::process::id();
            // The bare baseline answers only GET movies: no setup there.
            let bare =
                setup.send(Method::GET, "/healthz", None, None).await.0 == StatusCode::NOT_FOUND;
            let adder = if bare {
                String::new()
            } else {
                user(&mut setup, &format!("adder{run_id}")).await
            };
            let ids = if bare {
                vec![]
            } else {
                movies(&mut setup, &adder, 100).await
            };
            let extra = if scenario == Scenario::Rating {
                // Enough fresh (user, movie) pairs for the whole run.
                let want = 100 + (seconds as usize * 20_000).div_ceil(connections);
                movies(&mut setup, &adder, want).await
            } else {
                ids.clone()
            };
            let extra = Arc::new(extra);
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
            let make = |w: usize| {
                let (addr, extra) = (addr.clone(), extra.clone());
                async move {
                    let mut conn = Conn::open(&addr).await;
                    let name = format!("w{run_id}x{w}");
                    let token = if bare {
                        "x".repeat(64)
                    } else {
                        user(&mut conn, &name).await
                    };
                    Worker {
                        conn,
                        token,
                        name,
                        to_rate: extra.iter().rev().copied().collect(),
                    }
                }
            };
            let op = move |mut w: Worker| async move {
                let ok = match scenario {
                    Scenario::Movies => {
                        let (s, b) = w
                            .conn
                            .send(Method::GET, "/api/auth/movies", Some(&w.token), None)
                            .await;
                        s == StatusCode::OK && b.len() > 1000
                    }
                    Scenario::Rating => {
                        let Some(movie) = w.to_rate.pop() else {
                            // Out of fresh pairs: count a failure without spinning.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            return (w, false);
                        };
                        let body = json!({"movie": movie, "rating": 4});
                        w.conn
                            .send(Method::POST, "/api/auth/rating", Some(&w.token), Some(body))
                            .await
                            .0
                            == StatusCode::CREATED
                    }
                    Scenario::Login => {
                        let body = json!({"username": w.name, "password": "password123"});
                        w.conn
                            .send(Method::POST, "/api/auth/login", None, Some(body))
                            .await
                            .0
                            == StatusCode::OK
                    }
                };
                (w, ok)
            };
            let result = run_for(
                connections,
                Duration::from_secs(1),
                Duration::from_secs(seconds),
                interval,
                make,
                op,
            )
            .await;
            println!("{}", result.summary());
        }
    }
}
