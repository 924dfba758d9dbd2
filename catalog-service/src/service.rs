//! The gRPC edge of the catalog: who is calling, requests parsed into domain
//! values, one command or query each, answers translated back. The rules are
//! in [`crate::domain`], the views in [`crate::read_model`], the error
//! mapping in [`crate::error`].

use std::sync::Arc;

use event_sourcing::decider;
use event_sourcing::idempotency::{self, Idempotent, Ran};
use event_sourcing::read_model::Projection;
use event_sourcing::read_model::history::Fact;
use event_store::ids::IdSequence;
use event_store::{EventStore, ids};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use platform::metrics::Stages;
use proto::catalog::catalog_service_server::CatalogService;
use proto::catalog::{Activity, ActivityKind};
use proto::catalog::{
    AddMovieRequest, AddMovieResponse, FoundMovie, GetMovieRequest, GetMovieResponse,
    ListActivityRequest, ListActivityResponse, ListMoviesRequest, ListMoviesResponse,
    ListRatingsRequest, ListRatingsResponse, Movie, RateMovieRequest, RateMovieResponse, Rating,
    SubscribeEventsRequest, SubscribeEventsResponse,
};
use tonic::{Request, Response, Status};

use crate::authenticated::Caller;
use crate::domain::{
    self, AddMovie, MOVIE_IDS_STREAM, MovieId, MovieRating, RATING_IDS_STREAM, RateMovie, RatingId,
    Text,
};
use crate::error::{CatalogError, Result};
use crate::read_model::finding::{Cursor, Ordering, Query, search_terms};
use crate::read_model::{
    CatalogView, Created, MovieListing, MovieRow, RatingRow, RatingsCut, Window,
};
use event_sourcing::read_model::ReadPoint;

/// Who may call SubscribeEvents (and the feed): the platform's one rule.
pub use platform::feed::Access as SubscribeAccess;

/// How many movies and ratings one user may add in a sliding window: at
/// most `writes` in any `window`. Counted from the read model (the writes
/// stored, by the time they were stored), so every replica counts the same
/// writes: the quota holds for the user across replicas, not per replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteQuota {
    /// Writes allowed per window; 0: no quota.
    pub writes: u32,
    /// The window.
    pub window: std::time::Duration,
}

impl WriteQuota {
    /// The IETF `RateLimit-Policy` field describing it.
    pub fn policy(&self) -> String {
        format!("\"writes\";q={};w={}", self.writes, self.window.as_secs())
    }
}

/// The `movies.catalog.v1.CatalogService` implementation.
pub struct CatalogGrpc {
    store: Arc<dyn EventStore>,
    view: Arc<Projection<CatalogView>>,
    movie_ids: IdSequence,
    rating_ids: IdSequence,
    subscribe: SubscribeAccess,
    quota: WriteQuota,
    /// `m` of the score (`CATALOG_SCORE_MIN_VOTES`).
    score_min_votes: u64,
    stages: Arc<Stages>,
}

/// What the catalog's answers are bound by: who may subscribe, the write
/// quota, and the votes a score weighs a movie's own mean by.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Who may call SubscribeEvents.
    pub subscribe: SubscribeAccess,
    /// The per-user write quota.
    pub quota: WriteQuota,
    /// `CATALOG_SCORE_MIN_VOTES`.
    pub score_min_votes: u64,
}

impl CatalogGrpc {
    /// Serves the catalog in `store`, whose events `view` follows (behind
    /// [`Authenticated`](crate::authenticated::Authenticated), which checks the callers);
    /// the steps of a rating are timed in `stages`.
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<Projection<CatalogView>>,
        policies: Policies,
        stages: Arc<Stages>,
    ) -> Self {
        Self {
            store,
            view,
            movie_ids: IdSequence::new(MOVIE_IDS_STREAM, "Movie"),
            rating_ids: IdSequence::new(RATING_IDS_STREAM, "Rating"),
            subscribe: policies.subscribe,
            quota: policies.quota,
            score_min_votes: policies.score_min_votes,
            stages,
        }
    }

    /// A find: the movies a search, threshold and ordering select, by
    /// offset or by cursor, each with its statistics and score.
    async fn find_movies(
        &self,
        request: &Request<ListMoviesRequest>,
    ) -> Result<ListMoviesResponse> {
        let r = request.get_ref();
        let query = Query {
            terms: search_terms(&r.search),
            ordering: Ordering::parse(&r.ordering),
            min_ratings: r.min_ratings,
        };
        let window = match &r.cursor {
            None => Window::Offset {
                limit: r.limit.map(|l| l as usize),
                offset: r.offset as usize,
            },
            Some(text) => Window::Cursor {
                cursor: match text.as_str() {
                    "" => None,
                    text => Some(
                        Cursor::decode(text, &query.ordering).ok_or(CatalogError::InvalidCursor)?,
                    ),
                },
                size: r.limit.map_or(CURSOR_PAGE, |l| l as usize),
            },
        };
        let view = self.view_for(request).await?;
        let scoring = view.movies.scoring(self.score_min_votes);
        let found = view.movies.find(&query, scoring, &window);
        let etag = view.movies.etag().to_vec();
        drop(view);
        let cursor_mode = r.cursor.is_some();
        Ok(ListMoviesResponse {
            movies: Vec::new(),
            found: found.items.into_iter().map(found_message).collect(),
            count: if cursor_mode { 0 } else { found.count as u64 },
            etag,
            not_modified: false,
            next_cursor: found.next.map(|c| c.encode()).unwrap_or_default(),
            previous_cursor: found.previous.map(|c| c.encode()).unwrap_or_default(),
        })
    }

    /// The view as of the read point [`Authenticated`](crate::authenticated::Authenticated)
    /// asked while it checked the caller (or, without one, as of now).
    async fn view_for<T>(
        &self,
        request: &Request<T>,
    ) -> Result<std::sync::RwLockReadGuard<'_, CatalogView>> {
        let point = match request.extensions().get::<ReadPoint>() {
            Some(point) => *point,
            None => self.view.read_point().await?,
        };
        Ok(self.view.read_at(point).await?)
    }

    /// A page of the whole rating list read by cursor: at the request's
    /// cut (waiting, bounded, until this replica has applied it), or at the
    /// list as it is now.
    async fn ratings_page(
        &self,
        r: &ListRatingsRequest,
        limit: Option<usize>,
    ) -> Result<ListRatingsResponse> {
        let given = r.cut.as_ref().map(cut_from_message).transpose()?;
        let view = match given {
            Some(cut) => {
                self.view.wait_for(cut.position).await?;
                self.view.read()
            }
            None => self.view.read_linearizable().await?,
        };
        let cut = given.unwrap_or_else(|| view.ratings_cut());
        let rows = view.ratings.at(
            &cut,
            RatingId(r.after_id.unwrap_or(0)),
            limit.unwrap_or(usize::MAX),
        );
        Ok(ListRatingsResponse {
            ratings: rows.into_iter().map(listed_rating_message).collect(),
            count: cut.count as u64,
            cut: Some(cut_message(&cut)),
        })
    }

    /// The user [`Authenticated`](crate::authenticated::Authenticated) checked this call's token for, before
    /// its message was decoded.
    fn caller<T>(&self, request: &Request<T>) -> Result<domain::UserId> {
        request
            .extensions()
            .get::<Caller>()
            .map(|c| c.0)
            .ok_or(CatalogError::NoCredentials)
    }

    fn check_service_key<T>(&self, request: &Request<T>) -> Result<()> {
        if self.subscribe.admits(request.metadata()) {
            Ok(())
        } else {
            Err(CatalogError::ServiceKeyRequired)
        }
    }

    /// Admits one more write of `user` under the quota, from what the
    /// store holds now (a linearizable read: writes through any replica
    /// count): the `RateLimit` field after it, or
    /// [`CatalogError::WriteQuota`]. Parallel writes of one user may each
    /// see the others not yet stored, so a burst can pass the quota by as
    /// many as it runs at once; the next is refused.
    async fn admit_write(&self, user: domain::UserId) -> Result<String> {
        let WriteQuota { writes, window } = self.quota;
        if writes == 0 {
            return Ok(String::new());
        }
        let now = chrono::Utc::now().timestamp_micros();
        let window_micros = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let since = now.saturating_sub(window_micros);
        let (count, oldest) =
            self.view
                .read_linearizable()
                .await?
                .writes_since(user, since, writes as usize);
        // Seconds until the oldest counted write leaves the window.
        let frees_in = oldest.map_or(0, |at| {
            let micros = at.saturating_add(window_micros).saturating_sub(now).max(0);
            (micros as u64).div_ceil(1_000_000).max(1)
        });
        if count >= writes as usize {
            return Err(CatalogError::WriteQuota {
                retry_after_secs: frees_in,
            });
        }
        let left = writes as usize - count - 1;
        let reset = if oldest.is_some() {
            frees_in
        } else {
            window.as_secs()
        };
        Ok(format!("\"writes\";r={left};t={reset}"))
    }

    /// `response` with the quota's `RateLimit-Policy` and `RateLimit`
    /// fields in its metadata (the gateway passes them on), when a write
    /// was counted.
    fn with_limit<T>(&self, mut response: Response<T>, limit: &str) -> Response<T> {
        type Value = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;
        let (policy, limit) = (self.quota.policy(), limit);
        if let (false, Ok(policy), Ok(limit)) = (
            limit.is_empty(),
            policy.parse::<Value>(),
            limit.parse::<Value>(),
        ) {
            let metadata = response.metadata_mut();
            metadata.insert(platform::RATELIMIT_POLICY_KEY, policy);
            metadata.insert(platform::RATELIMIT_KEY, limit);
        }
        response
    }

    /// The movie `created` names, as the view has it.
    fn movie_of(&self, created: Created) -> Result<MovieRow> {
        match created {
            Created::Movie(id) => self.view.read().movies.get(id).cloned(),
            Created::Rating(_) => return Err(CatalogError::KeyReused),
        }
        .ok_or(CatalogError::NotFound)
    }

    /// The rating `created` names, as the view has it.
    fn rating_of(&self, created: Created) -> Result<RatingRow> {
        match created {
            Created::Rating(id) => self.view.read().ratings.get(id),
            Created::Movie(_) => return Err(CatalogError::KeyReused),
        }
        .ok_or(CatalogError::CannotRate)
    }

    async fn add_movie(
        &self,
        user: domain::UserId,
        r: &AddMovieRequest,
        key: Option<&str>,
    ) -> Result<(MovieRow, String)> {
        let (title, director) = match (
            Text::parse("title", &r.title),
            Text::parse("director", &r.director),
        ) {
            (Ok(t), Ok(d)) => (t, d),
            (t, d) => {
                return Err(CatalogError::Invalid(
                    [t.err(), d.err()].into_iter().flatten().collect(),
                ));
            }
        };
        let key = key.map(|k| {
            Idempotent::new(
                &format!("movie:{user}"),
                k,
                &[title.as_str(), director.as_str()],
            )
        });
        // The `RateLimit` field after this write (none for a replay).
        let limit = std::sync::Mutex::new(String::new());
        let run = async {
            *limit.lock().expect("not poisoned") = self.admit_write(user).await?;
            let command = AddMovie {
                id: MovieId(self.movie_ids.next(&self.store).await?),
                title,
                director,
                added_by: user,
            };
            let done =
                decider::execute::<domain::Movie>(&*self.store, &command, key.as_ref()).await?;
            tracing::info!(movie = %command.id, "movie added");
            Ok::<_, CatalogError>(Ran {
                position: done.position,
                created: Created::Movie(command.id),
                answer: MovieRow {
                    id: command.id,
                    title: command.title.as_str().to_owned(),
                    director: command.director.as_str().to_owned(),
                    added_by: user,
                    rating_count: 0,
                    rating_sum: 0,
                    // Only the list compares it; this row only answers.
                    folded: Default::default(),
                },
            })
        };
        let stored = async |created| self.movie_of(created);
        let row = idempotency::once(&self.view, key.as_ref(), run, stored)
            .await?
            .into_inner();
        Ok((row, limit.into_inner().expect("not poisoned")))
    }

    async fn rate_movie(
        &self,
        user: domain::UserId,
        r: &RateMovieRequest,
        key: Option<&str>,
    ) -> Result<(RatingRow, String)> {
        let rating = domain::Rating::parse(r.rating)?;
        let key = key.map(|k| {
            Idempotent::new(
                &format!("rating:{user}"),
                k,
                &[&r.movie.to_string(), &rating.get().to_string()],
            )
        });
        // The `RateLimit` field after this write (none for a replay).
        let limit = std::sync::Mutex::new(String::new());
        let run = async {
            *limit.lock().expect("not poisoned") = self.admit_write(user).await?;
            let id = self.rating_ids.next(&self.store);
            let command = RateMovie {
                id: RatingId(self.stages.time("rate_allocate_id", id).await?),
                movie_id: MovieId(r.movie),
                user,
                rating,
            };
            let load = decider::load::<MovieRating>(&*self.store, &command);
            let loaded = self.stages.time("rate_load_movie", load).await?;
            let append = decider::execute_loaded::<MovieRating>(
                &*self.store,
                &command,
                loaded,
                key.as_ref(),
            );
            let done = self.stages.time("rate_append", append).await?;
            let applied = self.view.wait_for(done.position);
            self.stages.time("rate_apply_wait", applied).await?;
            tracing::info!(rating = %command.id, "movie rated");
            Ok::<_, CatalogError>(Ran {
                position: done.position,
                created: Created::Rating(command.id),
                answer: RatingRow {
                    id: command.id,
                    movie: command.movie_id,
                    user,
                    rating,
                },
            })
        };
        let stored = async |created| self.rating_of(created);
        let row = idempotency::once(&self.view, key.as_ref(), run, stored)
            .await?
            .into_inner();
        Ok((row, limit.into_inner().expect("not poisoned")))
    }
}

fn movie_message(m: MovieRow) -> Movie {
    Movie {
        id: m.id.0,
        title: m.title,
        director: m.director,
    }
}

/// A found movie: with its statistics and score.
fn found_message((m, score): (MovieRow, Option<f64>)) -> FoundMovie {
    FoundMovie {
        rating_count: m.rating_count as i64,
        rating_average: m.rating_average(),
        score,
        movie: Some(movie_message(m)),
    }
}

/// The default page size of a cursor page without `limit`.
const CURSOR_PAGE: usize = 100;

/// The caller's own rating, with its user.
fn rating_message(r: RatingRow) -> RateMovieResponse {
    Rating {
        user: r.user.0,
        ..listed_rating_message(r)
    }
    .into()
}

/// Anyone's rating, as a list shows it: who rated is not told (REST never
/// showed it either).
fn listed_rating_message(r: RatingRow) -> Rating {
    Rating {
        id: r.id.0,
        movie: r.movie.0,
        rating: i32::from(r.rating.get()),
        user: 0,
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    #[tracing::instrument(skip_all)]
    async fn add_movie(
        &self,
        request: Request<AddMovieRequest>,
    ) -> Result<Response<AddMovieResponse>, Status> {
        let user = self.caller(&request)?;
        let key = platform::idempotency_key(&request);
        let (movie, limit) = self.add_movie(user, request.get_ref(), key).await?;
        Ok(self.with_limit(Response::new(movie_message(movie).into()), &limit))
    }

    async fn get_movie(
        &self,
        request: Request<GetMovieRequest>,
    ) -> Result<Response<GetMovieResponse>, Status> {
        self.caller(&request)?;
        let m = self
            .view_for(&request)
            .await?
            .movies
            .get(MovieId(request.get_ref().id))
            .cloned()
            .ok_or(CatalogError::NotFound)?;
        Ok(Response::new(GetMovieResponse {
            rating_average: m.rating_average(),
            id: m.id.0,
            title: m.title,
            director: m.director,
            added_by: m.added_by.0,
            rating_count: m.rating_count as i64,
        }))
    }

    async fn list_movies(
        &self,
        request: Request<ListMoviesRequest>,
    ) -> Result<Response<ListMoviesResponse>, Status> {
        self.caller(&request)?;
        let r = request.get_ref();
        if r.find || r.cursor.is_some() {
            return Ok(Response::new(self.find_movies(&request).await?));
        }
        let listing = self.view_for(&request).await?.movies.listing(
            r.limit.map(|l| l as usize),
            r.offset as usize,
            &r.if_none_match,
        );
        Ok(Response::new(match listing {
            MovieListing::NotModified { etag, count } => ListMoviesResponse {
                count: count as u64,
                etag: etag.to_vec(),
                not_modified: true,
                ..ListMoviesResponse::default()
            },
            MovieListing::Page { etag, page } => ListMoviesResponse {
                movies: page.items.into_iter().map(movie_message).collect(),
                count: page.count as u64,
                etag: etag.to_vec(),
                ..ListMoviesResponse::default()
            },
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rate_movie(
        &self,
        request: Request<RateMovieRequest>,
    ) -> Result<Response<RateMovieResponse>, Status> {
        let user = self.caller(&request)?;
        let key = platform::idempotency_key(&request);
        let (rating, limit) = self.rate_movie(user, request.get_ref(), key).await?;
        Ok(self.with_limit(Response::new(rating_message(rating)), &limit))
    }

    async fn list_ratings(
        &self,
        request: Request<ListRatingsRequest>,
    ) -> Result<Response<ListRatingsResponse>, Status> {
        self.caller(&request)?;
        let r = request.get_ref();
        let limit = r.limit.map(|l| l as usize);
        if r.movie.is_none() && (r.after_id.is_some() || r.cut.is_some()) {
            return Ok(Response::new(self.ratings_page(r, limit).await?));
        }
        let view = self.view_for(&request).await?;
        let page = view
            .ratings
            .page(r.movie.map(MovieId), limit, r.offset as usize);
        Ok(Response::new(ListRatingsResponse {
            ratings: page.items.into_iter().map(listed_rating_message).collect(),
            count: page.count as u64,
            cut: r.movie.is_none().then(|| cut_message(&view.ratings_cut())),
        }))
    }

    async fn list_activity(
        &self,
        request: Request<ListActivityRequest>,
    ) -> Result<Response<ListActivityResponse>, Status> {
        let user = self.caller(&request)?;
        let newest = request.get_ref().newest;
        let view = self.view_for(&request).await?;
        let done = view.activity(user, (newest > 0).then_some(newest as usize));
        let activities = done
            .items
            .iter()
            .map(|d| activity_message(&view, d))
            .collect();
        Ok(Response::new(ListActivityResponse {
            activities,
            count: done.count as u64,
        }))
    }

    type SubscribeEventsStream = BoxStream<'static, Result<SubscribeEventsResponse, Status>>;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        self.check_service_key(&request)?;
        let from = request.get_ref().from_position;
        let events = self
            .store
            .subscribe_all(from)
            .filter(|e| std::future::ready(!e.as_ref().is_ok_and(ids::is_allocation)))
            .map(|e| match e {
                Ok(e) => {
                    let _span = event_store::trace::linked("forward", &e).map(|s| s.entered());
                    // Subscribers see every event in its current shape.
                    let (event_type, data_json) = crate::feed::current(&e).map_err(|why| {
                        tracing::error!(position = e.position, %why, "a stored event cannot be upcast");
                        Status::internal("a stored event cannot be read")
                    })?;
                    Ok(SubscribeEventsResponse {
                        position: e.position,
                        stream: e.stream,
                        version: e.version,
                        event_type,
                        event_id: e.id.to_string(),
                        data_json,
                        recorded_at: Some(proto::timestamp_micros(
                            e.recorded_at.timestamp_micros(),
                        )),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event subscription failed");
                    Err(Status::unavailable("event feed interrupted; resubscribe"))
                }
            });
        Ok(Response::new(events.boxed()))
    }
}

/// One thing a user did, as the API shows it: the movie's id and title,
/// and for a rating its value.
fn activity_message(view: &CatalogView, done: &Fact) -> Activity {
    let (kind, movie, rating) = match Created::of_code(done.what) {
        Created::Movie(id) => (ActivityKind::MovieAdded, id, 0),
        Created::Rating(id) => {
            let rating = view.ratings.get(id);
            (
                ActivityKind::Rated,
                rating.map_or(MovieId(0), |r| r.movie),
                rating.map_or(0, |r| i32::from(r.rating.get())),
            )
        }
    };
    Activity {
        time: Some(proto::timestamp_micros(done.at_micros)),
        kind: kind.into(),
        movie: movie.0,
        title: view
            .movies
            .get(movie)
            .map(|m| m.title.clone())
            .unwrap_or_default(),
        rating,
    }
}

fn cut_message(cut: &RatingsCut) -> proto::catalog::RatingsCut {
    proto::catalog::RatingsCut {
        position: cut.position,
        max_id: cut.max_id.0,
        count: cut.count as u64,
        tag: cut.tag.to_vec(),
    }
}

fn cut_from_message(m: &proto::catalog::RatingsCut) -> Result<RatingsCut> {
    let tag = <[u8; 16]>::try_from(m.tag.as_slice()).map_err(|_| CatalogError::InvalidCut)?;
    Ok(RatingsCut {
        position: m.position,
        max_id: RatingId(m.max_id),
        count: usize::try_from(m.count).map_err(|_| CatalogError::InvalidCut)?,
        tag,
    })
}
