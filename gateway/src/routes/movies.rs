//! Movies: list, add, detail.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::catalog::{AddMovieRequest, GetMovieRequest, ListMoviesRequest, Movie};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::backends::RateLimitFields;
use crate::error::ApiError;
use crate::extract::{Fields, JsonObject};
use crate::list_cache::CachedList;
use crate::pagination::{ListQuery, Paginated};
use crate::routes::{Caller, Detail, FieldErrors, IdempotencyKey, absolute_url};

/// The routes of this module, each declared once: the router and the
/// OpenAPI document both come from it.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_movies, add_movie))
        .routes(routes!(get_movie))
}

/// A movie in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovieOut {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
}

/// A movie with its ratings' statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovieDetailOut {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
    /// The id of the user who added it.
    pub added_by: i64,
    /// How many ratings it has.
    pub rating_count: i64,
    /// The mean rating; null when unrated.
    pub rating_average: Option<f64>,
}

/// A new movie.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MovieIn {
    /// 1–200 characters.
    pub title: String,
    /// 1–200 characters.
    pub director: String,
}

/// A movie a find lists: with its statistics and score.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundMovieOut {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
    /// How many ratings it has.
    pub rating_count: i64,
    /// The mean rating; null when unrated.
    pub rating_average: Option<f64>,
    /// The Bayesian average (IMDb's weighted rating, see README); null
    /// while nothing at all is rated.
    pub score: Option<f64>,
}

/// A cursor page (DRF's `CursorPagination`): no count. (No other field
/// either, as the schema says: a page with a count is not one.)
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorPage<R> {
    /// The next page, if any.
    pub next: Option<String>,
    /// The previous page, if any.
    pub previous: Option<String>,
    /// The rows of this page.
    pub results: R,
}

/// A find's answer: a plain array, a page when `limit` is given, or a
/// cursor page when `cursor` is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FoundList {
    /// Without `limit` or `cursor`.
    All(Vec<FoundMovieOut>),
    /// With `limit` (and `offset`).
    Page(Paginated<Vec<FoundMovieOut>>),
    /// With `cursor`.
    Cursor(CursorPage<Vec<FoundMovieOut>>),
}

/// What `GET /api/auth/movies` answers, as the OpenAPI document declares
/// it: the list as it always was (a plain array, or a page), or a find's
/// answer (a plain array, a page, or a cursor page, of movies with their
/// statistics). `anyOf`, not `oneOf`: a page of found movies is also a
/// page of movies, and an empty list is both.
pub struct MoviesAnswer;

impl utoipa::PartialSchema for MoviesAnswer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        utoipa::openapi::schema::AnyOfBuilder::new()
            .item(Ref::from_schema_name(MovieList::name()))
            .item(Ref::from_schema_name(FoundList::name()))
            .description(Some(
                "The movies: without find parameters a plain array, or a page with `limit`; \
                 with them, the same of found movies (with their statistics), or a cursor \
                 page with `cursor`.",
            ))
            .into()
    }
}

impl ToSchema for MoviesAnswer {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((MovieList::name().into(), MovieList::schema()));
        schemas.push((FoundList::name().into(), FoundList::schema()));
        <MovieList as ToSchema>::schemas(schemas);
        <FoundList as ToSchema>::schemas(schemas);
    }
}

/// The movie list: a plain array, or a page when `limit` is given.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MovieList {
    /// Without `limit`.
    All(Vec<MovieOut>),
    /// With `limit` (and `offset`).
    Page(Paginated<Vec<MovieOut>>),
}

fn movie_out(m: Movie) -> MovieOut {
    MovieOut {
        id: m.id,
        title: m.title,
        director: m.director,
    }
}

/// The parameters of a find, as the OpenAPI document declares them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "declares the parameters; never built")]
pub struct FindParams {
    /// DRF's `SearchFilter`: terms split on whitespace and commas; each
    /// must be in the title or the director (case- and accent-insensitive).
    search: Option<String>,
    /// DRF's `OrderingFilter`: comma-separated fields of `id`, `title`,
    /// `director`, `rating_count`, `rating_average`, `score`; `-` for
    /// descending; unknown fields ignored; ties by id.
    ordering: Option<String>,
    /// Only movies with at least this many ratings.
    #[param(minimum = 0)]
    min_ratings: Option<i64>,
    /// DRF's `CursorPagination`: empty for the first page, then the
    /// `next`/`previous` links' cursors; `limit` movies a page (100).
    cursor: Option<String>,
}

/// The find parameters: any of them makes a list a find.
const FIND_PARAMS: [&str; 4] = ["search", "ordering", "min_ratings", "cursor"];

/// Every movie by id ascending; `?limit=L&offset=O` paginates. With any of
/// `search`, `ordering`, `min_ratings` or `cursor` it is a find (see
/// README, "Finding movies"): each movie also has `rating_count`,
/// `rating_average` and `score`; without them the answer is as it always
/// was.
#[utoipa::path(get, path = "/api/auth/movies", tag = "movies", security(("token" = [])),
    params(crate::pagination::Page, FindParams),
    responses(
        (status = 200, description = "The movies", body = MoviesAnswer),
        (status = 400, description = "A min_ratings that is not a whole number", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 404, description = "A cursor that no answer gave for this ordering", body = Detail),
    ))]
pub async fn list_movies(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(query.as_deref());
    if FIND_PARAMS.iter().any(|p| q.get(p).is_some()) {
        return Ok(Json(find_movies(&state, &caller, &q).await?).into_response());
    }
    let key = (q.limit, if q.limit.is_some() { q.offset } else { 0 });
    let kept = state.movie_lists.get(&key);
    let b = &state.backends;
    let message = ListMoviesRequest {
        limit: key.0,
        offset: key.1,
        if_none_match: kept.as_ref().map(|k| k.etag.clone()).unwrap_or_default(),
        ..ListMoviesRequest::default()
    };
    let answer = b
        .read(|| {
            let (mut catalog, request) =
                (b.catalog.clone(), b.request(message.clone(), Some(&caller)));
            async move { catalog.list_movies(request).await }
        })
        .await?;
    let list = match kept {
        Some(kept) if answer.not_modified && answer.etag == kept.etag => kept,
        _ if answer.not_modified => {
            return Err(ApiError::Grpc(tonic::Status::internal(
                "catalog-service answered not_modified to a tag it was not sent",
            )));
        }
        _ => {
            let rows: Vec<MovieOut> = answer.movies.into_iter().map(movie_out).collect();
            let list = Arc::new(CachedList {
                etag: answer.etag,
                count: answer.count,
                results: serde_json::value::to_raw_value(&rows).expect("movies always serialize"),
                results_tag: Default::default(),
            });
            state.movie_lists.put(key, list.clone());
            list
        }
    };
    if q.limit.is_some() {
        let base = absolute_url(&state, "/api/auth/movies");
        let page = q.page(&base, list.count, &*list.results);
        let body = Bytes::from(serde_json::to_vec(&page).expect("pages always serialize"));
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    // The whole list: its tag was made once, when it was kept.
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ETAG, list.results_etag()),
    ];
    Ok((headers, list.results_body()).into_response())
}

/// Adds a movie; the caller becomes its `added_by`.
#[utoipa::path(post, path = "/api/auth/movies", tag = "movies", security(("token" = [])),
    request_body = MovieIn,
    extensions(("x-route" = json!({"keyed": true, "quota": true}))),
    responses(
        (status = 201, description = "Added", body = MovieOut),
        (status = 400, description = "Invalid fields", body = FieldErrors),
        (status = 401, description = "Missing or invalid token", body = Detail),
    ))]
pub async fn add_movie(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: Result<JsonObject, ApiError>,
) -> Result<(StatusCode, RateLimitFields, Json<MovieOut>), ApiError> {
    let b = &state.backends;
    let (title, director) = caller
        .read_body(b, body, |body| {
            let mut f = Fields::new(body);
            let (title, director) = (f.string("title"), f.string("director"));
            f.finish(title.zip(director))
        })
        .await?;
    let request = key.attach(b.request(AddMovieRequest { title, director }, Some(&caller)));
    let (limit, movie) = b.write(b.catalog.clone().add_movie(request)).await?;
    Ok((StatusCode::CREATED, limit, Json(movie_out(movie.into()))))
}

/// A find: search, threshold, ordering, by offset or by cursor.
async fn find_movies(
    state: &AppState,
    caller: &Caller,
    q: &ListQuery,
) -> Result<FoundList, ApiError> {
    // A whole number from 0 to 2^63 - 1, as the document declares it.
    let min_ratings = match q.get("min_ratings").map(str::trim) {
        None | Some("") => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| ApiError::field("min_ratings", "A valid integer is required."))?,
    };
    let cursor = q.get("cursor").map(str::to_owned);
    let message = ListMoviesRequest {
        limit: q.limit,
        offset: if q.limit.is_some() { q.offset } else { 0 },
        search: q.get("search").unwrap_or_default().to_owned(),
        ordering: q.get("ordering").unwrap_or_default().to_owned(),
        min_ratings,
        cursor: cursor.clone(),
        find: true,
        ..ListMoviesRequest::default()
    };
    let b = &state.backends;
    let answer = b
        .read(|| {
            let (mut catalog, request) =
                (b.catalog.clone(), b.request(message.clone(), Some(caller)));
            async move { catalog.list_movies(request).await }
        })
        .await
        .map_err(|e| match e {
            // The only thing a find does not find: the cursor.
            ApiError::Grpc(s) if s.code() == tonic::Code::NotFound => {
                ApiError::detail(StatusCode::NOT_FOUND, "Invalid cursor")
            }
            e => e,
        })?;
    let rows: Vec<FoundMovieOut> = answer
        .found
        .into_iter()
        .map(|f| {
            let m = f.movie.unwrap_or_default();
            FoundMovieOut {
                id: m.id,
                title: m.title,
                director: m.director,
                rating_count: f.rating_count,
                rating_average: f.rating_average,
                score: f.score,
            }
        })
        .collect();
    let base = absolute_url(state, "/api/auth/movies");
    Ok(if cursor.is_some() {
        let link = |c: String| (!c.is_empty()).then(|| q.cursor_url(&base, &c));
        FoundList::Cursor(CursorPage {
            next: link(answer.next_cursor),
            previous: link(answer.previous_cursor),
            results: rows,
        })
    } else if q.limit.is_some() {
        FoundList::Page(q.page(&base, answer.count, rows))
    } else {
        FoundList::All(rows)
    })
}

/// One movie with its statistics.
#[utoipa::path(get, path = "/api/auth/movies/{id}", tag = "movies", security(("token" = [])),
    params(("id" = i64, Path, description = "The movie's id")),
    responses(
        (status = 200, description = "The movie", body = MovieDetailOut),
        (status = 401, description = "Missing or invalid token", body = Detail),
        (status = 404, description = "No such movie", body = Detail),
    ))]
pub async fn get_movie(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MovieDetailOut>, ApiError> {
    // Django's `<int:pk>` matches digits only: anything else is not a URL of ours.
    let id: i64 = id
        .parse()
        .ok()
        .filter(|_| id.bytes().all(|c| c.is_ascii_digit()))
        .ok_or_else(ApiError::not_found)?;
    let b = &state.backends;
    let m = b
        .read(|| {
            let (mut catalog, request) = (
                b.catalog.clone(),
                b.request(GetMovieRequest { id }, Some(&caller)),
            );
            async move { catalog.get_movie(request).await }
        })
        .await?;
    Ok(Json(MovieDetailOut {
        id: m.id,
        title: m.title,
        director: m.director,
        added_by: m.added_by,
        rating_count: m.rating_count,
        rating_average: m.rating_average,
    }))
}
