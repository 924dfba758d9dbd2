//! What sliding expiry (`AUTH_TOKEN_AUTO_REFRESH`) costs a token check:
//! Authenticate calls/s with it off, on at the default interval (60 s),
//! and on at 1 s (every token due every second: the write path at its
//! busiest), measured in one run, rounds interleaved, and the refresh
//! events each wrote.
//!
//! `cargo run --release -p bench --bin bench-refresh [-- --seconds 5 --rounds 3 --tokens 64]`

use std::time::Duration;

use bench::{median, run_for};
use clap::Parser;
use platform::grpc::Served as _;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::auth::{AuthenticateRequest, LoginRequest};
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Live tokens the clients cycle through (one user's sessions).
    #[arg(long, default_value_t = 64)]
    tokens: usize,
}

/// One auth-service on a store of its own, with `refresh` (None: off, or
/// the interval in seconds).
struct Variant {
    name: &'static str,
    addr: std::net::SocketAddr,
    store_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn start(name: &'static str, refresh: Option<u64>, tokens: usize) -> Variant {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let app = auth_service::Application::build(&auth_service::Config {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_store_url: store_url.clone(),
        auth_login_max_failures: 1_000_000,
        auth_login_max_failures_per_user: 1_000_000,
        auth_metrics_listen: platform::MaybeAddr::OFF,
        auth_token_auto_refresh: refresh.is_some(),
        auth_token_min_refresh_secs: refresh.unwrap_or(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let mut all = vec![bench::bench_user(addr).await];
    let mut c = client(addr).await;
    while all.len() < tokens {
        let login = LoginRequest {
            username: "bench".into(),
            password: "password123".into(),
            ..Default::default()
        };
        all.push(c.login(login).await.unwrap().into_inner().token);
    }
    Variant {
        name,
        addr,
        store_url,
        stop,
        served,
        tokens: all,
        _dir: dir,
    }
}

async fn client(addr: std::net::SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(bench::channel(addr).await)
}

/// How many refreshes `v`'s store holds (once it has stopped).
async fn refreshes(v: Variant) -> usize {
    let _ = v.stop.send(());
    v.served.await.unwrap();
    let store = event_store::open(&v.store_url).await.unwrap();
    let mut count = 0;
    let mut from = 0;
    loop {
        let batch = store.read_all(from, 5_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        from = last.position + 1;
        count += batch
            .iter()
            .filter(|e| e.event_type == "TokenRefreshed")
            .count();
    }
    count
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let d = Duration::from_secs(args.seconds);
    let warm = Duration::from_millis(500);
    let variants = [
        start("off", None, args.tokens).await,
        start("on, 60 s (default)", Some(60), args.tokens).await,
        start("on, 1 s", Some(1), args.tokens).await,
    ];
    let mut rates = vec![vec![]; variants.len()];
    for round in 0..args.rounds {
        for (i, v) in variants.iter().enumerate() {
            let tokens = std::sync::Arc::new(v.tokens.clone());
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let authenticate = move |mut c: AuthServiceClient<Channel>| {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let token = tokens[n % tokens.len()].clone();
                async move {
                    let ok = c.authenticate(AuthenticateRequest { token }).await.is_ok();
                    (c, ok)
                }
            };
            let addr = v.addr;
            let r = run_for(32, warm, d, None, |_| client(addr), authenticate).await;
            println!("round {round}: {:<20} {}", v.name, r.summary());
            rates[i].push(r.rate());
        }
    }
    let measured = Duration::from_secs(args.seconds) + warm;
    let seconds = measured.as_secs_f64() * args.rounds as f64;
    println!(
        "--- medians over {} rounds of {} s, 32 clients over {} tokens of one user",
        args.rounds, args.seconds, args.tokens
    );
    let off = median(rates[0].clone());
    for (v, r) in variants.into_iter().zip(rates) {
        let (name, rate) = (v.name, median(r));
        let written = refreshes(v).await;
        println!(
            "Authenticate, refresh {name:<20} {rate:9.0}/s  {:.2}x off; {written} refresh events in ~{seconds:.0} s of use ({:.1} per token per hour of use)",
            rate / off,
            written as f64 / args.tokens as f64 / seconds * 3600.0,
        );
    }
}
