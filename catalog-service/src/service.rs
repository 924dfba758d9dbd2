//! The gRPC face of [`Movies`]: caller identity, translation, and the one
//! place where domain errors become `tonic::Status`.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use proto::catalog::catalog_service_server::CatalogService;
use proto::catalog::{
    AddMovieRequest, CatalogEvent, GetMovieRequest, ListMoviesRequest, ListMoviesResponse,
    ListRatingsRequest, ListRatingsResponse, Movie, MovieDetail, RateMovieRequest, Rating,
    SubscribeEventsRequest,
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::catalog::{MovieListing, Movies};
use crate::domain::{CatalogError, MOVIE_IDS_STREAM, RATING_IDS_STREAM};
use crate::identity::{Identity, token_of};
use crate::model::{MovieRow, RatingRow};

/// Who may call SubscribeEvents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeAccess {
    /// Callers sending this key in `x-service-key`.
    Key(String),
    /// Anyone (the all-in-one mode on loopback).
    Open,
    /// No one: no key is configured.
    Closed,
}

/// The `movies.catalog.v1.CatalogService` implementation.
pub struct CatalogGrpc {
    movies: Arc<Movies>,
    identity: Arc<dyn Identity>,
    subscribe: SubscribeAccess,
}

impl CatalogGrpc {
    /// Serves `movies`, checking callers with `identity`.
    pub fn new(
        movies: Arc<Movies>,
        identity: Arc<dyn Identity>,
        subscribe: SubscribeAccess,
    ) -> Self {
        Self {
            movies,
            identity,
            subscribe,
        }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<i64, CatalogError> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().map_err(|_| CatalogError::InvalidToken))
            .transpose()?;
        self.identity.user_id(token_of(header)?).await
    }

    fn check_service_key<T>(&self, request: &Request<T>) -> Result<(), CatalogError> {
        let given = request
            .metadata()
            .get("x-service-key")
            .map(|v| v.as_bytes());
        match (&self.subscribe, given) {
            (SubscribeAccess::Open, _) => Ok(()),
            (SubscribeAccess::Key(key), Some(given)) if constant_time_eq(key.as_bytes(), given) => {
                Ok(())
            }
            _ => Err(CatalogError::ServiceKeyRequired),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn movie_message(m: MovieRow) -> Movie {
    Movie {
        id: m.id,
        title: m.title,
        director: m.director,
    }
}

fn rating_message(r: RatingRow) -> Rating {
    Rating {
        id: r.id,
        movie: r.movie,
        rating: i32::from(r.rating),
        user: r.user,
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn add_movie(
        &self,
        request: Request<AddMovieRequest>,
    ) -> Result<Response<Movie>, Status> {
        let user = self.caller(&request).await?;
        let r = request.into_inner();
        let movie = self.movies.add_movie(user, &r.title, &r.director).await?;
        Ok(Response::new(movie_message(movie)))
    }

    async fn get_movie(
        &self,
        request: Request<GetMovieRequest>,
    ) -> Result<Response<MovieDetail>, Status> {
        self.caller(&request).await?;
        let m = self.movies.movie(request.get_ref().id)?;
        Ok(Response::new(MovieDetail {
            rating_average: m.rating_average(),
            id: m.id,
            title: m.title,
            director: m.director,
            added_by: m.added_by,
            rating_count: m.rating_count as i64,
        }))
    }

    async fn list_movies(
        &self,
        request: Request<ListMoviesRequest>,
    ) -> Result<Response<ListMoviesResponse>, Status> {
        self.caller(&request).await?;
        let r = request.get_ref();
        Ok(Response::new(
            match self
                .movies
                .movies_unless(r.limit, r.offset, &r.if_none_match)
            {
                MovieListing::NotModified { etag, count } => ListMoviesResponse {
                    movies: Vec::new(),
                    count: count as u64,
                    etag: etag.to_vec(),
                    not_modified: true,
                },
                MovieListing::Page { etag, page } => ListMoviesResponse {
                    movies: page.items.into_iter().map(movie_message).collect(),
                    count: page.count as u64,
                    etag: etag.to_vec(),
                    not_modified: false,
                },
            },
        ))
    }

    async fn rate_movie(
        &self,
        request: Request<RateMovieRequest>,
    ) -> Result<Response<Rating>, Status> {
        let user = self.caller(&request).await?;
        let r = request.get_ref();
        let rating = self
            .movies
            .rate_movie(user, r.movie, i64::from(r.rating))
            .await?;
        Ok(Response::new(rating_message(rating)))
    }

    async fn list_ratings(
        &self,
        request: Request<ListRatingsRequest>,
    ) -> Result<Response<ListRatingsResponse>, Status> {
        self.caller(&request).await?;
        let r = request.get_ref();
        let page = self.movies.ratings(r.movie, r.limit, r.offset);
        Ok(Response::new(ListRatingsResponse {
            ratings: page.items.into_iter().map(rating_message).collect(),
            count: page.count as u64,
        }))
    }

    type SubscribeEventsStream = BoxStream<'static, Result<CatalogEvent, Status>>;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        self.check_service_key(&request)?;
        let from = request.get_ref().from_position;
        let events = self
            .movies
            .store()
            .subscribe_all(from)
            .filter(|e| {
                let internal = e
                    .as_ref()
                    .is_ok_and(|e| e.stream == MOVIE_IDS_STREAM || e.stream == RATING_IDS_STREAM);
                std::future::ready(!internal)
            })
            .map(|e| match e {
                Ok(e) => Ok(CatalogEvent {
                    position: e.position,
                    stream: e.stream,
                    version: e.version,
                    event_type: e.event_type,
                    event_id: e.id.to_string(),
                    data_json: e.data.get().to_owned(),
                    recorded_at: Some(prost_types::Timestamp {
                        seconds: e.recorded_at.timestamp(),
                        nanos: e.recorded_at.timestamp_subsec_nanos() as i32,
                    }),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "event subscription failed");
                    Err(Status::unavailable("event feed interrupted; resubscribe"))
                }
            });
        Ok(Response::new(events.boxed()))
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(errors) => {
                let mut details = ErrorDetails::new();
                for e in &errors {
                    details.add_bad_request_violation(e.field, e.message.clone());
                }
                Status::with_error_details(Code::InvalidArgument, "invalid request", details)
            }
            CatalogError::NoCredentials => {
                Status::unauthenticated("Authentication credentials were not provided.")
            }
            CatalogError::InvalidToken => Status::unauthenticated("Invalid token."),
            CatalogError::CannotRate => Status::permission_denied("You cant rate it "),
            CatalogError::NotFound => Status::not_found("Not found."),
            CatalogError::ServiceKeyRequired => {
                Status::permission_denied("a valid x-service-key is required")
            }
            CatalogError::IdentityUnavailable(cause) => {
                tracing::warn!(%cause, "cannot check the caller's token");
                Status::unavailable("authentication service unavailable")
            }
            CatalogError::NotYetApplied => {
                Status::unavailable("the change is stored but not yet visible; retry")
            }
            CatalogError::Store(e) => {
                tracing::error!(error = %e, "event store failure");
                Status::unavailable("storage unavailable")
            }
        }
    }
}
