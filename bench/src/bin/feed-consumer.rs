//! A member of a consumer group (`movies.feed.v1`), for tests and the
//! feed benchmark.
//!
//! `feed-consumer --urls http://a:50052,http://b:50052 --key K --group G`
//! joins `G` on the first replica that answers (the next one when a call
//! fails), and for each delivery prints
//! `<event id> <subject> <position> <delivery>` and flushes *before*
//! acknowledging it: a line is never missing for an event acknowledged.
//! With `--count N --quiet` it prints nothing per event, exits after `N`
//! deliveries, and prints `events N seconds S rate R`.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use proto::feed::feed_service_client::FeedServiceClient;
use proto::feed::{Ack, ConsumeRequest, Join, Start, consume_request, consume_response};

#[derive(Parser)]
struct Cli {
    /// The service's replicas, comma-separated.
    #[arg(long)]
    urls: String,
    /// The service key (`x-service-key`).
    #[arg(long, env = "FEED_KEY", hide_env_values = true)]
    key: String,
    /// The group.
    #[arg(long)]
    group: String,
    /// Unacknowledged deliveries held at once.
    #[arg(long, default_value_t = 100)]
    max_in_flight: u32,
    /// Exit after this many deliveries (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// No line per event.
    #[arg(long)]
    quiet: bool,
    /// Acknowledge in batches of up to this many.
    #[arg(long, default_value_t = 1)]
    ack_batch: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let urls: Vec<String> = cli.urls.split(',').map(str::to_owned).collect();
    let started = Instant::now();
    let mut seen = 0u64;
    for attempt in 0.. {
        let url = &urls[attempt % urls.len()];
        match session(&cli, url, &mut seen).await {
            Ok(()) => break,
            Err(e) => {
                eprintln!("feed-consumer: {url}: {e}; trying the next replica");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "events {seen} seconds {seconds:.3} rate {:.0}",
        seen as f64 / seconds
    );
}

/// One call: joins, then prints and acknowledges until `--count` (Ok) or
/// the call fails (Err).
async fn session(cli: &Cli, url: &str, seen: &mut u64) -> Result<(), String> {
    let mut client = FeedServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let join = ConsumeRequest {
        kind: Some(consume_request::Kind::Join(Join {
            group: cli.group.clone(),
            start: Start::Beginning.into(),
            max_in_flight: cli.max_in_flight,
            ..Default::default()
        })),
    };
    tx.send(join).await.map_err(|e| e.to_string())?;
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut request = tonic::Request::new(requests);
    request.metadata_mut().insert(
        "x-service-key",
        cli.key.parse().map_err(|_| "a key of ASCII".to_owned())?,
    );
    let mut answers = client
        .consume(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let stdout = std::io::stdout();
    let mut pending = Vec::new();
    loop {
        let next = if pending.is_empty() {
            answers.message().await
        } else {
            // Acknowledge a partial batch once deliveries pause.
            match tokio::time::timeout(Duration::from_millis(5), answers.message()).await {
                Ok(next) => next,
                Err(_) => {
                    let ack = ConsumeRequest {
                        kind: Some(consume_request::Kind::Ack(Ack {
                            event_ids: std::mem::take(&mut pending),
                        })),
                    };
                    tx.send(ack).await.map_err(|e| e.to_string())?;
                    continue;
                }
            }
        };
        let message = next.map_err(|e| e.to_string())?;
        let Some(message) = message else {
            return Err("the call ended".into());
        };
        let Some(consume_response::Kind::Delivery(d)) = message.kind else {
            continue;
        };
        let event = d.event.unwrap_or_default();
        if !cli.quiet {
            let mut out = stdout.lock();
            let _ = writeln!(
                out,
                "{} {} {} {}",
                event.id, event.subject, d.position, d.delivery
            );
            let _ = out.flush();
        }
        pending.push(event.id);
        *seen += 1;
        let done = cli.count > 0 && *seen >= cli.count;
        if pending.len() >= cli.ack_batch || done {
            let ack = ConsumeRequest {
                kind: Some(consume_request::Kind::Ack(Ack {
                    event_ids: std::mem::take(&mut pending),
                })),
            };
            tx.send(ack).await.map_err(|e| e.to_string())?;
        }
        if done {
            // Let the last acknowledgement go out before the call ends.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
    }
}
