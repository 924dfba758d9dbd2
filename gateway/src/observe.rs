//! Per-request observation: a request id, one structured log line, metrics
//! by route and status, and DRF bodies for the router's own 404 and 405.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::error::ApiError;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and latency histograms by method, route and status.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<HashMap<(&'static str, &'static str, u16), Series>>,
}

impl Metrics {
    fn observe(&self, method: &'static str, route: &'static str, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry((method, route, status)).or_default();
        s.count += 1;
        s.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            s.buckets[i] += 1;
        }
    }

    /// The Prometheus text exposition of everything observed. The lock
    /// every request takes is held only to copy the (few, bounded) series;
    /// the text is written without it.
    pub fn render(&self) -> String {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut keys: Vec<_> = series.keys().cloned().collect();
        keys.sort_by_key(|k| (k.1, k.0, k.2));
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for k in &keys {
            let labels = format!("method=\"{}\",route=\"{}\",status=\"{}\"", k.0, k.1, k.2);
            let _ = writeln!(out, "http_requests_total{{{labels}}} {}", series[k].count);
        }
        out.push_str("# HELP http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for k in &keys {
            let s = &series[k];
            let labels = format!("method=\"{}\",route=\"{}\",status=\"{}\"", k.0, k.1, k.2);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// The route a request matched, as the router declared it (axum's
/// [`MatchedPath`]), or `unmatched`: a bounded set of labels, whatever the
/// paths clients send.
fn route_of(req: &Request) -> &'static str {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    // The router's paths are few and fixed: each is interned once.
    static ROUTES: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    let path = matched.as_str();
    let known = |routes: &[&'static str]| routes.iter().find(|r| **r == path).copied();
    if let Some(r) = known(&ROUTES.read().unwrap_or_else(|p| p.into_inner())) {
        return r;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|p| p.into_inner());
    known(&routes).unwrap_or_else(|| {
        let r: &'static str = Box::leak(path.into());
        routes.push(r);
        r
    })
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
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .expect("a uuid is a valid header value")
        })
}

/// The middleware: wraps every request, matched or not.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route_of(&req);
    let id = request_id(&req);
    let span = tracing::info_span!("request", %method, route, request_id = ?id);
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
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .observe(method_label(&method), route, status, seconds);
    tracing::info!(
        %method,
        route,
        status,
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

    #[test]
    fn metrics_render_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", "/healthz", 200, 0.0007);
        m.observe("GET", "/healthz", 200, 0.02);
        let text = m.render();
        assert!(
            text.contains(
                "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.025\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}
