//! The operations surface: liveness, readiness, the OpenAPI document; and
//! the metrics, served on a listener of their own (`GATEWAY_METRICS_LISTEN`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi))
}

/// The process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Both services answer their health checks.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let down = state.backends.not_ready().await;
    if down.is_empty() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::detail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not reachable: {}", down.join(", ")),
        ))
    }
}

/// Prometheus text format: the gateway's requests, its calls to the
/// services, and (in one process) the services' own series.
pub fn metrics(state: AppState) -> platform::metrics::Render {
    std::sync::Arc::new(move || {
        let state = state.clone();
        Box::pin(async move {
            let own = state.metrics.render();
            let others = state.backends.metrics_text().await;
            platform::metrics::merge(
                std::iter::once(own.as_str()).chain(others.iter().map(String::as_str)),
            )
        })
    })
}

/// The OpenAPI 3.1 document, generated from the handlers.
async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.to_string(),
    )
        .into_response()
}
