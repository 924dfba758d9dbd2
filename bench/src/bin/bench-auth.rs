//! auth-service throughput, each number beside its baseline from the same run.
//!
//! `cargo run --release -p bench --bin bench-auth [-- --seconds 5 --rounds 3]`
//!
//! - raw argon2id verify rate on all cores (threads = cores, no service);
//! - Login calls/s with 16 concurrent gRPC clients (target >= 0.85x raw);
//! - Authenticate calls/s with 32 concurrent clients, alone and while 16
//!   clients flood Login (target: the flooded rate >= 0.5x the calm one).

use platform::grpc::Served as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use bench::{median, run_for};
use clap::Parser;
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
}

fn raw_verify_rate(seconds: u64) -> f64 {
    let hash = Argon2::default()
        .hash_password(b"password123")
        .unwrap()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            let (hash, done, stop) = (hash.clone(), done.clone(), stop.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Argon2::default()
                        .verify_password(b"password123", hash.as_str())
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn client(addr: std::net::SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(bench::channel(addr).await)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let d = Duration::from_secs(args.seconds);
    let warm = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let app = auth_service::Application::build(&auth_service::Config {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_store_url: format!("sqlite://{}", dir.path().join("auth.db").display()),
        auth_login_max_failures: 1_000_000,
        auth_metrics_listen: platform::MaybeAddr::OFF,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let token = bench::bench_user(addr).await;

    let login = |mut c: AuthServiceClient<Channel>| async move {
        let ok = c
            .login(LoginRequest {
                username: "bench".into(),
                password: "password123".into(),
                ..Default::default()
            })
            .await
            .is_ok();
        (c, ok)
    };
    let authenticate = {
        let token = token.clone();
        move |mut c: AuthServiceClient<Channel>| {
            let token = token.clone();
            async move {
                let ok = c.authenticate(AuthenticateRequest { token }).await.is_ok();
                (c, ok)
            }
        }
    };

    let (mut raw, mut logins, mut calm, mut flooded, mut flood_logins) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        raw.push(raw_verify_rate(args.seconds));
        let r = run_for(16, warm, d, None, |_| client(addr), login).await;
        logins.push(r.rate());
        let a = run_for(32, warm, d, None, |_| client(addr), authenticate.clone()).await;
        calm.push(a.rate());
        let flood = tokio::spawn(run_for(
            16,
            Duration::ZERO,
            d + warm * 2,
            None,
            move |_| client(addr),
            login,
        ));
        let a2 = run_for(32, warm, d, None, |_| client(addr), authenticate.clone()).await;
        flooded.push(a2.rate());
        flood_logins.push(flood.await.unwrap().rate());
        println!(
            "round {round}: raw verify {:.0}/s, login {}, authenticate {}, authenticate under flood {}",
            raw[round],
            r.summary(),
            a.summary(),
            a2.summary()
        );
    }
    let (raw, logins, calm, flooded, flood_logins) = (
        median(raw),
        median(logins),
        median(calm),
        median(flooded),
        median(flood_logins),
    );
    println!(
        "--- medians over {} rounds of {} s",
        args.rounds, args.seconds
    );
    println!("raw argon2id verify, all cores:        {raw:9.0}/s");
    println!(
        "Login, 16 clients:                     {logins:9.0}/s   {:.2}x raw verify",
        logins / raw
    );
    println!("Authenticate, 32 clients:              {calm:9.0}/s");
    println!(
        "Authenticate, 32 clients, login flood: {flooded:9.0}/s   {:.2}x calm (logins meanwhile {flood_logins:.0}/s)",
        flooded / calm
    );
}
