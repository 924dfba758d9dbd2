//! A limited HTTP server, for every HTTP listener of the platform (the
//! gateway's API, the services' `/metrics`): hyper with a timer, so that no
//! connection is held longer than its settings allow, whatever a client
//! does.
//!
//! - a connection must send a complete request head within
//!   `header_timeout`, the first one and each next one on a kept-alive
//!   connection (so the same timer closes idle connections);
//! - at most `max_connections` connections are open; one more is answered
//!   503 with `Retry-After` and closed, so the open-file limit is never
//!   reached and `/healthz` keeps answering;
//! - HTTP/2 connections get a stream limit and keep-alive pings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What a connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time to send a whole request head, and to start the next one.
    pub header_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
}

impl ConnectionLimits {
    /// What a listener only a monitoring system needs (`/metrics`) holds:
    /// a few connections, each closed if it sends no request for 5 s.
    pub const MONITORING: Self = Self {
        max_connections: 32,
        header_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(1),
    };
}

/// What a refused connection is told before it is closed.
fn refusal() -> Vec<u8> {
    let body = r#"{"detail":"Service temporarily unavailable, try again later."}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish (within `drain_timeout`). Each request
/// carries its peer's address ([`peer_of`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset while
                    // queued: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: too many open connections");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // The first bytes tell HTTP/1 from HTTP/2, and hyper's header
            // timer only starts once that is known: a connection that sends
            // nothing at all is closed here, at the same timeout.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1))
            ) {
                tracing::debug!(%peer, "connection closed: nothing sent");
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running at the end of the drain timeout");
    }
}

/// Tells a connection over the limit to come back later, without waiting
/// on it for long.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    })
    .await;
}

/// The peer address of a request, when it came over a connection.
pub fn peer_of(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
