//! What the gateway and the services agree on for a gRPC request: the
//! metadata that carries the client's address and idempotency key, and
//! field errors in DRF's words.

/// The gRPC metadata that carries a client's idempotency key (see the
/// gateway's `Idempotency-Key`).
/// The response metadata carrying a write's `RateLimit-Policy` field
/// (IETF draft-ietf-httpapi-ratelimit-headers), which the gateway passes on.
pub const RATELIMIT_POLICY_KEY: &str = "ratelimit-policy";

/// The response metadata carrying a write's `RateLimit` field.
pub const RATELIMIT_KEY: &str = "ratelimit";

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The message a request gets when its idempotency key was used before
/// for another request (as FAILED_PRECONDITION; 422 at the REST edge).
pub const KEY_REUSED: &str = "This Idempotency-Key was already used with a different request.";

/// A call's idempotency key, if it has a usable one (1–255 visible ASCII
/// characters).
pub fn idempotency_key<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
}

/// A request field that failed validation, and why, in DRF's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as named in the REST API (`non_field_errors` for the whole request).
    pub field: &'static str,
    /// The message shown to the client.
    pub message: String,
}

impl FieldError {
    /// `field` failed with `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A status carrying field errors as `google.rpc.BadRequest` violations,
/// which the gateway turns into DRF's `{"field": ["message"]}`.
pub fn field_errors(code: tonic::Code, message: &str, errors: &[FieldError]) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::new();
    for e in errors {
        details.add_bad_request_violation(e.field, e.message.clone());
    }
    tonic::Status::with_error_details(code, message, details)
}

/// A refusal to wait `retry_after_secs` (a throttled login, a used-up
/// write quota): RESOURCE_EXHAUSTED with DRF's throttle message and a
/// `google.rpc.RetryInfo`, which the gateway turns into 429 and
/// `Retry-After`.
pub fn throttled(retry_after_secs: u64) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!("Request was throttled. Expected available in {retry_after_secs} seconds."),
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(retry_after_secs))),
    )
}

/// The metadata key in which the gateway tells the services the end
/// client's address (the services' gRPC ports are internal: see the
/// README's Security section).
pub const CLIENT_ADDRESS_KEY: &str = "x-client-address";

/// The metadata key in which the gateway tells the services the end
/// client's `User-Agent` (as sent; the service sanitises it).
pub const CLIENT_USER_AGENT_KEY: &str = "x-client-user-agent";

/// The end client's `User-Agent` the gateway passed on, if any (raw: at
/// most what a metadata value holds; sanitise before keeping it).
pub fn client_user_agent<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(CLIENT_USER_AGENT_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The address of the end client of a gRPC request: the one the gateway
/// passed on, else the peer's IP, else `unknown` (in-process calls).
pub fn client_address<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(CLIENT_ADDRESS_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_owned)
        .or_else(|| request.remote_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}
