//! Every error the REST API shows, in Django REST Framework's shape, and the
//! one place where gRPC statuses become HTTP responses (API.md's table).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with one key per field: `{"field": ["message", ...]}`.
    #[error("invalid fields")]
    Fields(BTreeMap<String, Vec<String>>),
    /// Any status with `{"detail": "..."}`.
    #[error("{status}: {detail}")]
    Detail {
        /// The HTTP status.
        status: StatusCode,
        /// The message.
        detail: String,
    },
    /// 401 with `WWW-Authenticate: Token`.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// 429 with `Retry-After`.
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// 503 with `Retry-After`: a backend is down or saturated.
    #[error("unavailable; retry in {0} s")]
    Unavailable(u64),
    /// A backend call failed.
    #[error("backend: {0}")]
    Grpc(#[from] tonic::Status),
    /// A backend call took longer than the deadline.
    #[error("backend timed out")]
    Timeout,
}

impl ApiError {
    /// `{"detail": detail}` with `status`.
    pub fn detail(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Detail {
            status,
            detail: detail.into(),
        }
    }

    /// 404 `{"detail": "Not found."}`.
    pub fn not_found() -> Self {
        Self::detail(StatusCode::NOT_FOUND, "Not found.")
    }

    /// One field error.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Fields(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Fields(fields) => json_response(StatusCode::BAD_REQUEST, json!(fields)),
            Self::Detail { status, detail } => json_response(status, json!({ "detail": detail })),
            Self::Unauthenticated(detail) => {
                let mut r = json_response(StatusCode::UNAUTHORIZED, json!({ "detail": detail }));
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
                r
            }
            Self::Throttled(seconds) => {
                let detail =
                    format!("Request was throttled. Expected available in {seconds} seconds.");
                let mut r =
                    json_response(StatusCode::TOO_MANY_REQUESTS, json!({ "detail": detail }));
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                r
            }
            Self::Unavailable(seconds) => {
                let detail = "Service temporarily unavailable, try again later.";
                let mut r =
                    json_response(StatusCode::SERVICE_UNAVAILABLE, json!({ "detail": detail }));
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                r
            }
            Self::Grpc(status) => from_status(status).into_response(),
            Self::Timeout => Self::detail(
                StatusCode::GATEWAY_TIMEOUT,
                "A backend service did not answer in time.",
            )
            .into_response(),
        }
    }
}

impl ApiError {
    /// The error for a status a backend call ended with. A status the
    /// client made itself from a broken connection (a service that died
    /// mid-call: CANCELLED, or UNKNOWN/INTERNAL with a transport error as
    /// its source) means the service is unavailable, not failing.
    pub fn from_call(status: tonic::Status) -> Self {
        if broken_call(&status) {
            Self::Grpc(tonic::Status::unavailable(status.message().to_owned()))
        } else {
            Self::Grpc(status)
        }
    }
}

/// Whether `status` is one a client made itself from a broken connection.
fn broken_call(status: &tonic::Status) -> bool {
    status.code() == Code::Cancelled
        || (std::error::Error::source(status).is_some()
            && matches!(status.code(), Code::Unknown | Code::Internal))
}

/// Whether a call ended because its service (replica) was not there:
/// UNAVAILABLE, or a broken connection.
pub fn unavailable(status: &tonic::Status) -> bool {
    status.code() == Code::Unavailable || broken_call(status)
}

/// The one mapping from a gRPC status to the REST error (API.md's table).
fn from_status(status: tonic::Status) -> ApiError {
    match status.code() {
        Code::InvalidArgument | Code::AlreadyExists => {
            let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for v in status
                .get_details_bad_request()
                .map(|b| b.field_violations)
                .unwrap_or_default()
            {
                fields.entry(v.field).or_default().push(v.description);
            }
            if fields.is_empty() {
                ApiError::detail(StatusCode::BAD_REQUEST, status.message())
            } else {
                ApiError::Fields(fields)
            }
        }
        Code::Unauthenticated => ApiError::Unauthenticated(status.message().to_owned()),
        Code::PermissionDenied => ApiError::detail(StatusCode::FORBIDDEN, status.message()),
        Code::NotFound => ApiError::not_found(),
        // An idempotency key reused for another request.
        Code::FailedPrecondition => {
            ApiError::detail(StatusCode::UNPROCESSABLE_ENTITY, status.message())
        }
        Code::ResourceExhausted => ApiError::Throttled(retry_after(&status)),
        Code::Unavailable => {
            tracing::warn!(message = status.message(), "backend unavailable");
            ApiError::Unavailable(retry_after(&status))
        }
        Code::DeadlineExceeded => ApiError::Timeout,
        code => {
            tracing::error!(?code, message = status.message(), "backend failed");
            ApiError::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A server error occurred.",
            )
        }
    }
}

/// Whole seconds to wait before retrying: the status's retry info, else 1.
fn retry_after(status: &tonic::Status) -> u64 {
    let wait = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap_or(Duration::from_secs(1));
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn status_of(e: ApiError) -> StatusCode {
        e.into_response().status()
    }

    #[test]
    fn grpc_codes_map_as_the_contract_says() {
        let cases = [
            (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            (Code::AlreadyExists, StatusCode::BAD_REQUEST),
            (Code::Unauthenticated, StatusCode::UNAUTHORIZED),
            (Code::PermissionDenied, StatusCode::FORBIDDEN),
            (Code::NotFound, StatusCode::NOT_FOUND),
            (Code::FailedPrecondition, StatusCode::UNPROCESSABLE_ENTITY),
            (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
            (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
            (Code::Unknown, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (code, http) in cases {
            assert_eq!(
                status_of(ApiError::Grpc(tonic::Status::new(code, "x"))),
                http,
                "{code:?}"
            );
        }
    }

    #[test]
    fn field_violations_become_field_keys() {
        let mut d = ErrorDetails::new();
        d.add_bad_request_violation("email", "Enter a valid email address.");
        d.add_bad_request_violation("username", "a");
        d.add_bad_request_violation("username", "b");
        let s = tonic::Status::with_error_details(Code::InvalidArgument, "bad", d);
        let ApiError::Fields(f) = from_status(s) else {
            panic!()
        };
        assert_eq!(f["username"], ["a", "b"]);
        assert_eq!(f["email"], ["Enter a valid email address."]);
    }
}
