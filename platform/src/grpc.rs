//! How every gRPC service of the platform is served: a bound listener (port 0
//! allowed), the service itself, and beside it the standard
//! `grpc.health.v1.Health` and server reflection, so stock tools work without
//! the .proto files.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::Request;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;

/// Calls one HTTP/2 connection may have in flight; past it, new calls are
/// refused at once with UNAVAILABLE (load shedding) rather than queued.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// The longest a unary call may take to answer (a server-streaming call
/// only to start its stream).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request message a service decodes: our requests are a few
/// KiB at most (a 1,024-character password, 200-character titles).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What every service's `Application` answers about where and how it
/// serves: written once, here, from the listener it holds.
pub trait Served {
    /// The service's listener.
    fn listener(&self) -> &GrpcListener;

    /// Where the server listens.
    fn local_addr(&self) -> SocketAddr {
        self.listener().local_addr()
    }

    /// What its `GET /metrics` shows (for the one-process launcher, whose
    /// gateway shows it too).
    fn metrics(&self) -> crate::metrics::Render {
        self.listener().metrics()
    }

    /// Where `GET /metrics` is served, if it is.
    fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener().metrics_addr()
    }

    /// A client channel to this service for callers in this process: calls
    /// run the service directly (beside the TCP listener, once running).
    fn in_process_channel(&self) -> GrpcChannel {
        GrpcChannel::InProcess(self.listener().in_process_channel())
    }
}

/// A bound gRPC listener (and, if asked for, in-process clients beside it).
pub struct GrpcListener {
    incoming: TcpIncoming,
    local_addr: SocketAddr,
    in_process: in_process::Channel,
    metrics: std::sync::Arc<crate::metrics::Histograms>,
    metrics_listener: Option<tokio::net::TcpListener>,
    more_metrics: crate::metrics::Render,
    /// Services served beside the main one (the feed).
    more_services: Vec<AddService>,
}

/// Adds one more service to a server's routes.
type AddService = Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send>;

impl GrpcListener {
    /// Binds `addr` (port 0 picks a free port) and, if given, `metrics_addr`
    /// for a plain HTTP listener serving `GET /metrics`.
    pub async fn bind(
        addr: SocketAddr,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Self, ServeError> {
        let bind = |addr| move |source| ServeError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind(addr))?;
        let local_addr = listener.local_addr().map_err(bind(addr))?;
        let metrics_listener = match metrics_addr {
            None => None,
            Some(m) => Some(tokio::net::TcpListener::bind(m).await.map_err(bind(m))?),
        };
        Ok(Self {
            incoming: TcpIncoming::from(listener).with_nodelay(Some(true)),
            local_addr,
            in_process: in_process::Channel::default(),
            metrics: call_metrics("grpc_server"),
            metrics_listener,
            more_metrics: crate::metrics::nothing_more(),
            more_services: Vec::new(),
        })
    }

    /// Serves `service` too, beside the main one, on the same listener
    /// (and in-process).
    pub fn add_service<S>(&mut self, service: S)
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.more_services
            .push(Box::new(move |routes| routes.add_service(service)));
    }

    /// A client of this server for callers in the same process: calls run
    /// the service directly, beside the TCP listener, from when it serves
    /// until it stops.
    pub fn in_process_channel(&self) -> in_process::Channel {
        self.in_process.clone()
    }

    /// The series of the calls it serves (`grpc_server_…`), for calls
    /// served in this process without it (see [`observe_direct`]).
    pub fn call_metrics(&self) -> std::sync::Arc<crate::metrics::Histograms> {
        self.metrics.clone()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds the service's own series (its read model's, say) to what its
    /// `GET /metrics` shows after the calls'.
    pub fn add_metrics(&mut self, more: crate::metrics::Render) {
        self.more_metrics = more;
    }

    /// What this service's `GET /metrics` shows: its calls (over TCP and
    /// in-process), then what [`GrpcListener::add_metrics`] added.
    pub fn metrics(&self) -> crate::metrics::Render {
        let (calls, more) = (self.metrics.clone(), self.more_metrics.clone());
        std::sync::Arc::new(move || {
            let (calls, more) = (calls.clone(), more());
            Box::pin(async move { calls.render() + &more.await })
        })
    }

    /// Where `GET /metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves `service` (reported serving to health checks) with reflection,
    /// until `shutdown` resolves; in-flight calls then finish. The metrics
    /// listener, if bound, serves [`GrpcListener::metrics`].
    pub async fn serve<S>(
        mut self,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError>
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<S>().await;
        // Both versions of reflection: grpcurl speaks v1, older tools
        // (grpcio-reflection, Postman) v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        tracing::info!(addr = %self.local_addr, service = S::NAME, "listening");
        let mut routes = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service);
        for add in std::mem::take(&mut self.more_services) {
            routes = add(routes);
        }
        let routes = routes.prepare();
        self.in_process
            .serve(Observed::server(routes.clone(), self.metrics.clone()));
        let render = self.metrics();
        let metrics_server = self
            .metrics_listener
            .map(|l| tokio::spawn(crate::metrics::serve(l, render)));
        let served = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
            .load_shed(true)
            .timeout(CALL_TIMEOUT)
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(observed::Layer(self.metrics.clone()))
            .add_routes(routes)
            .serve_with_incoming_shutdown(self.incoming, shutdown)
            .await;
        self.in_process.stop();
        if let Some(m) = metrics_server {
            m.abort();
        }
        served?;
        tracing::info!(service = S::NAME, "stopped");
        Ok(())
    }
}

pub use observed::{Observed, observe_direct};

/// The series of gRPC calls: `<prefix>_requests_total` and
/// `<prefix>_request_duration_seconds` by `grpc_service`, `grpc_method` and
/// `grpc_code`. Servers use the prefix `grpc_server`, clients `grpc_client`.
pub fn call_metrics(prefix: &'static str) -> std::sync::Arc<crate::metrics::Histograms> {
    std::sync::Arc::new(crate::metrics::Histograms::new(
        prefix,
        ["grpc_service", "grpc_method", "grpc_code"],
    ))
}

/// Every call counted and timed, by service, method and status code.
mod observed {
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use tonic::codegen::Service;
    use tonic::codegen::http::{Request, Response};
    use tracing::Instrument as _;

    use crate::metrics::{Histograms, intern};

    /// Wraps a server's routes in [`Observed`].
    #[derive(Clone)]
    pub struct Layer(pub Arc<Histograms>);

    impl<S> tower::Layer<S> for Layer {
        type Service = Observed<S>;

        fn layer(&self, inner: S) -> Observed<S> {
            Observed::server(inner, self.0.clone())
        }
    }

    /// A gRPC service (a server's routes, or a client's channel) whose calls
    /// are counted and timed in `metrics`; on a server, each call also runs
    /// in a span continuing the caller's trace.
    #[derive(Clone)]
    pub struct Observed<S> {
        inner: S,
        metrics: Arc<Histograms>,
        server: bool,
    }

    impl<S: std::fmt::Debug> std::fmt::Debug for Observed<S> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Observed")
                .field("inner", &self.inner)
                .field("server", &self.server)
                .finish()
        }
    }

    impl<S> Observed<S> {
        /// The server side.
        pub fn server(inner: S, metrics: Arc<Histograms>) -> Self {
            Self {
                inner,
                metrics,
                server: true,
            }
        }

        /// The client side.
        pub fn client(inner: S, metrics: Arc<Histograms>) -> Self {
            Self {
                inner,
                metrics,
                server: false,
            }
        }
    }

    /// gRPC status code names, by number.
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// Counts and times a call made or served directly, without HTTP (a
    /// service's calls from the gateway in one process): the same series
    /// as [`Observed`] gives a call over HTTP.
    pub fn observe_direct<T>(
        metrics: &Histograms,
        (service, method): (&'static str, &'static str),
        answer: &Result<T, tonic::Status>,
        took: std::time::Duration,
    ) {
        let code = answer
            .as_ref()
            .map_or_else(tonic::Status::code, |_| tonic::Code::Ok);
        let code = CODES.get(code as usize).copied().unwrap_or("UNKNOWN");
        metrics.observe([service, method, code], took.as_secs_f64());
    }

    impl<S, B, R> Service<Request<B>> for Observed<S>
    where
        S: Service<Request<B>, Response = Response<R>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        R: Send + 'static,
    {
        type Response = Response<R>;
        type Error = S::Error;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<R>, S::Error>> + Send>,
        >;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: Request<B>) -> Self::Future {
            let started = Instant::now();
            let path = request.uri().path().to_owned();
            let metrics = self.metrics.clone();
            // Continues the caller's trace (a disabled span if none is
            // exported, or on the client side).
            let span = if self.server {
                crate::telemetry::server_span(&path, request.headers())
            } else {
                tracing::Span::none()
            };
            let answer = span.in_scope(|| self.inner.call(request));
            Box::pin(async move {
                let answer = answer.instrument(span).await;
                // Errors and trailers-only answers carry the code in the
                // headers; a success carries it in trailers: OK.
                let code = match &answer {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .and_then(|n| CODES.get(n).copied())
                        .unwrap_or("OK"),
                    Err(_) => "UNAVAILABLE",
                };
                // Only implemented methods are labelled by name: a path a
                // client made up must not add series.
                let (service, method) = match path.trim_start_matches('/').split_once('/') {
                    Some((service, method)) if code != "UNIMPLEMENTED" => {
                        (intern(service), intern(method))
                    }
                    _ => ("unknown", "unknown"),
                };
                metrics.observe([service, method, code], started.elapsed().as_secs_f64());
                answer
            })
        }
    }
}

/// gRPC calls inside one process, handed straight to the server's routes:
/// the caller's task runs the whole call (client codec, metadata, the
/// service, the server codec) with no HTTP/2 framing, no connection tasks
/// and no socket; the idea of grpc-java's in-process transport. Calls made
/// before the server serves wait for it (within the caller's deadline);
/// calls made after it stopped fail UNAVAILABLE.
pub mod in_process {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::task::{Context, Poll};

    use tokio::sync::Notify;
    use tonic::body::Body;
    use tonic::codegen::Service;
    use tonic::codegen::http::{Request, Response};
    use tonic::service::Routes;

    use super::Observed;

    type RoutesFuture = <Observed<Routes> as Service<Request<Body>>>::Future;
    type Answer = Result<Response<Body>, tonic::Status>;

    /// The client end: cheap to clone, every clone reaches the same server.
    #[derive(Clone, Default)]
    pub struct Channel(Arc<Slot>);

    #[derive(Default)]
    struct Slot {
        routes: OnceLock<Observed<Routes>>,
        started: Notify,
        stopped: AtomicBool,
    }

    impl std::fmt::Debug for Channel {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("in_process::Channel")
                .field("started", &self.0.routes.get().is_some())
                .field("stopped", &self.0.stopped.load(Ordering::Relaxed))
                .finish()
        }
    }

    impl Channel {
        /// From now on, calls go to `routes`.
        pub(super) fn serve(&self, routes: Observed<Routes>) {
            // A listener serves once, so the slot is empty here.
            let _ = self.0.routes.set(routes);
            self.0.started.notify_waiters();
        }

        /// The server stopped: new calls are refused, calls under way finish.
        pub(super) fn stop(&self) {
            self.0.stopped.store(true, Ordering::Release);
            self.0.started.notify_waiters();
        }
    }

    /// What a call to a service of this process that has stopped is
    /// answered (UNAVAILABLE).
    pub fn not_serving() -> tonic::Status {
        tonic::Status::unavailable("the in-process service has stopped")
    }

    impl Channel {
        /// Waits until the server serves (or stops), then calls it.
        async fn when_serving(mut self, request: Request<Body>) -> Answer {
            let slot = Arc::clone(&self.0);
            loop {
                let started = slot.started.notified();
                tokio::pin!(started);
                // Registered before the checks, so no wake-up is missed.
                started.as_mut().enable();
                if slot.stopped.load(Ordering::Acquire) || slot.routes.get().is_some() {
                    // Serving or stopped: `call` answers without waiting.
                    return self.call(request).await;
                }
                started.await;
            }
        }
    }

    impl Service<Request<Body>> for Channel {
        type Response = Response<Body>;
        type Error = tonic::Status;
        type Future = ResponseFuture;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            ResponseFuture(if self.0.stopped.load(Ordering::Acquire) {
                Pending::Stopped
            } else if let Some(routes) = self.0.routes.get() {
                Pending::Call(routes.clone().call(request))
            } else {
                Pending::Starting(Box::pin(self.clone().when_serving(request)))
            })
        }
    }

    /// The answer of a call.
    pub struct ResponseFuture(Pending);

    enum Pending {
        Call(RoutesFuture),
        Starting(Pin<Box<dyn Future<Output = Answer> + Send>>),
        Stopped,
    }

    impl Future for ResponseFuture {
        type Output = Answer;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
            match &mut self.0 {
                Pending::Call(call) => Pin::new(call)
                    .poll(cx)
                    .map(|r| Ok(r.unwrap_or_else(|never: Infallible| match never {}))),
                Pending::Starting(call) => call.as_mut().poll(cx),
                Pending::Stopped => Poll::Ready(Err(not_serving())),
            }
        }
    }
}

/// How a client reaches a service: over the network, or inside this process.
#[derive(Clone, Debug)]
pub enum GrpcChannel {
    /// An HTTP/2 channel to one address (reconnects by itself).
    Remote(tonic::transport::Channel),
    /// Several replicas, or a host name that may name several.
    Replicas(crate::replicas::Replicas),
    /// A server in this process.
    InProcess(in_process::Channel),
}

impl GrpcChannel {
    /// A client of the service at `urls` (comma separated): one
    /// `http://<ip>:<port>` is one HTTP/2 channel; several URLs, or a host
    /// name (which may resolve to several replicas), are balanced
    /// [`crate::replicas::Replicas`]. Connects lazily: the service may start later.
    pub fn connect_lazy(
        urls: &str,
        connect_timeout: Duration,
    ) -> Result<Self, crate::replicas::BadUrl> {
        let single_ip = !urls.contains(',')
            && urls
                .trim()
                .parse::<tonic::codegen::http::Uri>()
                .ok()
                .and_then(|u| {
                    u.host().map(|h| {
                        h.trim_matches(['[', ']'])
                            .parse::<std::net::IpAddr>()
                            .is_ok()
                    })
                })
                .unwrap_or(false);
        if !single_ip {
            return crate::replicas::Replicas::new(urls, connect_timeout).map(Self::Replicas);
        }
        let endpoint =
            tonic::transport::Endpoint::from_shared(urls.trim().to_owned()).map_err(|e| {
                crate::replicas::BadUrl {
                    url: urls.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Self::Remote(
            endpoint
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
                .connect_lazy(),
        ))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Request<Body>> for GrpcChannel {
    type Response = tonic::codegen::http::Response<Body>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        match self {
            Self::Remote(c) => c.poll_ready(cx).map_err(Into::into),
            Self::Replicas(c) => c.poll_ready(cx),
            Self::InProcess(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            Self::Remote(c) => {
                let call = c.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
            Self::Replicas(c) => c.call(request),
            Self::InProcess(c) => {
                let call = c.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;

    /// A service with nothing to offer: the listener serves health beside it.
    #[derive(Clone)]
    struct Nothing;

    impl NamedService for Nothing {
        const NAME: &'static str = "test.Nothing";
    }

    impl Service<Request<Body>> for Nothing {
        type Response = tonic::codegen::http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(tonic::Status::unimplemented("").into_http()))
        }
    }

    async fn health(channel: GrpcChannel) -> Result<i32, tonic::Status> {
        let request = HealthCheckRequest {
            service: Nothing::NAME.into(),
        };
        let answer = HealthClient::new(channel).check(request).await?;
        Ok(answer.into_inner().status)
    }

    #[tokio::test]
    async fn in_process_calls_wait_for_the_server_and_fail_once_it_stopped() {
        let listener = GrpcListener::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let channel = GrpcChannel::InProcess(listener.in_process_channel());
        let early = tokio::spawn(health(channel.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!early.is_finished(), "a call before serving waits");

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(Nothing, async {
            let _ = stopped.await;
        }));
        let serving = ServingStatus::Serving as i32;
        assert_eq!(early.await.unwrap().unwrap(), serving);
        assert_eq!(health(channel.clone()).await.unwrap(), serving);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        let after = health(channel).await.unwrap_err();
        assert_eq!(after.code(), tonic::Code::Unavailable, "{after:?}");
    }
}
