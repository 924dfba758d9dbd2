//! A small HTTP load generator for the REST API, and the baseline it is
//! compared with.
//!
//! - `loadgen bare --listen 127.0.0.1:8100`: a bare axum handler answering
//!   `GET /api/auth/movies` with the same 100-movie JSON from memory, after
//!   a token-header check (`Authorization: Token xxx…`, 64 `x`; else 401):
//!   the ceiling of one HTTP hop.
//! - `loadgen run --url http://127.0.0.1:8000 --scenario movies|movie|rating|login|register`:
//!   64 keep-alive connections (one per worker, like wrk) for `--seconds`;
//!   prints requests/s and p50/p99. `--rate` paces the total rate instead of
//!   running flat out. Setup (users, 100 movies) goes through the API itself,
//!   so the same run works against the stack and against the Django
//!   reference (`bench/django`).
//!
//! `bench/http.sh` runs the whole comparison; `bench/django.sh` the one
//! against Django.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use bench::run_for;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
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
    /// Rate every (user, movie) pair once through REST: `users` new users,
    /// `movies` movies added by one more; prints the rate and the latency
    /// p50/p99/max of the ratings, and progress on stderr.
    Million {
        /// Base URL of the API (http only).
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 1000)]
        movies: usize,
        #[arg(long, default_value_t = 64)]
        connections: usize,
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
        /// The path the `get` scenario asks for.
        #[arg(long, default_value = "/api/auth/movies?limit=20")]
        path: String,
        /// Skip adding the 100 movies (the store is filled already).
        #[arg(long)]
        no_movies: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// Authenticated GET /api/auth/movies (100 movies).
    Movies,
    /// POST /api/auth/rating, each a new (user, movie) pair.
    Rating,
    /// POST /api/auth/movies, each a new movie.
    Movie,
    /// POST /api/auth/login with correct credentials.
    Login,
    /// POST /api/auth/register, each a new user.
    Register,
    /// Authenticated GET of `--path` (any 200 counts).
    Get,
}

fn movies_json() -> Bytes {
    let movies: Vec<Value> = (1..=100)
        .map(|i| json!({"id": i, "title": format!("Movie {i}"), "director": "Director"}))
        .collect();
    Bytes::from(serde_json::to_vec(&movies).unwrap())
}

/// The token the bare baseline accepts (what `run` sends it).
fn bare_token() -> String {
    "x".repeat(64)
}

async fn bare(listen: SocketAddr) -> Result<(), SetupError> {
    let body = movies_json();
    // The token-header check of the ceiling: the header parsed and its key
    // looked up in a hashed set, as the stack's check does (less the
    // digest); anything else is 401.
    let tokens: Arc<std::collections::HashSet<String>> = Arc::new([bare_token()].into());
    let app = axum::Router::new().route(
        "/api/auth/movies",
        axum::routing::get(move |headers: hyper::HeaderMap| {
            let (body, tokens) = (body.clone(), tokens.clone());
            async move {
                let known = headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Token "))
                    .is_some_and(|key| tokens.contains(key));
                if known {
                    (
                        StatusCode::OK,
                        [(hyper::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(hyper::header::CONTENT_TYPE, "application/json")],
                        Bytes::from_static(br#"{"detail":"Invalid token."}"#),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("bare baseline on {listen}");
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("serving: {e}"))
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// Why a setup step failed (the run stops with this message).
type SetupError = String;

impl Conn {
    async fn open(addr: &str) -> Result<Self, SetupError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        tokio::spawn(connection);
        Ok(Self {
            host: addr.to_owned(),
            sender,
        })
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), hyper::Error> {
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
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = r.body(body).expect("method, path and headers are valid");
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// As [`Conn::send`], for set-up steps: any failure ends the run.
    async fn setup(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), SetupError> {
        self.send(method, path, token, body)
            .await
            .map_err(|e| format!("{path}: {e}"))
    }
}

/// Registers a user (or logs in if it exists); returns its token.
async fn user(conn: &mut Conn, name: &str) -> Result<String, SetupError> {
    let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
    let (status, bytes) = conn
        .setup(Method::POST, "/api/auth/register", None, Some(body))
        .await?;
    let (status, bytes) = if status == StatusCode::OK {
        (status, bytes)
    } else {
        let login = json!({"username": name, "password": "password123"});
        conn.setup(Method::POST, "/api/auth/login", None, Some(login))
            .await?
    };
    let token = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|_| status == StatusCode::OK)
        .and_then(|v| v["token"].as_str().map(str::to_owned));
    token.ok_or_else(|| {
        format!(
            "no token for {name}: {status} {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// The ids of the movies the user `token` sees.
async fn movie_ids(conn: &mut Conn, token: &str) -> Result<Vec<i64>, SetupError> {
    let (status, bytes) = conn
        .setup(Method::GET, "/api/auth/movies", Some(token), None)
        .await?;
    let list = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(|_| status == StatusCode::OK);
    let ids = list.as_ref().and_then(Value::as_array).map(|movies| {
        movies
            .iter()
            .filter_map(|m| m["id"].as_i64())
            .collect::<Vec<_>>()
    });
    ids.ok_or_else(|| format!("GET /api/auth/movies: {status}"))
}

/// Makes sure the user `token` sees at least `n` movies; returns their ids.
async fn movies(conn: &mut Conn, token: &str, n: usize) -> Result<Vec<i64>, SetupError> {
    for i in movie_ids(conn, token).await?.len()..n {
        let body = json!({"title": format!("Movie {i}"), "director": "Director"});
        let (status, bytes) = conn
            .setup(Method::POST, "/api/auth/movies", Some(token), Some(body))
            .await?;
        if status != StatusCode::CREATED {
            return Err(format!(
                "POST /api/auth/movies: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    movie_ids(conn, token).await
}

struct Worker {
    addr: String,
    conn: Conn,
    token: String,
    name: String,
    /// Movies this worker's user may still rate.
    to_rate: Vec<i64>,
    /// Users (the register scenario) or movies (the movie scenario) this
    /// worker added.
    registered: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse().command).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<(), SetupError> {
    match command {
        Command::Bare { listen } => bare(listen).await?,
        Command::Setup { url } => {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let mut conn = Conn::open(&addr).await?;
            let token = user(&mut conn, &format!("wrk{}", std::process::id())).await?;
            movies(&mut conn, &token, 100).await?;
            println!("{token}");
        }
        Command::Million {
            url,
            users,
            movies: n_movies,
            connections,
        } => million(&url, users, n_movies, connections).await?,
        Command::Run {
            url,
            scenario,
            connections,
            seconds,
            rate,
            path,
            no_movies,
        } => {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let mut setup = Conn::open(&addr).await?;
            let run_id = std::process::id();
            // The bare baseline answers only GET movies: no setup there (the
            // stack and Django answer an empty registration 400).
            let register = setup
                .setup(Method::POST, "/api/auth/register", None, Some(json!({})))
                .await?
                .0;
            let bare = matches!(
                register,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            );
            let adder = if bare {
                String::new()
            } else {
                user(&mut setup, &format!("adder{run_id}")).await?
            };
            let ids = if bare || no_movies {
                vec![]
            } else {
                movies(&mut setup, &adder, 100).await?
            };
            let extra = if scenario == Scenario::Rating {
                // Enough fresh (user, movie) pairs for the whole run.
                let want = 100 + (seconds as usize * 20_000).div_ceil(connections);
                movies(&mut setup, &adder, want).await?
            } else {
                ids.clone()
            };
            let extra = Arc::new(extra);
            // Every worker's connection and user, made before the clock starts.
            let mut workers = Vec::with_capacity(connections);
            for w in 0..connections {
                let mut conn = Conn::open(&addr).await?;
                let name = format!("w{run_id}x{w}");
                let token = if bare {
                    bare_token()
                } else {
                    user(&mut conn, &name).await?
                };
                workers.push(Worker {
                    addr: addr.clone(),
                    conn,
                    token,
                    name,
                    to_rate: extra.iter().rev().copied().collect(),
                    registered: 0,
                });
            }
            let workers = Arc::new(std::sync::Mutex::new(workers));
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
            let make = move |_: usize| {
                let w = workers.lock().expect("unpoisoned").pop();
                async move { w.expect("one worker per connection") }
            };
            let path: Arc<str> = path.into();
            let op = move |mut w: Worker| {
                let path = path.clone();
                async move {
                    let sent = match scenario {
                        Scenario::Get => w
                            .conn
                            .send(Method::GET, &path, Some(&w.token), None)
                            .await
                            .map(|(s, _)| s == StatusCode::OK),
                        Scenario::Movies => w
                            .conn
                            .send(Method::GET, "/api/auth/movies", Some(&w.token), None)
                            .await
                            .map(|(s, b)| s == StatusCode::OK && b.len() > 1000),
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
                                .map(|(s, _)| s == StatusCode::CREATED)
                        }
                        Scenario::Movie => {
                            w.registered += 1;
                            let title = format!("{} {}", w.name, w.registered);
                            let body = json!({"title": title, "director": "Director"});
                            w.conn
                                .send(Method::POST, "/api/auth/movies", Some(&w.token), Some(body))
                                .await
                                .map(|(s, _)| s == StatusCode::CREATED)
                        }
                        Scenario::Login => {
                            let body = json!({"username": w.name, "password": "password123"});
                            w.conn
                                .send(Method::POST, "/api/auth/login", None, Some(body))
                                .await
                                .map(|(s, _)| s == StatusCode::OK)
                        }
                        Scenario::Register => {
                            w.registered += 1;
                            let name = format!("{}r{}", w.name, w.registered);
                            let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
                            w.conn
                                .send(Method::POST, "/api/auth/register", None, Some(body))
                                .await
                                .map(|(s, _)| s == StatusCode::OK)
                        }
                    };
                    let ok = match sent {
                        Ok(ok) => ok,
                        Err(_) => {
                            // The connection broke: count an error, and open a
                            // new one (pausing if the server is gone).
                            match Conn::open(&w.addr).await {
                                Ok(conn) => w.conn = conn,
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                            false
                        }
                    };
                    (w, ok)
                }
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
    Ok(())
}

/// `Command::Million`.
async fn million(
    url: &str,
    users: usize,
    n_movies: usize,
    connections: usize,
) -> Result<(), SetupError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let run_id = std::process::id();
    let mut setup = Conn::open(&addr).await?;
    let owner = user(&mut setup, &format!("owner{run_id}")).await?;
    let ids = Arc::new(movies(&mut setup, &owner, n_movies).await?);
    let started = std::time::Instant::now();
    // Users, registered over every connection at once (argon2 is the cost).
    let next = Arc::new(AtomicUsize::new(0));
    let mut registering = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (addr, next) = (addr.clone(), next.clone());
        registering.spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    return Ok::<_, SetupError>(mine);
                }
                mine.push((i, user(&mut conn, &format!("m{run_id}u{i}")).await?));
            }
        });
    }
    let mut tokens = vec![String::new(); users];
    while let Some(done) = registering.join_next().await {
        for (i, token) in done.map_err(|e| e.to_string())?? {
            tokens[i] = token;
        }
    }
    eprintln!(
        "{users} users and {} movies ready in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let tokens = Arc::new(tokens);
    let total = users * ids.len();
    let next = Arc::new(AtomicUsize::new(0));
    let begin = std::time::Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (addr, next, ids, tokens) = (addr.clone(), next.clone(), ids.clone(), tokens.clone());
        workers.spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, SetupError>((latencies, errors));
                }
                if i % 100_000 == 0 && i > 0 {
                    let secs = begin.elapsed().as_secs_f64();
                    eprintln!("{i} ratings in {secs:.1} s ({:.0}/s)", i as f64 / secs);
                }
                // Movie-major: concurrent requests rate one movie as many users.
                let (token, movie) = (&tokens[i % users], ids[i / users]);
                let body = json!({"movie": movie, "rating": 1 + i % 5});
                let sent = std::time::Instant::now();
                match conn
                    .send(Method::POST, "/api/auth/rating", Some(token), Some(body))
                    .await
                {
                    Ok((StatusCode::CREATED, _)) => latencies.push(sent.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(&addr).await?;
                    }
                }
            }
        });
    }
    let mut run = bench::Run {
        ops: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(total),
    };
    while let Some(done) = workers.join_next().await {
        let (latencies, errors) = done.map_err(|e| e.to_string())??;
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = begin.elapsed();
    run.ops = run.latencies.len() as u64;
    run.latencies.sort();
    println!(
        "{} ratings in {:.1} s: {}  max {:.0} ms",
        run.ops,
        run.elapsed.as_secs_f64(),
        run.summary(),
        run.latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    );
    Ok(())
}
