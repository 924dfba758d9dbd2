//! Consumer groups under load, in one run:
//!
//! 1. events/s through one group with 1, 2 and 4 members, over gRPC
//!    (`movies.feed.v1.Consume` on loopback, each delivery acknowledged),
//!    from a backlog of `--events` events;
//! 2. the latency of appends (8 writers) with 10 groups live, each with a
//!    member following the log, against none.
//!
//! Rounds interleave the cases (the latency cases in alternating order);
//! each prints its median. The members are tasks of this process, on the
//! same cores as the service's work and the database.
//!
//! `bench-feed --store-url postgres://postgres@127.0.0.1/feedbench --events 100000 --rounds 3`
//!
//! The store should be empty (the backlog is appended first). In the
//! throughput rounds the groups' lease is 1 s (a tick of 100 ms), so that
//! members joining one after the other share the partitions within the
//! measurement; the latency rounds use the defaults (10 s, a tick a
//! second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use event_sourcing::consumer_group::{ConsumerGroups, Join, Opener, Settings, Start};
use event_store::{EventStore, ExpectedVersion, NewEvent};
use futures_util::FutureExt as _;
use platform::feed::{Access, CloudEvent, FeedGrpc, envelope};
use proto::feed::feed_service_client::FeedServiceClient;
use proto::feed::{Ack, ConsumeRequest, consume_request, consume_response};

#[derive(Parser)]
struct Args {
    /// The store (empty): postgres://… or sqlite://…
    #[arg(long)]
    store_url: String,
    /// The backlog the throughput rounds read.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Rounds of each case.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Appends per latency case.
    #[arg(long, default_value_t = 4_000)]
    appends: usize,
}

/// Every event as is, in the envelope.
fn opener() -> Opener<CloudEvent> {
    Arc::new(|e| {
        let data = serde_json::value::RawValue::from_string(e.data.get().to_owned()).ok()?;
        Some(envelope("bench", e, &e.event_type, e.stream.clone(), data))
    })
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Counted", &serde_json::json!({ "n": n })).expect("encodes")
}

/// `n` events, 10 per stream, from 8 writers; the latency of each append.
async fn append(store: &Arc<dyn EventStore>, first: u64, n: u64, batch: u64) -> Vec<Duration> {
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        writers.spawn(async move {
            let mut took = Vec::new();
            let mut i = w * batch;
            while i < n {
                let events = (0..batch.min(n - i))
                    .map(|k| event(first + i + k))
                    .collect();
                let stream = format!("counter-{}", (first + i) / 10);
                let sent = Instant::now();
                store
                    .append(&stream, ExpectedVersion::Any, events)
                    .await
                    .expect("append");
                took.push(sent.elapsed());
                i += 8 * batch;
            }
            took
        });
    }
    let mut all = Vec::new();
    while let Some(took) = writers.join_next().await {
        all.extend(took.expect("a writer"));
    }
    all
}

/// One member over gRPC: acknowledges what it gets (in batches) and counts
/// it, until the task is dropped.
async fn member(url: String, group: String, count: Arc<AtomicU64>) {
    let mut client = FeedServiceClient::connect(url).await.expect("connects");
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let join = consume_request::Kind::Join(proto::feed::Join {
        group,
        start: proto::feed::Start::Beginning.into(),
        max_in_flight: 1000,
        ..Default::default()
    });
    tx.send(ConsumeRequest { kind: Some(join) }).await.unwrap();
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut answers = client.consume(requests).await.expect("joins").into_inner();
    let mut pending = Vec::new();
    loop {
        let next = if pending.is_empty() {
            answers.message().await
        } else {
            match tokio::time::timeout(Duration::from_millis(2), answers.message()).await {
                Ok(next) => next,
                Err(_) => {
                    let ids = std::mem::take(&mut pending);
                    let ack = consume_request::Kind::Ack(Ack { event_ids: ids });
                    let _ = tx.send(ConsumeRequest { kind: Some(ack) }).await;
                    continue;
                }
            }
        };
        let Ok(Some(message)) = next else { return };
        if let Some(consume_response::Kind::Delivery(d)) = message.kind {
            pending.push(d.event.unwrap_or_default().id);
            count.fetch_add(1, Ordering::Relaxed);
            if pending.len() >= 64 {
                let ids = std::mem::take(&mut pending);
                let ack = consume_request::Kind::Ack(Ack { event_ids: ids });
                let _ = tx.send(ConsumeRequest { kind: Some(ack) }).await;
            }
        }
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(xs: &mut [Duration], p: f64) -> f64 {
    xs.sort();
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let store = event_store::open(&args.store_url).await.expect("the store");
    let settings = Settings {
        lease: Duration::from_secs(1),
        ..Settings::default()
    };
    let groups = Arc::new(ConsumerGroups::new(store.clone(), opener(), settings));

    let filled = Instant::now();
    let head = store.head_position().await.expect("head");
    append(&store, head, args.events, 10).await;
    println!(
        "backlog: {} events in {:.1} s",
        args.events,
        filled.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let feed = FeedGrpc::new(groups.clone(), Access::Open).server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(feed)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // 1. Throughput through one group.
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..args.rounds {
        for (i, members) in [1usize, 2, 4].into_iter().enumerate() {
            let group = format!("throughput-{round}-{members}");
            let count = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let tasks: Vec<_> = (0..members)
                .map(|_| tokio::spawn(member(url.clone(), group.clone(), count.clone())))
                .collect();
            let deadline = started + Duration::from_secs(600);
            while count.load(Ordering::Relaxed) < args.events && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            println!("round {round}: {members} member(s): {rate:.0} events/s");
            rates[i].push(rate);
            for t in tasks {
                t.abort();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = groups.delete(&group).await;
        }
    }

    // 2. Append latency: none against 10 live groups, interleaved; the
    // groups with the default settings (a tick a second).
    let groups = Arc::new(ConsumerGroups::new(
        store.clone(),
        opener(),
        Settings::default(),
    ));
    let mut p50: [Vec<f64>; 2] = Default::default();
    let mut p99: [Vec<f64>; 2] = Default::default();
    let mut next = store.head_position().await.unwrap() + 1;
    for round in 0..args.rounds {
        // Alternate which goes first: the table grows, and appends slow
        // down a little with it.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let live = [0usize, 10][i];
            let mut members = Vec::new();
            for g in 0..live {
                let join = Join {
                    group: format!("live-{round}-{g}"),
                    types: Vec::new(),
                    prefix: String::new(),
                    start: Start::End,
                    max_in_flight: 1000,
                    ack_timeout: None,
                    max_deliveries: None,
                };
                let mut m = groups.join(join).await.expect("joins");
                members.push(tokio::spawn(async move {
                    // As a consumer would: what is there, acknowledged at once.
                    while let Some(d) = m.next().await {
                        let mut ids = vec![d.event_id];
                        while let Some(Some(d)) = m.next().now_or_never() {
                            ids.push(d.event_id);
                        }
                        m.ack(ids);
                    }
                }));
            }
            // The groups hold their partitions and follow the log.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut took = append(&store, next, args.appends as u64, 1).await;
            next += args.appends as u64;
            let (a, b) = (percentile(&mut took, 0.5), percentile(&mut took, 0.99));
            println!("round {round}: {live} live groups: append p50 {a:.2} ms, p99 {b:.2} ms");
            p50[i].push(a);
            p99[i].push(b);
            for m in members {
                m.abort();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            for g in 0..live {
                let _ = groups.delete(&format!("live-{round}-{g}")).await;
            }
        }
    }

    println!("\nmedians of {} rounds:", args.rounds);
    let one = median(rates[0].clone());
    for (i, members) in [1, 2, 4].into_iter().enumerate() {
        let r = median(rates[i].clone());
        println!(
            "  one group, {members} member(s): {r:.0} events/s ({:.2}x one member)",
            r / one
        );
    }
    let (none50, ten50) = (median(p50[0].clone()), median(p50[1].clone()));
    let (none99, ten99) = (median(p99[0].clone()), median(p99[1].clone()));
    println!(
        "  append p50: {none50:.2} ms with no group, {ten50:.2} ms with 10 live ({:+.1} %)",
        (ten50 / none50 - 1.0) * 100.0
    );
    println!(
        "  append p99: {none99:.2} ms with no group, {ten99:.2} ms with 10 live ({:+.1} %)",
        (ten99 / none99 - 1.0) * 100.0
    );
}
