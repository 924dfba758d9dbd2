//! The REST API: one module per feature, each with its router, merged here.

pub mod activity;
pub mod auth;
pub mod movies;
pub mod ops;
pub mod ratings;
pub mod sessions;

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};
use utoipa::ToSchema;

use crate::error::ApiError;

/// The OpenAPI extension a route declares its [`RoutePolicy`] in, on its
/// `#[utoipa::path]`: `extensions(("x-route" = json!({"limited": true})))`.
/// Read (and removed from the served document) when the router is built.
pub const POLICY_EXTENSION: &str = "x-route";

/// What a route is besides its handler, declared once on the route. It
/// drives the per-client limit (`client::limit`) and the OpenAPI
/// completion (`openapi::complete`); a route declaring none has the
/// default (none of these).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutePolicy {
    /// It costs a password hash: under the per-client limit on logins and
    /// registrations (429, `RateLimit` fields).
    pub limited: bool,
    /// It takes an `Idempotency-Key` (a retry answers as the first time;
    /// 422 when the key was used with another request).
    pub keyed: bool,
    /// It is under the per-user write quota (429; `RateLimit` fields on
    /// what it stores).
    pub quota: bool,
}

/// Every route's policy, by path (as the router matches it) and method.
#[derive(Debug, Default)]
pub struct RoutePolicies(HashMap<Box<str>, Vec<(Method, RoutePolicy)>>);

impl RoutePolicies {
    /// Takes each operation's policy out of `doc` (the OpenAPI document
    /// made from the routes). A policy that does not parse panics: the
    /// tests build the document, so they catch it.
    pub fn take(doc: &mut Value) -> Self {
        let mut by_path: HashMap<Box<str>, Vec<(Method, RoutePolicy)>> = HashMap::new();
        let paths = doc["paths"].as_object_mut().into_iter().flatten();
        for (path, item) in paths {
            for (method, op) in item.as_object_mut().into_iter().flatten() {
                let Some(declared) = op.as_object_mut().and_then(|o| o.remove(POLICY_EXTENSION))
                else {
                    continue;
                };
                let policy: RoutePolicy = serde_json::from_value(declared)
                    .unwrap_or_else(|e| panic!("{method} {path}: bad {POLICY_EXTENSION}: {e}"));
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .expect("an OpenAPI method is an HTTP method");
                by_path
                    .entry(path.as_str().into())
                    .or_default()
                    .push((method, policy));
            }
        }
        Self(by_path)
    }

    /// The policy of `method` on `path` (a route's path as matched).
    pub fn get(&self, method: &Method, path: &str) -> RoutePolicy {
        self.0
            .get(path)
            .and_then(|ops| ops.iter().find(|(m, _)| m == method))
            .map_or_else(RoutePolicy::default, |(_, p)| *p)
    }
}

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

/// The caller's credentials, read once from `Authorization: Token <token>`
/// (knox's rules) and checked for shape only: the services judge the token.
/// Missing or malformed: 401.
pub struct Caller {
    /// The token alone (for the calls that take it as a field).
    pub token: String,
    /// The whole header value, ready to forward as `authorization` metadata.
    pub authorization: MetadataValue<Ascii>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let invalid = || ApiError::Unauthenticated("Invalid token.".into());
        let raw = parts.headers.get(header::AUTHORIZATION);
        let value = raw.map(|v| v.to_str().map_err(|_| invalid())).transpose()?;
        match platform::credentials(value) {
            platform::Credentials::Missing => Err(ApiError::Unauthenticated(
                "Authentication credentials were not provided.".into(),
            )),
            platform::Credentials::Malformed => Err(invalid()),
            platform::Credentials::Token(token) => Ok(Self {
                token: token.to_owned(),
                authorization: MetadataValue::try_from(value.unwrap_or_default())
                    .map_err(|_| invalid())?,
            }),
        }
    }
}

impl Caller {
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

/// A client's `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header):
/// a string, quoted or not, of 1–255 visible ASCII characters. Sent on a
/// POST that creates something, it makes a retry of the same request give
/// the first answer again instead of creating a second thing.
pub struct IdempotencyKey(pub Option<MetadataValue<Ascii>>);

/// The longest key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(raw) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let invalid = || {
            ApiError::detail(
                axum::http::StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            )
        };
        let text = raw.to_str().map_err(|_| invalid())?.trim();
        let key = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .filter(|k| !k.is_empty())
            .unwrap_or(text);
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid());
        }
        Ok(Self(Some(
            MetadataValue::try_from(key).map_err(|_| invalid())?,
        )))
    }
}

impl IdempotencyKey {
    /// `request` with the key in its metadata, if there is one.
    pub fn attach<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        if let Some(key) = &self.0 {
            request
                .metadata_mut()
                .insert("idempotency-key", key.clone());
        }
        request
    }
}

/// A service's timestamp as the API shows times: RFC 3339, UTC, with
/// microseconds (`None` for an absent or out-of-range one).
pub fn rfc3339(t: Option<proto::Timestamp>) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    let t = t?;
    let at = chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)?;
    Some((at, at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
}

/// The absolute URL of `path` on this API, from its public base URL (never
/// from the request's `Host`, which the client chooses).
pub fn absolute_url(state: &crate::AppState, path: &str) -> String {
    format!("{}{path}", state.public_url)
}
