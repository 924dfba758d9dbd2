//! The catalog's calls for a gateway in the same process (the one-command
//! launcher), run directly: what its gRPC server runs for each call (the
//! caller admitted as `authenticated::Admission` admits it, the method,
//! the call's span and its `grpc_server_…` series), with the messages
//! handed over as they are. No protobuf encoding or decoding and no HTTP
//! request, body or trailers: through the in-process transport those were
//! about a fifth of an authenticated GET's samples (`bench/profile.sh`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use platform::metrics::Histograms;
use proto::catalog::catalog_service_server::{CatalogService, SERVICE_NAME};
use proto::catalog::{
    AddMovieRequest, AddMovieResponse, GetMovieRequest, GetMovieResponse, ListActivityRequest,
    ListActivityResponse, ListMoviesRequest, ListMoviesResponse, ListRatingsRequest,
    ListRatingsResponse, RateMovieRequest, RateMovieResponse, SubscribeEventsRequest,
};
use tonic::codegen::http::header;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::authenticated::Admission;
use crate::methods::access_of;
use crate::service::CatalogGrpc;

/// The catalog's calls, run directly in this process (see the module).
pub struct LocalCatalog {
    service: Arc<CatalogGrpc>,
    admission: Admission,
    metrics: Arc<Histograms>,
    stopped: Arc<AtomicBool>,
}

impl LocalCatalog {
    pub(crate) fn new(
        service: Arc<CatalogGrpc>,
        admission: Admission,
        metrics: Arc<Histograms>,
        stopped: Arc<AtomicBool>,
    ) -> Self {
        Self {
            service,
            admission,
            metrics,
            stopped,
        }
    }

    /// Runs `method` as the server would: refused once the service has
    /// stopped, the caller admitted first, all in the call's span, and
    /// counted.
    async fn call<'a, T, U, F>(
        &'a self,
        method: &'static str,
        request: Request<T>,
        run: impl FnOnce(&'a CatalogGrpc, Request<T>) -> F,
    ) -> Result<Response<U>, Status>
    where
        F: Future<Output = Result<Response<U>, Status>> + Send + 'a,
    {
        let started = Instant::now();
        let answer = async {
            if self.stopped.load(Ordering::Acquire) {
                return Err(platform::grpc::in_process::not_serving());
            }
            let access = access_of(method).ok_or_else(|| Status::unimplemented(method))?;
            let (metadata, mut extensions, message) = request.into_parts();
            let headers = metadata.into_headers();
            let span = if platform::telemetry::enabled() {
                platform::telemetry::server_span(&format!("/{SERVICE_NAME}/{method}"), &headers)
            } else {
                tracing::Span::none()
            };
            async move {
                let authorization = headers.get(header::AUTHORIZATION);
                self.admission
                    .admit(access, authorization, &mut extensions)
                    .await?;
                let metadata = MetadataMap::from_headers(headers);
                run(
                    &self.service,
                    Request::from_parts(metadata, extensions, message),
                )
                .await
            }
            .instrument(span)
            .await
        }
        .await;
        platform::grpc::observe_direct(
            &self.metrics,
            (SERVICE_NAME, method),
            &answer,
            started.elapsed(),
        );
        answer
    }
}

#[tonic::async_trait]
impl CatalogService for LocalCatalog {
    async fn add_movie(
        &self,
        request: Request<AddMovieRequest>,
    ) -> Result<Response<AddMovieResponse>, Status> {
        self.call("AddMovie", request, |s, r| s.add_movie(r)).await
    }

    async fn get_movie(
        &self,
        request: Request<GetMovieRequest>,
    ) -> Result<Response<GetMovieResponse>, Status> {
        self.call("GetMovie", request, |s, r| s.get_movie(r)).await
    }

    async fn list_movies(
        &self,
        request: Request<ListMoviesRequest>,
    ) -> Result<Response<ListMoviesResponse>, Status> {
        self.call("ListMovies", request, |s, r| s.list_movies(r))
            .await
    }

    async fn rate_movie(
        &self,
        request: Request<RateMovieRequest>,
    ) -> Result<Response<RateMovieResponse>, Status> {
        self.call("RateMovie", request, |s, r| s.rate_movie(r))
            .await
    }

    async fn list_ratings(
        &self,
        request: Request<ListRatingsRequest>,
    ) -> Result<Response<ListRatingsResponse>, Status> {
        self.call("ListRatings", request, |s, r| s.list_ratings(r))
            .await
    }

    async fn list_activity(
        &self,
        request: Request<ListActivityRequest>,
    ) -> Result<Response<ListActivityResponse>, Status> {
        self.call("ListActivity", request, |s, r| s.list_activity(r))
            .await
    }

    type SubscribeEventsStream = <CatalogGrpc as CatalogService>::SubscribeEventsStream;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        self.call("SubscribeEvents", request, |s, r| s.subscribe_events(r))
            .await
    }
}
