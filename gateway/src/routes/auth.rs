//! Register, login, logout, logout-all, and the caller's profile.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proto::auth::{
    EraseAccountRequest, GetAccountRequest, LoginRequest, LogoutAllRequest, LogoutRequest,
    RegisterRequest, Session,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::client::Client;
use crate::error::ApiError;
use crate::extract::{Fields, JsonObject};
use crate::routes::{Caller, Detail, FieldErrors, IdempotencyKey, UserOut, rfc3339};

/// The routes of this module, each declared once: the router and the
/// OpenAPI document both come from it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(me))
        .routes(routes!(erase))
}

/// Registration request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterIn {
    /// 1–150 letters, digits and `@.+-_`; unique case-insensitively.
    pub username: String,
    /// A valid address.
    pub email: String,
    /// 8–1024 characters.
    pub password: String,
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginIn {
    /// The username (any case).
    pub username: String,
    /// The password.
    pub password: String,
    /// A name for the new token, shown in `/api/auth/tokens` (at most 64
    /// characters; optional, and ignored by older servers).
    pub name: Option<String>,
}

/// A user and a fresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    /// The user.
    pub user: UserOut,
    /// 64 hex characters: send as `Authorization: Token <token>`.
    pub token: String,
    /// When the token expires (RFC 3339).
    pub expiry: String,
}

/// An answer with a `Cache-Control` of its own.
pub struct CacheControl<T, const POLICY: u8>(pub T);

/// An answer that carries a token or a profile: `Cache-Control: no-store`,
/// so that no cache on the way keeps it.
pub type NoStore<T> = CacheControl<T, 0>;

/// A personal answer that may be revalidated (it has an ETag):
/// `Cache-Control: private`, so that no shared cache keeps it.
pub type Private<T> = CacheControl<T, 1>;

impl<T: axum::response::IntoResponse, const POLICY: u8> axum::response::IntoResponse
    for CacheControl<T, POLICY>
{
    fn into_response(self) -> axum::response::Response {
        let mut response = self.0.into_response();
        let policy = if POLICY == 0 { "no-store" } else { "private" };
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static(policy),
        );
        response
    }
}

fn session_out(s: Session) -> SessionOut {
    let user = s.user.unwrap_or_default();
    let expiry = rfc3339(s.expiry).map(|(_, text)| text).unwrap_or_default();
    SessionOut {
        user: UserOut {
            id: user.id,
            username: user.username,
            email: user.email,
        },
        token: s.token,
        expiry,
    }
}

/// Creates a user and returns it with a first token.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterIn,
    extensions(("x-route" = json!({"limited": true, "keyed": true}))),
    responses(
        (status = 200, description = "Registered", body = SessionOut),
        (status = 400, description = "Invalid or taken fields", body = FieldErrors),
        (status = 429, description = "Too many from this address; see Retry-After", body = Detail),
    ))]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    key: IdempotencyKey,
    JsonObject(body): JsonObject,
) -> Result<NoStore<Json<SessionOut>>, ApiError> {
    let mut f = Fields::new(&body);
    let (username, email, password) = (
        f.string("username"),
        f.string("email"),
        f.string("password"),
    );
    let (username, email, password) = f.finish(
        username
            .zip(email)
            .zip(password)
            .map(|((u, e), p)| (u, e, p)),
    )?;
    let b = &state.backends;
    let request = key.attach(client.tag(b.request(
        RegisterRequest {
            username,
            email,
            password,
        },
        None,
    )));
    let session = b.call(b.auth.clone().register(request)).await?;
    Ok(CacheControl(Json(session_out(session.into()))))
}

/// Returns a new token for a correct username and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginIn,
    extensions(("x-route" = json!({"limited": true}))),
    responses(
        (status = 200, description = "Logged in", body = SessionOut),
        (status = 400, description = "Incorrect credentials or invalid fields", body = FieldErrors),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Detail),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    JsonObject(body): JsonObject,
) -> Result<NoStore<Json<SessionOut>>, ApiError> {
    let mut f = Fields::new(&body);
    let (username, password) = (f.string("username"), f.string("password"));
    let name = f.optional_string("name");
    let (username, (password, name)) = f.finish(username.zip(password.zip(name)))?;
    let b = &state.backends;
    let request = client.tag(b.request(
        LoginRequest {
            username,
            password,
            name: name.unwrap_or_default(),
        },
        None,
    ));
    let session = b.call(b.auth.clone().login(request)).await?;
    Ok(CacheControl(Json(session_out(session.into()))))
}

/// Revokes the token of this request.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("token" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    let b = &state.backends;
    let request = b.request(
        LogoutRequest {
            token: caller.token,
        },
        None,
    );
    b.call(b.auth.clone().logout(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every token of the user of this request.
#[utoipa::path(post, path = "/api/auth/logoutall", tag = "auth", security(("token" = [])),
    responses(
        (status = 204, description = "All revoked"),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let b = &state.backends;
    let request = b.request(
        LogoutAllRequest {
            token: caller.token,
        },
        None,
    );
    b.call(b.auth.clone().logout_all(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile, named as Django's user model names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountOut {
    /// Positive, unique, increasing.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// When the account was created (RFC 3339, UTC, microseconds).
    pub date_joined: String,
}

/// The caller's own profile. Personal data: answered `no-store`.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("token" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = AccountOut),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<NoStore<Json<AccountOut>>, ApiError> {
    Ok(CacheControl(Json(account(&state, &caller).await?)))
}

/// The caller's profile (`/api/auth/me`, and the export's).
pub async fn account(state: &AppState, caller: &Caller) -> Result<AccountOut, ApiError> {
    let b = &state.backends;
    let account = b
        .read(|| {
            let message = GetAccountRequest {
                token: caller.token.clone(),
            };
            let (mut auth, request) = (b.auth.clone(), b.request(message, None));
            async move { auth.get_account(request).await }
        })
        .await?;
    let user = account.user.unwrap_or_default();
    let joined = rfc3339(account.date_joined).map(|(_, text)| text);
    Ok(AccountOut {
        id: user.id,
        username: user.username,
        email: user.email,
        date_joined: joined.unwrap_or_default(),
    })
}

/// Erasure request: the caller confirms with their password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EraseIn {
    /// The caller's password.
    pub password: String,
}

/// Erases the caller's account, for good. At once, on every replica: every
/// token is refused, the key their personal data was sealed under is
/// destroyed (what the log holds of them is noise from then on), the
/// username is free to register again, and the login throttle forgets
/// them. Their ratings stay in the averages and the movies they added
/// stay, linked to an id that no longer names anyone. A wrong password
/// answers as a login's would, and counts toward the same throttle.
#[utoipa::path(post, path = "/api/auth/me/erase", tag = "auth", request_body = EraseIn,
    security(("token" = [])),
    extensions(("x-route" = json!({"limited": true}))),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = "Incorrect password or invalid fields", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 422, description = "An account stored before personal data was sealed: the operator must upgrade the store first", body = Detail),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Detail),
    ))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    JsonObject(body): JsonObject,
) -> Result<StatusCode, ApiError> {
    let mut f = Fields::new(&body);
    let password = f.string("password");
    let password = f.finish(password)?;
    let b = &state.backends;
    let request = EraseAccountRequest {
        token: caller.token,
        password,
    };
    let request = client.tag(b.request(request, None));
    b.call(b.auth.clone().erase_account(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}
