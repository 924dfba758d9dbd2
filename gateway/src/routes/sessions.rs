//! The caller's sessions: their live tokens, one revoked by id, and a
//! password change that ends every other session.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use proto::auth::{ChangePasswordRequest, ListTokensRequest, RevokeTokenRequest, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::client::Client;
use crate::error::ApiError;
use crate::extract::{Fields, JsonObject};
use crate::pagination::{ListQuery, Paginated};
use crate::routes::auth::{CacheControl, NoStore};
use crate::routes::{Caller, Detail, FieldErrors, absolute_url, rfc3339};

/// The routes of this module, each declared once: the router and the
/// OpenAPI document both come from it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(change_password))
}

/// A live token of the caller, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveTokenOut {
    /// Opaque and stable: what `DELETE /api/auth/tokens/{id}` takes. It
    /// reveals nothing of the token.
    pub id: String,
    /// The name given at login (`"name"` in its body), if any.
    pub name: Option<String>,
    /// When it was issued (RFC 3339, UTC, microseconds).
    pub created: String,
    /// When it stops being valid (later, if auto-refresh moves it).
    pub expiry: String,
    /// Whether it is the token of this request.
    pub current: bool,
    /// The client's address at issue (`null` when unknown: tokens issued
    /// before addresses were kept).
    pub address: Option<String>,
    /// The client's `User-Agent` at issue, truncated and sanitised.
    pub user_agent: Option<String>,
}

/// `Some(text)` unless it is empty.
fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl From<TokenInfo> for LiveTokenOut {
    fn from(t: TokenInfo) -> Self {
        Self {
            id: t.id,
            name: non_empty(t.name),
            created: rfc3339(t.issued).map(|(_, s)| s).unwrap_or_default(),
            expiry: rfc3339(t.expiry).map(|(_, s)| s).unwrap_or_default(),
            current: t.current,
            address: non_empty(t.address),
            user_agent: non_empty(t.user_agent),
        }
    }
}

/// The live tokens: a plain array, or a page when `limit` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LiveTokenList {
    /// Without `limit`.
    All(Vec<LiveTokenOut>),
    /// With `limit` (and `offset`).
    Page(Paginated<Vec<LiveTokenOut>>),
}

/// The caller's live tokens, oldest first: when each was issued and
/// expires, its name, where it was issued to, and which one is this
/// request's. Never a token itself. `?limit&offset` paginate. Personal:
/// answered `no-store`.
#[utoipa::path(get, path = "/api/auth/tokens", tag = "auth", security(("token" = [])),
    params(crate::pagination::Page),
    responses(
        (status = 200, description = "The caller's live tokens", body = LiveTokenList),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<NoStore<Json<LiveTokenList>>, ApiError> {
    let q = ListQuery::parse(query.as_deref());
    let offset = if q.limit.is_some() { q.offset } else { 0 };
    let b = &state.backends;
    let listed = b
        .read(|| {
            let message = ListTokensRequest {
                token: caller.token.clone(),
                offset,
                limit: q.limit.unwrap_or(0),
            };
            let (mut auth, request) = (b.auth.clone(), b.request(message, None));
            async move { auth.list_tokens(request).await }
        })
        .await?;
    let results = listed.tokens.into_iter().map(LiveTokenOut::from).collect();
    Ok(CacheControl(Json(match q.limit {
        Some(_) => {
            let base = absolute_url(&state, "/api/auth/tokens");
            LiveTokenList::Page(q.page(&base, listed.count, results))
        }
        None => LiveTokenList::All(results),
    })))
}

/// Revokes one of the caller's live tokens, by its id: it is refused at
/// once, on every replica. Its own id logs this request's token out.
/// Another user's id answers 404, as an id that does not exist.
#[utoipa::path(delete, path = "/api/auth/tokens/{id}", tag = "auth", security(("token" = [])),
    params(("id" = String, Path, description = "The token's id, as the list shows it")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 404, description = "No live token of the caller has this id", body = Detail),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let b = &state.backends;
    let request = b.request(
        RevokeTokenRequest {
            token: caller.token,
            id,
        },
        None,
    );
    b.call(b.auth.clone().revoke_token(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Password change request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordIn {
    /// The current password.
    pub old_password: String,
    /// 8–1024 characters, as at registration.
    pub new_password: String,
}

/// Changes the caller's password. Every other token of theirs is revoked
/// at once, on every replica; this request's token stays. The new
/// password follows registration's rules; a wrong old password answers as
/// a failed login does, and counts toward the same throttle.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordIn,
    security(("token" = [])),
    extensions(("x-route" = json!({"limited": true}))),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Incorrect old password or invalid fields", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 422, description = "An account stored before personal data was sealed: the operator must upgrade the store first", body = Detail),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Detail),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    body: Result<JsonObject, ApiError>,
) -> Result<StatusCode, ApiError> {
    let b = &state.backends;
    let (old_password, new_password) = caller
        .read_body(b, body, |body| {
            let mut f = Fields::new(body);
            let (old, new) = (f.string("old_password"), f.string("new_password"));
            f.finish(old.zip(new))
        })
        .await?;
    let request = ChangePasswordRequest {
        token: caller.token,
        old_password,
        new_password,
    };
    let request = client.tag(b.request(request, None));
    b.call(b.auth.clone().change_password(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}
