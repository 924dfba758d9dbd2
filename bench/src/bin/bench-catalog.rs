//! catalog-service throughput.
//!
//! `cargo run --release -p bench --bin bench-catalog [-- --events 1000000 --seconds 5 --rounds 3]`
//!
//! - projection rebuild rate from SQLite over `--events` stored events, both
//!   the `rebuild-projections` path (batched reads) and the start-up path
//!   (a subscription feeding the live read model); target >= 200,000/s;
//! - ListMovies (100 movies) calls/s with 32 concurrent gRPC clients, with the
//!   identity check over gRPC to auth-service (separate processes) and
//!   in-process (the all-in-one launcher).

use platform::grpc::Served as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{channel, median, run_for};
use catalog_service::domain::{CatalogEvent, Rating};
use clap::Parser;
use event_store::{Event, EventStore, ExpectedVersion};
use proto::catalog::catalog_service_client::CatalogServiceClient;
use proto::catalog::{AddMovieRequest, ListMoviesRequest};
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Events stored for the rebuild measurement.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds each ListMovies measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// 1 movie per 100 events, the rest ratings, appended 1,000 per call.
async fn fill(store: &Arc<dyn EventStore>, events: u64) {
    let mut next = 0u64;
    while next < events {
        let batch: Vec<_> = (next..(next + 1000).min(events))
            .map(|i| {
                let e = if i % 100 == 0 {
                    CatalogEvent::MovieAdded {
                        id: catalog_service::domain::MovieId((i / 100 + 1) as i64),
                        title: format!("Movie {i}"),
                        director: "Director".into(),
                        added_by: catalog_service::domain::UserId(1),
                    }
                } else {
                    CatalogEvent::MovieRated {
                        id: catalog_service::domain::RatingId(i as i64),
                        movie: catalog_service::domain::MovieId((i / 100 + 1) as i64),
                        user: catalog_service::domain::UserId((i % 100 + 1) as i64),
                        rating: Rating::parse((i % 5 + 1) as i32).unwrap(),
                    }
                };
                e.to_new_event().unwrap()
            })
            .collect();
        store
            .append(&format!("fill-{next}"), ExpectedVersion::NoStream, batch)
            .await
            .unwrap();
        next += 1000;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();

    // Rebuild rate.
    let url = format!("sqlite://{}", dir.path().join("big.db").display());
    let store = event_store::open(&url).await.unwrap();
    let t = Instant::now();
    fill(&store, args.events).await;
    println!(
        "filled {} events in {:.1} s",
        args.events,
        t.elapsed().as_secs_f64()
    );
    let (mut batch_rates, mut live_rates) = (vec![], vec![]);
    for _ in 0..args.rounds {
        let t = Instant::now();
        let (rebuilt, _) = catalog_service::rebuild(&*store).await.unwrap();
        batch_rates.push(args.events as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let live = event_sourcing::read_model::Projection::start(
            store.clone(),
            catalog_service::CatalogView::default(),
        )
        .await
        .unwrap();
        live_rates.push(args.events as f64 / t.elapsed().as_secs_f64());
        assert_eq!(live.read().snapshot_digest(), rebuilt.snapshot_digest());
    }
    println!(
        "rebuild over {} events: rebuild-projections {:.0} events/s, on start (subscription) {:.0} events/s",
        args.events,
        median(batch_rates),
        median(live_rates)
    );
    drop(store);

    // ListMovies with 100 movies.
    let auth = auth_service::Application::build(&auth_service::Config {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_store_url: format!("sqlite://{}", dir.path().join("auth.db").display()),
        auth_metrics_listen: platform::MaybeAddr::OFF,
        ..Default::default()
    })
    .await
    .unwrap();
    let auth_addr = auth.local_addr();
    let token_check = auth.token_check();
    tokio::spawn(auth.run_until_stopped(std::future::pending()));
    let token = bench::bench_user(auth_addr).await;
    let catalog_url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let config = catalog_service::Config {
        catalog_listen: "127.0.0.1:0".parse().unwrap(),
        catalog_store_url: catalog_url.clone(),
        catalog_auth_url: format!("http://{auth_addr}"),
        catalog_metrics_listen: platform::MaybeAddr::OFF,
        ..Default::default()
    };
    let grpc_identity = catalog_service::Application::build(&config).await.unwrap();
    let grpc_addr = grpc_identity.local_addr();
    tokio::spawn(grpc_identity.run_until_stopped(std::future::pending()));
    let mut adder = CatalogServiceClient::new(channel(grpc_addr).await);
    for i in 0..100 {
        let mut r = tonic::Request::new(AddMovieRequest {
            title: format!("Movie {i}"),
            director: "Director".into(),
        });
        r.metadata_mut()
            .insert("authorization", format!("Token {token}").parse().unwrap());
        adder.add_movie(r).await.unwrap();
    }
    let in_process = catalog_service::Application::build_with(
        &config,
        event_store::open(&catalog_url).await.unwrap(),
        catalog_service::Identity::Local(token_check),
    )
    .await
    .unwrap();
    let local_addr = in_process.local_addr();
    tokio::spawn(in_process.run_until_stopped(std::future::pending()));

    let list = move |mut c: CatalogServiceClient<Channel>| {
        let mut r = tonic::Request::new(ListMoviesRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Token {token}").parse().unwrap());
        async move {
            let ok = c
                .list_movies(r)
                .await
                .is_ok_and(|m| m.get_ref().movies.len() == 100);
            (c, ok)
        }
    };
    let d = Duration::from_secs(args.seconds);
    let warm = Duration::from_millis(500);
    for (name, addr) in [
        ("identity over gRPC", grpc_addr),
        ("identity in-process", local_addr),
    ] {
        let mut rates = vec![];
        let mut last = None;
        for _ in 0..args.rounds {
            let r = run_for(
                32,
                warm,
                d,
                None,
                |_| async move { CatalogServiceClient::new(channel(addr).await) },
                list.clone(),
            )
            .await;
            rates.push(r.rate());
            last = Some(r);
        }
        println!(
            "ListMovies (100 movies), 32 clients, {name}: median {:.0}/s (last round: {})",
            median(rates),
            last.unwrap().summary()
        );
    }
}
