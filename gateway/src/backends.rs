//! The gRPC services behind the gateway: reused connections, a deadline on
//! every call.

use std::future::Future;
use std::time::{Duration, Instant};

use std::sync::Arc;

use futures_util::stream::BoxStream;
use platform::grpc::{GrpcChannel, Observed};
use platform::metrics::{Histograms, Render};
use proto::auth::auth_service_client::AuthServiceClient;
use proto::catalog::catalog_service_client::CatalogServiceClient;
use proto::catalog::catalog_service_server::{CatalogService, SERVICE_NAME};
use proto::catalog::{
    AddMovieRequest, AddMovieResponse, GetMovieRequest, GetMovieResponse, ListActivityRequest,
    ListActivityResponse, ListMoviesRequest, ListMoviesResponse, ListRatingsRequest,
    ListRatingsResponse, RateMovieRequest, RateMovieResponse, SubscribeEventsResponse,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::ApiError;
use crate::routes::Caller;

/// Clients of auth-service and catalog-service. Cheap to clone: clones share
/// the HTTP/2 connections, which multiplex concurrent calls (or, in one
/// process, the in-process servers).
#[derive(Clone)]
pub struct Backends {
    /// auth-service.
    pub auth: AuthServiceClient<Observed<GrpcChannel>>,
    /// catalog-service.
    pub catalog: Catalog,
    auth_channel: GrpcChannel,
    catalog_channel: GrpcChannel,
    timeout: Duration,
    /// The calls made, by service, method and code (`grpc_client_…`).
    calls: Arc<Histograms>,
    /// What the services report of themselves, when they run in this
    /// process (shown on the gateway's `/metrics` after its own series).
    reports: Vec<Render>,
}

impl Backends {
    /// Clients for the services at these URLs (each a comma-separated list
    /// of replicas, or a host name naming several); they connect on first
    /// use (and reconnect after a failure), so the gateway can start first.
    pub fn new(
        auth_urls: &str,
        catalog_urls: &str,
        timeout: Duration,
    ) -> Result<Self, platform::replicas::BadUrl> {
        let connect_timeout = Duration::from_secs(2).min(timeout);
        Ok(Self::with_channels(
            GrpcChannel::connect_lazy(auth_urls, connect_timeout)?,
            GrpcChannel::connect_lazy(catalog_urls, connect_timeout)?,
            timeout,
        ))
    }

    /// Clients over channels made elsewhere (in one process: in-process ones).
    pub fn with_channels(
        auth_channel: GrpcChannel,
        catalog_channel: GrpcChannel,
        timeout: Duration,
    ) -> Self {
        let calls = platform::grpc::call_metrics("grpc_client");
        let observed = |channel: &GrpcChannel| Observed::client(channel.clone(), calls.clone());
        Self {
            auth: AuthServiceClient::new(observed(&auth_channel)),
            // Lists are whole unless the client pages them (the REST
            // contract), so their answers have no size limit here; tonic's
            // default (4 MiB) failed a list of ~12,000 long-titled movies.
            catalog: Catalog::Grpc(
                CatalogServiceClient::new(observed(&catalog_channel))
                    .max_decoding_message_size(usize::MAX),
            ),
            auth_channel,
            catalog_channel,
            timeout,
            calls,
            reports: Vec::new(),
        }
    }

    /// Calls catalog-service directly, in this process (the one-command
    /// launcher): `calls` runs each call as the server would, without
    /// encoding it. Counted in `grpc_client_…` as over gRPC.
    pub fn catalog_direct(mut self, calls: Arc<dyn DirectCatalog>) -> Self {
        self.catalog = Catalog::Direct {
            calls,
            metrics: self.calls.clone(),
        };
        self
    }

    /// Adds a service's own metrics to the gateway's `/metrics` (the
    /// one-process launcher: one scrape shows all three).
    pub fn report(mut self, metrics: Render) -> Self {
        self.reports.push(metrics);
        self
    }

    /// The Prometheus text of the calls made, then of every report.
    pub(crate) async fn metrics_text(&self) -> Vec<String> {
        let mut texts = vec![self.calls.render()];
        for report in &self.reports {
            texts.push(report().await);
        }
        texts
    }

    /// `message` as a request, carrying the caller's credentials when given,
    /// and the trace context.
    pub fn request<T>(&self, message: T, caller: Option<&Caller>) -> tonic::Request<T> {
        let mut r = platform::telemetry::traced(message);
        if let Some(caller) = caller {
            r.metadata_mut()
                .insert("authorization", caller.authorization.clone());
        }
        r
    }

    /// Awaits a call within the one deadline of every backend call. It is the
    /// gateway's own timer, so it holds in-process as well as over HTTP/2,
    /// and a service that hangs cannot hold a request longer.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ApiError::from_call(status)),
            Err(_) => Err(ApiError::Timeout),
        }
    }

    /// As [`Backends::call`], for a write under the catalog's per-user
    /// quota: also the `RateLimit-Policy` and `RateLimit` fields it
    /// answered with (none for a replayed write).
    pub async fn write<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<(RateLimitFields, T), ApiError> {
        self.call(async {
            let response = call.await?;
            let fields = RateLimitFields::of(response.metadata());
            Ok(tonic::Response::new((fields, response.into_inner())))
        })
        .await
    }

    /// As [`Backends::call`], for a call that changes nothing: if it fails
    /// because its replica is not there (UNAVAILABLE, a broken connection),
    /// it is made once more, which goes to the next replica in rotation,
    /// within the same deadline.
    pub async fn read<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call(async {
            match call().await {
                Err(status) if crate::error::unavailable(&status) => call().await,
                answer => answer,
            }
        })
        .await
    }

    /// Whether `token` is valid: `Ok` if so, else the error to answer (401,
    /// or 503/504 if auth-service cannot say). DRF authenticates before it
    /// reads a body, so a request with both a bad token and a bad body is a
    /// 401: handlers ask this only on their error path.
    pub async fn confirm_token(&self, token: &str) -> Result<(), ApiError> {
        let request = proto::auth::AuthenticateRequest {
            token: token.to_owned(),
        };
        self.read(|| {
            let (mut auth, request) = (self.auth.clone(), self.request(request.clone(), None));
            async move { auth.authenticate(request).await }
        })
        .await
        .map(|_| ())
    }

    /// Which services do not answer their health check as serving (empty: all ready).
    pub async fn not_ready(&self) -> Vec<&'static str> {
        let check = |channel: GrpcChannel| async move {
            let mut health = HealthClient::new(channel);
            let request = HealthCheckRequest {
                service: String::new(),
            };
            let answer = tokio::time::timeout(Duration::from_secs(1), health.check(request)).await;
            matches!(answer, Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32)
        };
        let (auth, catalog) = tokio::join!(
            check(self.auth_channel.clone()),
            check(self.catalog_channel.clone())
        );
        [(auth, "auth-service"), (catalog, "catalog-service")]
            .into_iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, name)| name)
            .collect()
    }
}

/// catalog-service's calls run in this process (`catalog_service::local`).
pub trait DirectCatalog:
    CatalogService<
    SubscribeEventsStream = BoxStream<'static, Result<SubscribeEventsResponse, tonic::Status>>,
>
{
}

impl<T> DirectCatalog for T where
    T: CatalogService<
        SubscribeEventsStream = BoxStream<'static, Result<SubscribeEventsResponse, tonic::Status>>,
    >
{
}

/// catalog-service as the gateway calls it: its gRPC client, or in one
/// process its calls run directly. Its methods are the generated client's.
#[derive(Clone)]
pub enum Catalog {
    /// Over gRPC: a channel to one address or to replicas, or in-process.
    Grpc(CatalogServiceClient<Observed<GrpcChannel>>),
    /// Run directly; counted in `metrics` (the gateway's `grpc_client_…`).
    Direct {
        /// The service's calls.
        calls: Arc<dyn DirectCatalog>,
        /// The gateway's call series.
        metrics: Arc<Histograms>,
    },
}

/// The methods of [`Catalog`], one per call the gateway makes.
macro_rules! catalog_calls {
    ($($name:ident($request:ty) -> $response:ty = $method:literal;)*) => {
        impl Catalog {
            $(
                #[doc = concat!("`", $method, "`, as the generated client's method of this name.")]
                pub async fn $name(
                    &mut self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, tonic::Status> {
                    match self {
                        Self::Grpc(client) => client.$name(request).await,
                        Self::Direct { calls, metrics } => {
                            let started = Instant::now();
                            let answer = calls.$name(request).await;
                            platform::grpc::observe_direct(metrics, (SERVICE_NAME, $method), &answer, started.elapsed());
                            answer
                        }
                    }
                }
            )*
        }
    };
}

catalog_calls! {
    add_movie(AddMovieRequest) -> AddMovieResponse = "AddMovie";
    get_movie(GetMovieRequest) -> GetMovieResponse = "GetMovie";
    list_movies(ListMoviesRequest) -> ListMoviesResponse = "ListMovies";
    rate_movie(RateMovieRequest) -> RateMovieResponse = "RateMovie";
    list_ratings(ListRatingsRequest) -> ListRatingsResponse = "ListRatings";
    list_activity(ListActivityRequest) -> ListActivityResponse = "ListActivity";
}

/// The `RateLimit-Policy` and `RateLimit` fields of an answer (IETF
/// draft-ietf-httpapi-ratelimit-headers), as a service gave them.
pub struct RateLimitFields(Vec<(axum::http::HeaderName, axum::http::HeaderValue)>);

impl RateLimitFields {
    /// The fields a call's response metadata carries.
    fn of(metadata: &tonic::metadata::MetadataMap) -> Self {
        let fields = [platform::RATELIMIT_POLICY_KEY, platform::RATELIMIT_KEY]
            .into_iter()
            .filter_map(|key| {
                let value = metadata.get(key)?.to_str().ok()?;
                Some((
                    axum::http::HeaderName::from_static(key),
                    axum::http::HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect();
        Self(fields)
    }
}

impl axum::response::IntoResponseParts for RateLimitFields {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.headers_mut().extend(self.0);
        Ok(res)
    }
}
