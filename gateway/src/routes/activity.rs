//! The caller's own history, from both services, newest first.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::pagination::{ListQuery, Paginated};
use crate::routes::{Caller, Detail, absolute_url, rfc3339};

/// The routes of this module, each declared once: the router and the
/// OpenAPI document both come from it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_activity))
        .routes(routes!(my_export))
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// The account was created.
    Registered,
    /// A token was issued (registration issues the first one).
    LoggedIn,
    /// One token was revoked.
    LoggedOut,
    /// Every token was revoked.
    LoggedOutAll,
    /// Logins were refused for a while after failed attempts (noted at
    /// most once a minute).
    Throttled,
    /// A wrong password was given (a login, a password change, an erasure).
    LoginFailed,
    /// The password changed, and every other token was revoked.
    PasswordChanged,
    /// A token was revoked from another session (`token` says which).
    TokenRevoked,
    /// A token's expiry moved (auto-refresh; at most one a day per token).
    TokenRefreshed,
    /// The user added a movie.
    MovieAdded,
    /// The user rated a movie.
    Rated,
}

/// A movie an entry is about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivityMovie {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
}

/// One entry of a user's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivityOut {
    /// When it was stored (RFC 3339, UTC, microseconds).
    pub time: String,
    /// What happened.
    pub kind: ActivityKind,
    /// The movie added or rated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub movie: Option<ActivityMovie>,
    /// The rating given (`rated` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<i32>,
    /// The client's address (logins, failed logins, throttles), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The client's `User-Agent`, truncated and sanitised, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The id of the token it is about (as `/api/auth/tokens` lists it):
    /// logins, logouts, revocations and refreshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The history: a plain array, or a page when `limit` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ActivityList {
    /// Without `limit`.
    All(Vec<ActivityOut>),
    /// With `limit` (and `offset`).
    Page(Paginated<Vec<ActivityOut>>),
}

/// An entry with its time as a sortable number.
struct Entry {
    micros: i64,
    out: ActivityOut,
}

fn entry(time: Option<proto::Timestamp>, kind: ActivityKind) -> Entry {
    let (at, text) = rfc3339(time).unwrap_or_default();
    Entry {
        micros: at.timestamp_micros(),
        out: ActivityOut {
            time: text,
            kind,
            movie: None,
            rating: None,
            address: None,
            user_agent: None,
            token: None,
        },
    }
}

fn account_entry(a: proto::auth::Activity) -> Option<Entry> {
    use proto::auth::ActivityKind as K;
    let kind = match a.kind() {
        K::Registered => ActivityKind::Registered,
        K::LoggedIn => ActivityKind::LoggedIn,
        K::LoggedOut => ActivityKind::LoggedOut,
        K::LoggedOutAll => ActivityKind::LoggedOutAll,
        K::Throttled => ActivityKind::Throttled,
        K::LoginFailed => ActivityKind::LoginFailed,
        K::PasswordChanged => ActivityKind::PasswordChanged,
        K::TokenRevoked => ActivityKind::TokenRevoked,
        K::TokenRefreshed => ActivityKind::TokenRefreshed,
        K::Unspecified => return None,
    };
    let mut e = entry(a.time, kind);
    let some = |text: String| (!text.is_empty()).then_some(text);
    e.out.address = some(a.address);
    e.out.user_agent = some(a.user_agent);
    e.out.token = some(a.token_id);
    Some(e)
}

fn catalog_entry(a: proto::catalog::Activity) -> Option<Entry> {
    use proto::catalog::ActivityKind as K;
    let (kind, rating) = match a.kind() {
        K::MovieAdded => (ActivityKind::MovieAdded, None),
        K::Rated => (ActivityKind::Rated, Some(a.rating)),
        K::Unspecified => return None,
    };
    let mut e = entry(a.time, kind);
    e.out.movie = Some(ActivityMovie {
        id: a.movie,
        title: a.title,
    });
    e.out.rating = rating;
    Some(e)
}

/// The caller's own history, newest first: registration, logins (with the
/// client's address and `User-Agent`), failed and throttled logins,
/// logouts, tokens revoked and refreshed, password changes, movies added,
/// ratings given. Never another user's,
/// never a token. `?limit&offset` paginate. Personal: `Cache-Control:
/// private`.
#[utoipa::path(get, path = "/api/auth/me/activity", tag = "auth", security(("token" = [])),
    params(crate::pagination::Page),
    responses(
        (status = 200, description = "The caller's history", body = ActivityList),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn my_activity(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<crate::routes::auth::Private<Json<ActivityList>>, ApiError> {
    let q = ListQuery::parse(query.as_deref());
    let offset = if q.limit.is_some() { q.offset } else { 0 };
    // Each service's newest `offset + limit` entries hold the page (0: all).
    let newest = q.limit.map_or(0, |l| l.saturating_add(offset));
    let (count, entries) = history(&state, &caller, newest).await?;
    let results = entries
        .into_iter()
        .skip(offset as usize)
        .take(q.limit.map_or(usize::MAX, |l| l as usize))
        .map(|e| e.out)
        .collect();
    Ok(crate::routes::auth::CacheControl(Json(match q.limit {
        Some(_) => {
            let base = absolute_url(&state, "/api/auth/me/activity");
            ActivityList::Page(q.page(&base, count, results))
        }
        None => ActivityList::All(results),
    })))
}

/// The caller's newest `newest` entries of each service (0: all), merged
/// newest first, and how many there are in all.
async fn history(
    state: &AppState,
    caller: &Caller,
    newest: u32,
) -> Result<(u64, Vec<Entry>), ApiError> {
    let b = &state.backends;
    let account = b.read(|| {
        let message = proto::auth::ListActivityRequest {
            token: caller.token.clone(),
            newest,
        };
        let (mut auth, request) = (b.auth.clone(), b.request(message, None));
        async move { auth.list_activity(request).await }
    });
    let catalog = b.read(|| {
        let message = proto::catalog::ListActivityRequest { newest };
        let (mut catalog, request) = (b.catalog.clone(), b.request(message, Some(caller)));
        async move { catalog.list_activity(request).await }
    });
    let (account, catalog) = tokio::try_join!(account, catalog)?;
    let count = account.count + catalog.count;
    let mut entries: Vec<Entry> = account
        .activities
        .into_iter()
        .filter_map(account_entry)
        .chain(catalog.activities.into_iter().filter_map(catalog_entry))
        .collect();
    // Stable: at one instant, account entries stay before catalog ones.
    entries.sort_by_key(|e| std::cmp::Reverse(e.micros));
    Ok((count, entries))
}

/// A live token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    /// When it was issued (RFC 3339, UTC, microseconds).
    pub issued: String,
    /// When it stops being valid.
    pub expiry: String,
    /// Whether it is the token of this request.
    pub current: bool,
    /// Its id, name, and where it was issued to (as `/api/auth/tokens`).
    pub id: String,
    /// The name given at login, if any.
    pub name: Option<String>,
    /// The client's address at issue, when known.
    pub address: Option<String>,
    /// The client's `User-Agent` at issue, when known.
    pub user_agent: Option<String>,
}

impl From<crate::routes::sessions::LiveTokenOut> for TokenOut {
    fn from(t: crate::routes::sessions::LiveTokenOut) -> Self {
        Self {
            issued: t.created,
            expiry: t.expiry,
            current: t.current,
            id: t.id,
            name: t.name,
            address: t.address,
            user_agent: t.user_agent,
        }
    }
}

/// Everything the platform holds about the caller, in one document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportOut {
    /// The profile.
    pub profile: crate::routes::auth::AccountOut,
    /// The live tokens, oldest first (never a token itself).
    pub tokens: Vec<TokenOut>,
    /// The whole history, newest first (as `/api/auth/me/activity`).
    pub activity: Vec<ActivityOut>,
    /// The movies the caller added, newest first (`movie_added` entries).
    pub movies: Vec<ActivityOut>,
    /// The ratings the caller gave, newest first (`rated` entries).
    pub ratings: Vec<ActivityOut>,
}

/// Everything the platform holds about the caller (GDPR art. 15 and 20):
/// profile, live tokens (never a secret), the whole history, the movies
/// they added and their ratings, as one JSON document. Personal data:
/// answered `no-store`.
#[utoipa::path(get, path = "/api/auth/me/export", tag = "auth", security(("token" = [])),
    responses(
        (status = 200, description = "The caller's data", body = ExportOut),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn my_export(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<crate::routes::auth::NoStore<Json<ExportOut>>, ApiError> {
    let b = &state.backends;
    let tokens = b.read(|| {
        let message = proto::auth::ListTokensRequest {
            token: caller.token.clone(),
            ..Default::default()
        };
        let (mut auth, request) = (b.auth.clone(), b.request(message, None));
        async move { auth.list_tokens(request).await }
    });
    let (profile, tokens, (_, entries)) = tokio::try_join!(
        crate::routes::auth::account(&state, &caller),
        tokens,
        history(&state, &caller, 0)
    )?;
    let tokens = tokens
        .tokens
        .into_iter()
        .map(|t| TokenOut::from(crate::routes::sessions::LiveTokenOut::from(t)))
        .collect();
    let activity: Vec<ActivityOut> = entries.into_iter().map(|e| e.out).collect();
    let of = |kind| {
        activity
            .iter()
            .filter(|a| a.kind == kind)
            .cloned()
            .collect()
    };
    Ok(crate::routes::auth::CacheControl(Json(ExportOut {
        profile,
        tokens,
        movies: of(ActivityKind::MovieAdded),
        ratings: of(ActivityKind::Rated),
        activity,
    })))
}
