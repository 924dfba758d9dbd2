//! Event store throughput, each backend beside a raw baseline measured in the
//! same run on the same file or database.
//!
//! `cargo bench -p event-store [-- [sqlite|postgres] [--appends N] [--read-events N] [--rounds N]]`
//!
//! For each backend it prints, as medians over `--rounds` (default 3):
//! - durable single-event appends/s with 1 and with 32 concurrent writers,
//!   beside plain one-row `INSERT` transactions at the same concurrency;
//! - `read_all` events/s over `--read-events` (default 1,000,000) stored events.
//!
//! Postgres runs on a database created for the run (`DATABASE_URL`, default
//! the local server) and dropped after; it is skipped with a notice if no
//! server answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::postgres::PostgresStore;
use event_store::sqlite::SqliteStore;
use event_store::testing::TempDatabase;
use event_store::{EventStore, ExpectedVersion, NewEvent};
use serde_json::json;
use tokio::task::JoinSet;

struct Options {
    backends: Vec<String>,
    appends: usize,
    read_events: usize,
    rounds: usize,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec![],
        appends: 8000,
        read_events: 1_000_000,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match a.as_str() {
            "--appends" => o.appends = num("--appends"),
            "--read-events" => o.read_events = num("--read-events"),
            "--rounds" => o.rounds = num("--rounds").max(1),
            "sqlite" | "postgres" => o.backends.push(a),
            _ => {} // cargo bench passes --bench
        }
    }
    if o.backends.is_empty() {
        o.backends = vec!["sqlite".into(), "postgres".into()];
    }
    o
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs `total` single-event appends from `writers` tasks, each on its own streams.
async fn store_appends(
    store: &Arc<dyn EventStore>,
    writers: usize,
    total: usize,
    tag: &str,
) -> f64 {
    let each = total / writers;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        let stream = format!("bench-{tag}-{w}");
        tasks.spawn(async move {
            for i in 0..each {
                let e = NewEvent::new("Benchmarked", &json!({ "i": i, "w": w })).unwrap();
                store
                    .append(&stream, ExpectedVersion::Any, vec![e])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    rate(each * writers, start.elapsed())
}

/// Fills the store up to `n` events (1,000 per append) and reads them all back.
async fn read_all_rate(store: &Arc<dyn EventStore>, n: usize) -> (usize, f64) {
    let have = store.head_position().await.unwrap() as usize;
    let mut tasks = JoinSet::new();
    let missing = n.saturating_sub(have);
    for chunk in 0..missing.div_ceil(1000) {
        let store = store.clone();
        let len = 1000.min(missing - chunk * 1000);
        tasks.spawn(async move {
            let events = (0..len)
                .map(|i| {
                    NewEvent::new("Filled", &json!({ "movie": i, "user": chunk, "rating": 3 }))
                        .unwrap()
                })
                .collect();
            store
                .append(&format!("fill-{chunk}"), ExpectedVersion::Any, events)
                .await
                .unwrap();
        });
        if tasks.len() >= 8 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let start = Instant::now();
    let (mut next, mut count) = (0, 0);
    loop {
        let batch = store.read_all(next, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        count += batch.len();
    }
    (count, rate(count, start.elapsed()))
}

fn sqlite_raw_inserts(path: &std::path::Path, writers: usize, total: usize) -> f64 {
    let each = total / writers;
    let setup = rusqlite::Connection::open(path).unwrap();
    setup
        .execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        )
        .unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                let c = rusqlite::Connection::open(path).unwrap();
                c.busy_timeout(Duration::from_secs(60)).unwrap();
                c.execute_batch("PRAGMA synchronous=FULL").unwrap();
                let mut stmt = c.prepare("INSERT INTO raw (body) VALUES (?1)").unwrap();
                for i in 0..each {
                    // One implicit transaction per statement: a durable commit each.
                    stmt.execute([format!("{{\"i\":{i},\"w\":{w}}}")]).unwrap();
                }
            });
        }
    });
    rate(each * writers, start.elapsed())
}

async fn postgres_raw_inserts(url: &str, writers: usize, total: usize) -> f64 {
    let each = total / writers;
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    connect()
        .await
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS raw (id bigserial PRIMARY KEY, body text NOT NULL)",
        )
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..writers {
        clients.push(connect().await);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (w, c) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let stmt = c
                .prepare("INSERT INTO raw (body) VALUES ($1)")
                .await
                .unwrap();
            for i in 0..each {
                c.execute(&stmt, &[&format!("{{\"i\":{i},\"w\":{w}}}")])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    rate(each * writers, start.elapsed())
}

async fn report_appends<F, Fut>(
    name: &str,
    store: &Arc<dyn EventStore>,
    o: &Options,
    mut baseline: F,
) where
    F: FnMut(usize, usize) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut rows = Vec::new();
    for writers in [1, 32] {
        let total = if writers == 1 {
            o.appends / 4
        } else {
            o.appends
        };
        let (mut ours, mut raw) = (vec![], vec![]);
        for round in 0..o.rounds {
            raw.push(baseline(writers, total).await);
            ours.push(store_appends(store, writers, total, &format!("{writers}-{round}")).await);
            println!(
                "{name:8} round {round}, {writers:2} writer(s): {:9.0}/s   raw INSERT: {:9.0}/s",
                ours[round], raw[round]
            );
        }
        let (ours, raw) = (median(ours), median(raw));
        println!(
            "{name:8} appends  {writers:2} writer(s): {ours:9.0}/s   raw INSERT: {raw:9.0}/s   ratio {:.2}",
            ours / raw
        );
        rows.push(ours);
    }
    println!(
        "{name:8} appends  32 writers vs 1 writer: {:.2}x",
        rows[1] / rows[0]
    );
}

async fn report_reads(name: &str, store: &Arc<dyn EventStore>, o: &Options) {
    let mut rates = vec![];
    let mut count = 0;
    for _ in 0..o.rounds {
        let (n, r) = read_all_rate(store, o.read_events).await;
        count = n;
        rates.push(r);
    }
    println!(
        "{name:8} read_all over {count} events: {:.0} events/s",
        median(rates)
    );
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "appends: {} (1 writer: {}), rounds: {}, median shown",
        o.appends,
        o.appends / 4,
        o.rounds
    );
    for backend in &o.backends {
        match backend.as_str() {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("bench.db");
                let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
                report_appends("sqlite", &store, &o, |w, n| {
                    let path = path.clone();
                    async move {
                        tokio::task::spawn_blocking(move || sqlite_raw_inserts(&path, w, n))
                            .await
                            .unwrap()
                    }
                })
                .await;
                report_reads("sqlite", &store, &o).await;
            }
            _ => {
                let Some(db) = TempDatabase::create("throughput bench").await else {
                    continue;
                };
                let store: Arc<dyn EventStore> =
                    Arc::new(PostgresStore::connect(db.url()).await.unwrap());
                let url = db.url().to_owned();
                report_appends("postgres", &store, &o, |w, n| {
                    let url = url.clone();
                    async move { postgres_raw_inserts(&url, w, n).await }
                })
                .await;
                report_reads("postgres", &store, &o).await;
                drop(store);
            }
        }
    }
}
