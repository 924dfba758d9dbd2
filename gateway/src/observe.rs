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
