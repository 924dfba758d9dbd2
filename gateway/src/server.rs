//! The gateway's HTTP server: the platform's limited server
//! ([`platform::http_server`]), and a deadline on each request:
//! a request (reading its body included) must be answered within
//! `request_timeout`, else 408.

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use tokio::net::TcpListener;

pub use platform::http_server::peer_of;

/// The limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What each connection may hold.
    pub connections: platform::http_server::ConnectionLimits,
    /// Time to answer a request, its body read included.
    pub request_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves (see
/// [`platform::http_server::serve`]), each request under its deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_deadline,
    ));
    platform::http_server::serve(listener, router, limits.connections, shutdown).await;
}

/// Answers 408 to a request not answered within the deadline (a body sent
/// too slowly, mostly: backend calls have their own, shorter deadline).
async fn request_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = crate::error::ApiError::detail(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "The request took too long to arrive.",
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}
