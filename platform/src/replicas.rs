//! Several replicas of one service behind one gRPC client.
//!
//! The client is given one or more URLs (`http://auth-a:50051,http://auth-b:50051`).
//! Every [`RESOLVE_EVERY`] each URL's host is resolved again, and every
//! address it names is a replica (what `docker compose --scale` and a
//! Kubernetes headless service give). Calls go round robin over the
//! replicas that answered their last health check; a replica whose call
//! fails at the transport level, or whose health check fails, leaves the
//! rotation at once and comes back when a health check ([`CHECK_EVERY`])
//! passes again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceExt;

/// How often the replicas' health is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often host names are resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A URL list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("backend URL {url:?}: {reason}")]
pub struct BadUrl {
    /// The URL.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One `http://host:port` of the list.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
}

fn parse(urls: &str) -> Result<Vec<Target>, BadUrl> {
    let targets: Vec<Target> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|url| {
            let bad = |reason: &str| BadUrl {
                url: url.to_owned(),
                reason: reason.to_owned(),
            };
            let uri: tonic::codegen::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
            if uri.scheme_str() != Some("http") {
                return Err(bad("only http:// is supported"));
            }
            let host = uri.host().ok_or_else(|| bad("no host"))?;
            Ok(Target {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: uri.port_u16().unwrap_or(80),
            })
        })
        .collect::<Result<_, _>>()?;
    if targets.is_empty() {
        return Err(BadUrl {
            url: urls.to_owned(),
            reason: "no URL given".into(),
        });
    }
    Ok(targets)
}

/// One replica: an address and a connection to it.
struct Member {
    channel: Channel,
    healthy: AtomicBool,
}

struct Inner {
    targets: Vec<Target>,
    connect_timeout: Duration,
    members: RwLock<Arc<HashMap<SocketAddr, Arc<Member>>>>,
    next: AtomicUsize,
}

/// The replicas of one service (cheap to clone; clones share them).
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("targets", &self.inner.targets)
            .finish_non_exhaustive()
    }
}

impl Replicas {
    /// The replicas `urls` (comma separated) name. Resolves them in the
    /// background from now on (so the service may start later); needs a
    /// Tokio runtime.
    pub fn new(urls: &str, connect_timeout: Duration) -> Result<Self, BadUrl> {
        let inner = Arc::new(Inner {
            targets: parse(urls)?,
            connect_timeout,
            members: RwLock::new(Arc::new(HashMap::new())),
            next: AtomicUsize::new(0),
        });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The next replica in rotation: a healthy one if any; else any (its
    /// failure then says the service is unavailable).
    fn pick(&self) -> Option<Arc<Member>> {
        let members = self
            .inner
            .members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let healthy = |m: &&Arc<Member>| m.healthy.load(Ordering::Relaxed);
        let up = members.values().filter(healthy).count();
        let chosen = if up > 0 {
            members.values().filter(healthy).nth(n % up)
        } else {
            members.values().nth(n % members.len().max(1))
        };
        chosen.cloned()
    }
}

/// Resolves and health-checks the replicas until every handle is dropped.
async fn maintain(inner: Weak<Inner>) {
    let mut ticks: u32 = 0;
    loop {
        let Some(live) = inner.upgrade() else { return };
        if ticks % (RESOLVE_EVERY.as_millis() / CHECK_EVERY.as_millis()).max(1) as u32 == 0 {
            resolve(&live).await;
        }
        check(&live).await;
        drop(live);
        ticks = ticks.wrapping_add(1);
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn resolve(inner: &Inner) {
    let mut found = Vec::new();
    for t in &inner.targets {
        match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
            Ok(addrs) => found.extend(addrs),
            // Keep what we had: a name server hiccup is no reason to drop replicas.
            Err(e) => {
                tracing::warn!(host = %t.host, error = %e, "cannot resolve a backend");
                return;
            }
        }
    }
    let old = inner
        .members
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if found.len() == old.len() && found.iter().all(|a| old.contains_key(a)) {
        return;
    }
    let mut members = HashMap::new();
    for addr in found {
        let member = match old.get(&addr) {
            Some(m) => m.clone(),
            None => {
                let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else {
                    continue;
                };
                tracing::info!(%addr, "backend replica found");
                Arc::new(Member {
                    channel: endpoint
                        .connect_timeout(inner.connect_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                        .keep_alive_while_idle(true)
                        .connect_lazy(),
                    // Optimistic until its first check: a new replica is
                    // usually one that just started answering.
                    healthy: AtomicBool::new(true),
                })
            }
        };
        members.insert(addr, member);
    }
    *inner.members.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(members);
}

async fn check(inner: &Inner) {
    let members = inner
        .members
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let checks = members.iter().map(|(addr, member)| async move {
        let mut health = HealthClient::new(member.channel.clone());
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let serving = matches!(
            tokio::time::timeout(CHECK_EVERY, health.check(request)).await,
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
        );
        let was = member.healthy.swap(serving, Ordering::Relaxed);
        if was != serving {
            tracing::info!(%addr, serving, "backend replica health changed");
        }
    });
    futures_util::future::join_all(checks).await;
}

impl Service<Request<Body>> for Replicas {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // Each call is handed to one replica's channel, which buffers it.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(member) = self.pick() else {
            return Box::pin(async { Err("no replica of the service is known yet".into()) });
        };
        Box::pin(async move {
            let answer = member.channel.clone().oneshot(request).await;
            if answer.is_err() {
                // Out of rotation until its health check passes again.
                member.healthy.store(false, Ordering::Relaxed);
            }
            answer.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists_are_parsed() {
        let t = parse("http://a:1, http://b:2,,http://[::1]:3").unwrap();
        let hosts: Vec<_> = t.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(hosts, [("a", 1), ("b", 2), ("::1", 3)]);
        assert!(parse("").is_err());
        assert!(parse("https://a:1").is_err());
        assert!(parse("nonsense url").is_err());
    }
}
