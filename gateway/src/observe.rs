//! Per-request observation: a request id, one structured log line, metrics
//! by route and status, and DRF bodies for the router's own 404 and 405.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::error::ApiError;

/// Request counts and latency histograms by method, route and status.
pub struct Metrics(platform::metrics::Histograms);

impl Default for Metrics {
    fn default() -> Self {
        Self(platform::metrics::Histograms::new(
            "http",
            ["method", "route", "status"],
        ))
    }
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &'static str, status: StatusCode, seconds: f64) {
        // hyper answers only codes 100 to 999: a bounded set.
        let status = platform::metrics::intern(status.as_str());
        self.0.observe([method, route, status], seconds);
    }

    /// The Prometheus text exposition of everything observed.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

/// The route a request matched, as the router declared it (axum's
/// [`MatchedPath`]), or `unmatched`: a bounded set of labels, whatever the
/// paths clients send.
fn route_of(req: &Request) -> &'static str {
    match req.extensions().get::<MatchedPath>() {
        // The router's paths are few and fixed.
        Some(matched) => platform::metrics::intern(matched.as_str()),
        None => "unmatched",
    }
}

/// The method as a metrics label: the standard ones by name, any other
/// `other`, so that made-up methods cannot grow the series.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .iter()
    .find(|m| *m == method)
    .map_or("other", |m| m.as_str())
}

/// A client's `x-request-id` if it is short and printable, else a new one.
fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get("x-request-id")
        .filter(|v| v.len() <= 64 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// A new request id: 32 hex digits, as a simple UUID's. The first 16 are
/// random per process, the last 16 a keyed hash (SipHash under a random
/// key) of a counter: as unlikely to repeat as 64 random bits (a repeat
/// among four billion ids has odds of one in four billion), saying nothing
/// of how many requests came before, and without asking the kernel for
/// randomness at every request, as a UUID v4 did.
fn new_request_id() -> HeaderValue {
    use std::hash::BuildHasher as _;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<(u64, std::collections::hash_map::RandomState)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (prefix, key) = PROCESS.get_or_init(|| {
        let random = uuid::Uuid::new_v4().as_u64_pair().0;
        (random, std::collections::hash_map::RandomState::new())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&key.hash_one(n).to_be_bytes());
    let mut id = [0u8; 32];
    hex::encode_to_slice(bytes, &mut id).expect("16 bytes are 32 hex digits");
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}

/// The middleware: wraps every request, matched or not.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route_of(&req);
    let id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        %method,
        route,
        request_id = ?id
    );
    // Continues a client's W3C `traceparent`, when traces are exported.
    platform::telemetry::continue_trace(&span, req.headers());
    let mut response = next.run(req).instrument(span).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && is_empty(response.body()) {
        // axum's own 405 (with its `Allow` header): give it DRF's body.
        let (parts, _) = response.into_parts();
        let body = ApiError::detail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method \"{method}\" not allowed."),
        )
        .into_response();
        let (body_parts, body) = body.into_parts();
        response = Response::from_parts(parts, body);
        response.headers_mut().extend(body_parts.headers);
    }
    response.headers_mut().insert("x-request-id", id.clone());
    // No answer is to be sniffed into another type (JSON as HTML, mostly).
    response
        .headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    let status = response.status();
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .observe(method_label(&method), route, status, seconds);
    tracing::info!(
        %method,
        route,
        status = status.as_u16(),
        latency_ms = seconds * 1000.0,
        request_id = ?id,
        "request"
    );
    response
}

fn is_empty(body: &Body) -> bool {
    use axum::body::HttpBody;
    body.size_hint().exact() == Some(0)
}

/// The answer for a path no route matches.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_hex_of_a_uuids_length_and_differ() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
    }

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "BAR", "get"] {
            assert_eq!(
                method_label(&Method::from_bytes(made_up.as_bytes()).unwrap()),
                "other"
            );
        }
    }
}
