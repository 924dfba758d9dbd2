//! The REST API: one module per feature, each with its router, merged here.

pub mod auth;
pub mod movies;
pub mod ops;
pub mod ratings;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Positive, unique, increasing.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
}

/// `{"detail": "..."}`: the body of most errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    /// What went wrong.
    pub detail: String,
}

/// `{"field": ["message", ...]}`: the body of a 400 naming fields
/// (`non_field_errors` for errors of the whole request).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldErrors)]
pub struct FieldErrors(pub std::collections::BTreeMap<String, Vec<String>>);

/// The `Authorization: Token <token>` of a request, checked for shape only
/// (the services judge the token itself). Missing or malformed: 401.
pub struct AuthHeader {
    /// The whole header value, forwarded to the services.
    pub value: String,
    /// The token alone.
    pub token: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.headers.get(header::AUTHORIZATION);
        let value = match raw.map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(ApiError::Unauthenticated("Invalid token.".into())),
        };
        match platform::credentials(value) {
            platform::Credentials::Missing => Err(ApiError::Unauthenticated(
                "Authentication credentials were not provided.".into(),
            )),
            platform::Credentials::Malformed => {
                Err(ApiError::Unauthenticated("Invalid token.".into()))
            }
            platform::Credentials::Token(token) => Ok(Self {
                token: token.to_owned(),
                value: value.unwrap_or_default().to_owned(),
            }),
        }
    }
}

impl AuthHeader {
    /// The fields of `body`, or the error to answer: if the body or its
    /// fields are wrong, a wrong token still takes precedence (as in DRF,
    /// which authenticates before reading the body).
    pub async fn read_body<T>(
        &self,
        backends: &crate::Backends,
        body: Result<crate::extract::JsonObject, ApiError>,
        read: impl FnOnce(&serde_json::Map<String, serde_json::Value>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match body.and_then(|b| read(&b.0)) {
            Ok(v) => Ok(v),
            Err(e) => {
                backends.confirm_token(&self.token).await?;
                Err(e)
            }
        }
    }
}

/// `http://<host><path>`: the absolute URL DRF builds for pagination links.
pub fn absolute_url(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '?', '#']))
        .unwrap_or("localhost");
    format!("http://{host}{path}")
}
