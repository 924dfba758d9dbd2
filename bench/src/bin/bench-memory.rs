//! What the read models hold per item, and what their snapshots cost.
//!
//! `cargo run --release -p bench --bin bench-memory [-- --ratings 1000000 --tokens 1000000]`
//!
//! - the catalog's read models filled with `--ratings` ratings (1,000
//!   movies, each user rating every one): RSS growth per rating, and how
//!   many were applied *late* (after a greater id). Ids come in order by
//!   default; `--writers W` applies each run of W ids in a shuffled order,
//!   as W concurrent writers commit ids allocated before their commands
//!   (W = 6 gives about 59 % late, what `bench/million.sh`'s 64 connections
//!   gave);
//! - auth's read model filled with users (one per four tokens), then with
//!   `--tokens` live tokens: RSS growth per user and per token;
//! - each model's snapshot: its size; how long a save holds new events
//!   back (freezing a model that can, else encoding it under its read
//!   lock; on an idle machine); the time to encode it into its file, the
//!   whole save, and the time to load it back.
//!
//! RSS is read from /proc/self/statm; the allocator's rounding and spare
//! capacity of growing vectors are included, as they are in a service.
//! Each model is measured in a process of its own (this binary runs itself
//! with `--model`), so that neither grows into memory the other freed.

use std::path::Path;
use std::time::{Duration, Instant};

use auth_service::domain::AuthEvent;
use auth_service::read_model::AuthView;
use auth_service::token::TokenDigest;
use catalog_service::CatalogView;
use catalog_service::domain::{CatalogEvent, Rating};
use clap::Parser;
use event_sourcing::read_model::ReadModel;
use event_sourcing::read_model::snapshot::{self, Snapshot};
use event_store::{NewEvent, RecordedEvent};

#[derive(Parser)]
struct Args {
    /// Ratings in the catalog's read models.
    #[arg(long, default_value_t = 1_000_000)]
    ratings: u64,
    /// Live tokens in auth's read model.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: u64,
    /// Rating ids are applied in runs of this many, each run shuffled (1:
    /// in order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    writers: u64,
    /// Measure only this model, here (by default each is measured in a
    /// process of its own).
    #[arg(long, value_parser = ["catalog", "auth"])]
    model: Option<String>,
}

/// Resident memory now, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A recorded event to apply `event` as, at `position`.
fn recorded(position: u64) -> RecordedEvent {
    let new = NewEvent::new("x", &()).expect("serializes");
    RecordedEvent {
        position,
        stream: "s".into(),
        version: 0,
        event_type: new.event_type,
        id: new.id,
        data: new.data,
        metadata: new.metadata,
        recorded_at: chrono::Utc::now(),
    }
}

/// Saves `model`'s snapshot to `path`, loads it back; prints the figures.
fn snapshot_figures<M: Snapshot>(model: &M, path: &Path) {
    let (mut held, mut encoding) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    let key = snapshot::SnapshotKey::new([1; 32]);
    let (_, bytes) = snapshot::write_file(path, M::NAME, M::VERSION, &key, |out| {
        // As the projection's saver does.
        let t = Instant::now();
        match model.freeze() {
            Some(frozen) => {
                held = t.elapsed();
                frozen(out);
            }
            None => {
                model.encode(out);
                held = t.elapsed();
            }
        }
        encoding = t.elapsed();
        Some((1, uuid::Uuid::nil()))
    })
    .expect("saved")
    .expect("something to save");
    let saved = started.elapsed();
    let started = Instant::now();
    let loaded = snapshot::load::<M>(path, &key)
        .expect("loads")
        .expect("there");
    let load = started.elapsed();
    drop(loaded);
    println!(
        "  snapshot: {:.1} MB; new events held {:.3} ms; encode into the file {:.1} ms, whole save {:.1} ms, load {:.1} ms",
        bytes as f64 / 1e6,
        held.as_secs_f64() * 1e3,
        encoding.as_secs_f64() * 1e3,
        saved.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
    );
}

use auth_service::seal;

fn main() {
    // As every service does first (see `platform::runtime`).
    platform::no_huge_pages();
    let args = Args::parse();
    match args.model.as_deref() {
        Some("catalog") => catalog(&args),
        Some(_) => auth(&args),
        None => {
            for model in ["catalog", "auth"] {
                let status =
                    std::process::Command::new(std::env::current_exe().expect("this binary"))
                        .args(["--model", model])
                        .args(["--ratings", &args.ratings.to_string()])
                        .args(["--tokens", &args.tokens.to_string()])
                        .args(["--writers", &args.writers.to_string()])
                        .status()
                        .expect("runs");
                assert!(status.success(), "measuring {model} failed");
            }
        }
    }
}

/// The catalog's read models filled with ratings.
fn catalog(args: &Args) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let at = recorded(1);
    let before = rss();
    let mut catalog = CatalogView::default();
    let movies = 1_000;
    let mut position = 0;
    for id in 1..=movies {
        position += 1;
        let event = CatalogEvent::MovieAdded {
            id: catalog_service::domain::MovieId(id),
            title: format!("Movie {id}"),
            director: "Director".into(),
            added_by: catalog_service::domain::UserId(1),
        };
        catalog.apply(
            event,
            &RecordedEvent {
                position,
                ..at.clone()
            },
        );
    }
    let with_movies = rss();
    let (mut late, mut greatest) = (0_u64, -1);
    for n in order(args.ratings as i64, args.writers as i64) {
        position += 1;
        late += u64::from(n < greatest);
        greatest = greatest.max(n);
        let event = CatalogEvent::MovieRated {
            id: catalog_service::domain::RatingId(n + 1),
            movie: catalog_service::domain::MovieId(n % movies + 1),
            user: catalog_service::domain::UserId(n / movies + 1),
            rating: Rating::from_stored((n % 5 + 1) as u8),
        };
        catalog.apply(
            event,
            &RecordedEvent {
                position,
                ..at.clone()
            },
        );
    }
    let filled = rss();
    println!(
        "catalog: {} ratings ({:.0} % late): {:.1} bytes per rating ({} movies took {:.1} MB)",
        args.ratings,
        late as f64 * 100.0 / args.ratings.max(1) as f64,
        (filled - with_movies) as f64 / args.ratings.max(1) as f64,
        movies,
        (with_movies - before) as f64 / 1e6,
    );
    snapshot_figures(&catalog, &dir.path().join("catalog.snapshot"));
}

/// `0..count`, each run of `run` numbers in a shuffled order (the same on
/// every call: a fixed xorshift seed).
fn order(count: i64, run: i64) -> impl Iterator<Item = i64> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count).step_by(run as usize).flat_map(move |start| {
        let mut ids: Vec<i64> = (start..(start + run).min(count)).collect();
        for i in (1..ids.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ids.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        ids
    })
}

/// auth's read model filled with users, then tokens.
fn auth(args: &Args) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let at = recorded(1);
    let users = (args.tokens / 4).max(1);
    let before = rss();
    let mut auth = AuthView::default();
    // As registrations are stored since sealing: MACs and a sealed blob.
    let pepper = auth_service::seal::Pepper::new(seal::DataKey::random().expect("random"));
    let key = seal::DataKey::random().expect("random");
    for user_id in 1..=users as i64 {
        let id = auth_service::domain::UserId(user_id);
        let personal = auth_service::domain::Personal {
            username: format!("user{user_id}"),
            email: format!("user{user_id}@example.com"),
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${}", "x".repeat(65)),
        };
        let json = serde_json::to_vec(&personal).expect("serializes");
        let event = AuthEvent::UserRegistered {
            user_id: id,
            name: pepper.mac("name", &personal.username),
            skeleton: pepper.mac("skeleton", &personal.username),
            sealed: seal::seal(&key, &auth_service::domain::sealed_for(id), &json).expect("seals"),
        };
        auth.apply(event, &at);
    }
    let with_users = rss();
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::days(1);
    for n in 0..args.tokens {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&n.to_le_bytes());
        let event = AuthEvent::TokenIssued {
            user_id: auth_service::domain::UserId((n % users) as i64 + 1),
            digest: TokenDigest::from_bytes(digest),
            expires_at,
            client: None,
            credentials: 0,
        };
        auth.apply(event, &at);
    }
    let filled = rss();
    println!(
        "auth: {users} users: {:.0} bytes per user; {} live tokens: {:.1} bytes per token",
        (with_users - before) as f64 / users as f64,
        args.tokens,
        (filled - with_users) as f64 / args.tokens.max(1) as f64,
    );
    snapshot_figures(&auth, &dir.path().join("auth.snapshot"));
}
