//! What the benchmarks share: timing many concurrent workers and summarizing.

use std::future::Future;
use std::time::{Duration, Instant};

/// The outcome of a timed run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Operations completed.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies of completed operations, sorted.
    pub latencies: Vec<Duration>,
}

impl Run {
    /// Completed operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of latency.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    /// `rate/s  p50  p99  errors`.
    pub fn summary(&self) -> String {
        format!(
            "{:9.0}/s  p50 {:7.2} ms  p99 {:7.2} ms  errors {}",
            self.rate(),
            self.quantile(0.5).as_secs_f64() * 1e3,
            self.quantile(0.99).as_secs_f64() * 1e3,
            self.errors
        )
    }
}

/// Runs `workers` concurrent loops of `op` for `duration` (after `warmup`),
/// each at most once per `pace` when given (latency excludes the waiting).
/// Each worker gets its own state from `make`; `op` takes it and gives it
/// back with whether the operation succeeded.
pub async fn run_for<S, M, MF, O, OF>(
    workers: usize,
    warmup: Duration,
    duration: Duration,
    pace: Option<Duration>,
    make: M,
    op: O,
) -> Run
where
    S: Send + 'static,
    M: Fn(usize) -> MF,
    MF: Future<Output = S>,
    O: Fn(S) -> OF + Send + Sync + Clone + 'static,
    OF: Future<Output = (S, bool)> + Send,
{
    // Set-up first (it may be slow, e.g. registering users), then the clock.
    let mut states = Vec::with_capacity(workers);
    for w in 0..workers {
        states.push(make(w).await);
    }
    let begin = Instant::now();
    let start_at = begin + warmup;
    let end_at = start_at + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (w, state) in states.into_iter().enumerate() {
        let mut state = Some(state);
        let op = op.clone();
        // Paced workers start spread over one interval.
        let mut next = pace.map(|p| begin + p.mul_f64(w as f64 / workers as f64));
        tasks.spawn(async move {
            let (mut ops, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            loop {
                if let (Some(at), Some(p)) = (next.as_mut(), pace) {
                    tokio::time::sleep_until((*at).into()).await;
                    *at += p;
                }
                let t = Instant::now();
                if t >= end_at {
                    break;
                }
                let (back, ok) = op(state.take().expect("state is returned")).await;
                state = Some(back);
                if t >= start_at {
                    if ok {
                        ops += 1;
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (ops, errors, latencies)
        });
    }
    let mut run = Run {
        ops: 0,
        errors: 0,
        elapsed: duration,
        latencies: Vec::new(),
    };
    while let Some(r) = tasks.join_next().await {
        let (ops, errors, latencies) = r.expect("worker");
        run.ops += ops;
        run.errors += errors;
        run.latencies.extend(latencies);
    }
    run.latencies.sort();
    run
}

/// The median of `xs`.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A connected gRPC channel to `addr` (panics if it cannot connect).
pub async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Registers the benchmarks' user with auth-service at `addr`: its token.
pub async fn bench_user(addr: std::net::SocketAddr) -> String {
    let request = proto::auth::RegisterRequest {
        username: "bench".into(),
        email: "bench@example.com".into(),
        password: "password123".into(),
    };
    let mut client = proto::auth::auth_service_client::AuthServiceClient::new(channel(addr).await);
    client.register(request).await.unwrap().into_inner().token
}
