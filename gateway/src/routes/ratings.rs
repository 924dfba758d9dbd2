//! Ratings: list (optionally of one movie), rate.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use proto::catalog::{
    ListRatingsRequest, ListRatingsResponse, RateMovieRequest, Rating, RatingsCut,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::backends::RateLimitFields;
use crate::error::ApiError;
use crate::extract::{Fields, JsonObject};
use crate::pagination::{ListQuery, Paginated};
use crate::routes::{Caller, Detail, FieldErrors, IdempotencyKey, absolute_url};

/// The routes of this module, each declared once: the router and the
/// OpenAPI document both come from it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_ratings, rate_movie))
}

/// A rating.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingOut {
    /// Its id.
    pub id: i64,
    /// The movie rated.
    pub movie: i64,
    /// 1..=5.
    pub rating: i32,
}

/// A new rating.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RatingIn {
    /// The movie's id.
    pub movie: i64,
    /// An integer from 1 to 5.
    pub rating: i64,
}

/// The rating list: a plain array, or a page when `limit` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RatingList {
    /// Without `limit`.
    All(Vec<RatingOut>),
    /// With `limit` (and `offset`).
    Page(Paginated<Vec<RatingOut>>),
}

fn rating_out(r: Rating) -> RatingOut {
    RatingOut {
        id: r.id,
        movie: r.movie,
        rating: r.rating,
    }
}

/// Every user's ratings by id ascending; `?movie=ID` filters, `?limit&offset` paginate.
#[utoipa::path(get, path = "/api/auth/rating", tag = "ratings", security(("token" = [])),
    params(
        ("movie" = Option<i64>, Query, description = "Only this movie's ratings"),
        crate::pagination::Page,
    ),
    responses(
        (status = 200, description = "The ratings", body = RatingList),
        (status = 400, description = "movie is not a number", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn list_ratings(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(query.as_deref());
    let movie = match q.get("movie").map(str::trim).filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(
            m.parse::<i64>()
                .map_err(|_| ApiError::field("movie", "Enter a number."))?,
        ),
    };
    if q.limit.is_none() && movie.is_none() {
        return stream_all(state, caller).await;
    }
    let b = &state.backends;
    let message = ListRatingsRequest {
        movie,
        limit: q.limit,
        offset: if q.limit.is_some() { q.offset } else { 0 },
        ..Default::default()
    };
    let page = b
        .read(|| {
            let (mut catalog, request) =
                (b.catalog.clone(), b.request(message.clone(), Some(&caller)));
            async move { catalog.list_ratings(request).await }
        })
        .await?;
    let results: Vec<RatingOut> = page.ratings.into_iter().map(rating_out).collect();
    Ok(Json(if q.limit.is_some() {
        let base = absolute_url(&state, "/api/auth/rating");
        RatingList::Page(q.page(&base, page.count, results))
    } else {
        RatingList::All(results)
    })
    .into_response())
}

/// One page of the whole list, by cursor, at `cut` (the list as it is now
/// when `None`).
async fn page_after(
    state: &AppState,
    caller: &Caller,
    after: i64,
    cut: Option<RatingsCut>,
) -> Result<ListRatingsResponse, ApiError> {
    let b = &state.backends;
    let message = ListRatingsRequest {
        limit: Some(state.list_page),
        after_id: Some(after),
        cut,
        ..Default::default()
    };
    b.read(|| {
        let (mut catalog, request) = (b.catalog.clone(), b.request(message.clone(), Some(caller)));
        async move { catalog.list_ratings(request).await }
    })
    .await
}

/// Appends `ratings` to a JSON array being written (`[` before the first).
fn write_ratings(out: &mut Vec<u8>, ratings: Vec<Rating>, first: &mut bool) {
    for r in ratings {
        out.push(if std::mem::take(first) { b'[' } else { b',' });
        serde_json::to_writer(&mut *out, &rating_out(r)).expect("a rating serializes");
    }
}

/// The whole rating list, streamed page by page (`GATEWAY_LIST_PAGE`
/// ratings at a time) instead of built in memory: every page is read at the cut of
/// the first, so the pages make one list even if they come from different
/// replicas while ratings are being added. Its tag names the cut's content
/// (the same on every replica), so it is known before the body is sent.
/// Byte for byte what the list built whole would be. A failure after the
/// first page can only cut the answer short (the connection is closed).
async fn stream_all(state: AppState, caller: Caller) -> Result<Response, ApiError> {
    let first = page_after(&state, &caller, 0, None).await?;
    let Some(cut) = first.cut.clone() else {
        return Err(ApiError::from_call(tonic::Status::internal(
            "the catalog sent no cut with the rating list",
        )));
    };
    let etag = HeaderValue::from_str(&format!("\"{}\"", hex::encode(&cut.tag)))
        .map_err(|_| ApiError::from_call(tonic::Status::internal("a malformed cut tag")))?;
    enum Next {
        Page(ListRatingsResponse),
        After(i64),
        Close,
        Done,
    }
    let context = (state, caller, cut, true);
    let body = futures_util::stream::unfold(
        (Next::Page(first), context),
        |(next, (state, caller, cut, mut first))| async move {
            let page = match next {
                Next::Done => return None,
                Next::Close => {
                    let close: &[u8] = if first { b"[]" } else { b"]" };
                    let chunk = Ok(Bytes::from_static(close));
                    return Some((chunk, (Next::Done, (state, caller, cut, first))));
                }
                Next::Page(page) => page,
                Next::After(after) => {
                    match page_after(&state, &caller, after, Some(cut.clone())).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::warn!(error = ?e, after, "rating list cut short");
                            let failed = Err(std::io::Error::other("the rating list failed"));
                            return Some((failed, (Next::Done, (state, caller, cut, first))));
                        }
                    }
                }
            };
            let next = match page.ratings.last() {
                Some(last) if page.ratings.len() >= state.list_page as usize => {
                    Next::After(last.id)
                }
                _ => Next::Close,
            };
            let mut out = Vec::with_capacity(page.ratings.len() * 40);
            write_ratings(&mut out, page.ratings, &mut first);
            Some((Ok(Bytes::from(out)), (next, (state, caller, cut, first))))
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, etag);
    Ok(response)
}

/// Rates a movie: once per user and movie, never one's own.
#[utoipa::path(post, path = "/api/auth/rating", tag = "ratings", security(("token" = [])),
    request_body = RatingIn,
    extensions(("x-route" = json!({"keyed": true, "quota": true}))),
    responses(
        (status = 201, description = "Rated", body = RatingOut),
        (status = 400, description = "Invalid rating or unknown movie", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 403, description = "Own movie, or rated already: \"You cant rate it \"", body = Detail),
    ))]
pub async fn rate_movie(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Result<JsonObject, ApiError>,
) -> Result<(StatusCode, RateLimitFields, Json<RatingOut>), ApiError> {
    let b = &state.backends;
    let (movie, rating) = caller
        .read_body(b, body, |body| {
            let mut f = Fields::new(body);
            let (movie, rating) = (f.primary_key("movie"), f.integer("rating"));
            f.finish(movie.zip(rating))
        })
        .await?;
    // Out of i32 range is out of 1..=5 as well; keep the sign for the message.
    let rating = rating.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let request = key.attach(b.request(RateMovieRequest { movie, rating }, Some(&caller)));
    let (limit, rating) = b.write(b.catalog.clone().rate_movie(request)).await?;
    Ok((StatusCode::CREATED, limit, Json(rating_out(rating.into()))))
}
