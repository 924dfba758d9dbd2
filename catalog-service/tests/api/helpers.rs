use platform::grpc::Served as _;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use catalog_service::CatalogView;
use catalog_service::local::LocalCatalog;
use event_sourcing::read_model::Projection;
use event_store::testing::TempStore;
use proto::auth::RegisterRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::catalog::catalog_service_client::CatalogServiceClient;
use proto::catalog::{
    AddMovieRequest, GetMovieRequest, GetMovieResponse as MovieDetail, ListMoviesRequest,
    ListMoviesResponse, ListRatingsRequest, ListRatingsResponse, Movie, RateMovieRequest, Rating,
};
use tonic::transport::Channel;
use tonic::{Request, Status};

pub use platform::testing::{Running, assert_code, violations};

pub const SERVICE_KEY: &str = "test-service-key";

/// Runs each named case once per backend: `sqlite::case` and `postgres::case`.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        platform::cases_on!([$($case),*];
            sqlite => $crate::helpers::Stores::sqlite;
            postgres => $crate::helpers::Stores::postgres;
        );
    };
}

/// One store per service, and a directory for the catalog's read-model
/// snapshots; removed when dropped.
pub struct Stores {
    pub auth: TempStore,
    pub catalog: TempStore,
    snapshots: tempfile::TempDir,
}

impl Stores {
    pub async fn sqlite(_case: &str) -> Option<Self> {
        Some(Self {
            auth: TempStore::sqlite(),
            catalog: TempStore::sqlite(),
            snapshots: tempfile::tempdir().unwrap(),
        })
    }

    pub async fn postgres(test: &str) -> Option<Self> {
        Some(Self {
            auth: TempStore::postgres(test).await?,
            catalog: TempStore::postgres(test).await?,
            snapshots: tempfile::tempdir().unwrap(),
        })
    }

    /// Where catalog-service keeps its read-model snapshot.
    pub fn catalog_snapshot(&self) -> std::path::PathBuf {
        self.snapshots.path().join("catalog.snapshot")
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

async fn start_catalog(
    stores: &Stores,
    auth_addr: std::net::SocketAddr,
) -> (
    Running,
    CatalogServiceClient<Channel>,
    Arc<Projection<CatalogView>>,
    Arc<LocalCatalog>,
) {
    let app = catalog_service::Application::build(&catalog_service::Config {
        catalog_listen: "127.0.0.1:0".parse().unwrap(),
        catalog_store_url: stores.catalog.url().to_owned(),
        catalog_auth_url: format!("http://{auth_addr}"),
        catalog_service_key: Some(SERVICE_KEY.into()),
        catalog_open_subscriptions: false,
        catalog_metrics_listen: platform::MaybeAddr::OFF,
        catalog_snapshot: stores.catalog_snapshot().display().to_string(),
        catalog_snapshot_every: 100_000,
        catalog_snapshot_key: None,
        catalog_write_quota: 600,
        catalog_write_quota_window_secs: 60,
        catalog_score_min_votes: 10,
        ..Default::default()
    })
    .await
    .expect("catalog-service starts");
    let addr = app.local_addr();
    let (view, local) = (app.view(), app.local_calls());
    let running = Running::spawn(|stopped| async move {
        app.run_until_stopped(stopped).await.unwrap();
    });
    (
        running,
        CatalogServiceClient::new(channel(addr).await),
        view,
        local,
    )
}

/// An auth-service of a release before `AuthenticateMany`: a proxy in front
/// of a current one that answers that method UNIMPLEMENTED, and passes
/// every other call on.
#[derive(Clone)]
struct WithoutAuthenticateMany {
    auth: Channel,
    refused: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for WithoutAuthenticateMany {
    const NAME: &'static str = "movies.auth.v1.AuthService";
}

type Http<B> = tonic::codegen::http::Response<B>;

impl tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for WithoutAuthenticateMany {
    type Response = Http<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path().ends_with("/AuthenticateMany") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            use tower::ServiceExt as _;
            Ok(match auth.oneshot(request).await {
                Ok(answer) => answer,
                Err(e) => Status::unavailable(e.to_string()).into_http(),
            })
        })
    }
}

/// auth-service and catalog-service, running, with clients.
pub struct Stack {
    /// With [`Stack::start_with_old_auth`]: the proxy, and how many
    /// `AuthenticateMany` calls it refused.
    pub old_auth: Option<(Running, Arc<AtomicUsize>)>,
    pub auth: Option<Running>,
    pub catalog: Option<Running>,
    pub auth_client: AuthServiceClient<Channel>,
    pub client: CatalogServiceClient<Channel>,
    pub view: Arc<Projection<CatalogView>>,
    /// The catalog's calls, run directly (as the launcher's gateway makes them).
    pub local: Arc<LocalCatalog>,
    auth_addr: std::net::SocketAddr,
}

impl Stack {
    pub async fn start(stores: &Stores) -> Self {
        Self::start_as(stores, false).await
    }

    /// As [`Stack::start`], with the catalog checking tokens through an
    /// auth-service that has no `AuthenticateMany` (a release before it).
    pub async fn start_with_old_auth(stores: &Stores) -> Self {
        Self::start_as(stores, true).await
    }

    async fn start_as(stores: &Stores, old_auth: bool) -> Self {
        let auth = auth_service::Application::build(&auth_service::Config {
            auth_listen: "127.0.0.1:0".parse().unwrap(),
            auth_store_url: stores.auth.url().to_owned(),
            auth_metrics_listen: platform::MaybeAddr::OFF,
            ..Default::default()
        })
        .await
        .expect("auth-service starts");
        let auth_addr = auth.local_addr();
        let auth_running = Running::spawn(|stopped| async move {
            auth.run_until_stopped(stopped).await.unwrap();
        });
        let old_auth = if old_auth {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let refused = Arc::new(AtomicUsize::new(0));
            let proxy = WithoutAuthenticateMany {
                auth: channel(auth_addr).await,
                refused: refused.clone(),
            };
            let running = Running::spawn(|stopped| async move {
                tonic::transport::Server::builder()
                    .add_service(proxy)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        stopped,
                    )
                    .await
                    .unwrap();
            });
            Some((running, refused, addr))
        } else {
            None
        };
        let checks_with = old_auth.as_ref().map_or(auth_addr, |(_, _, addr)| *addr);
        let (catalog, client, view, local) = start_catalog(stores, checks_with).await;
        Self {
            old_auth: old_auth.map(|(running, refused, _)| (running, refused)),
            auth_client: AuthServiceClient::new(channel(auth_addr).await),
            auth: Some(auth_running),
            auth_addr,
            catalog: Some(catalog),
            client,
            view,
            local,
        }
    }

    /// Stops catalog-service and starts a new one on the same stores.
    pub async fn restart_catalog(&mut self, stores: &Stores) {
        self.stop_catalog().await;
        self.start_catalog(stores).await;
    }

    /// Stops catalog-service (it saves its snapshot as it stops).
    pub async fn stop_catalog(&mut self) {
        if let Some(c) = self.catalog.take() {
            c.stop().await;
        }
    }

    /// Starts catalog-service again, after [`Stack::stop_catalog`].
    pub async fn start_catalog(&mut self, stores: &Stores) {
        let (catalog, client, view, local) = start_catalog(stores, self.auth_addr).await;
        self.catalog = Some(catalog);
        self.client = client;
        self.view = view;
        self.local = local;
    }

    /// Registers `name`; returns (token, user id).
    pub async fn user(&self, name: &str) -> (String, i64) {
        let s = self
            .auth_client
            .clone()
            .register(RegisterRequest {
                username: name.into(),
                email: format!("{name}@example.com"),
                password: "password123".into(),
            })
            .await
            .unwrap()
            .into_inner();
        (s.token, s.user.unwrap().id)
    }

    pub async fn add_movie(
        &self,
        token: &str,
        title: &str,
        director: &str,
    ) -> Result<Movie, Status> {
        let req = AddMovieRequest {
            title: title.into(),
            director: director.into(),
        };
        self.client
            .clone()
            .add_movie(authed(token, req))
            .await
            .map(|r| r.into_inner().into())
    }

    pub async fn get_movie(&self, token: &str, id: i64) -> Result<MovieDetail, Status> {
        self.client
            .clone()
            .get_movie(authed(token, GetMovieRequest { id }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list_movies(
        &self,
        token: &str,
        limit: Option<u32>,
        offset: u32,
    ) -> Result<ListMoviesResponse, Status> {
        self.list_movies_with(
            token,
            ListMoviesRequest {
                limit,
                offset,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn list_movies_with(
        &self,
        token: &str,
        request: ListMoviesRequest,
    ) -> Result<ListMoviesResponse, Status> {
        self.client
            .clone()
            .list_movies(authed(token, request))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn rate(&self, token: &str, movie: i64, rating: i32) -> Result<Rating, Status> {
        self.client
            .clone()
            .rate_movie(authed(token, RateMovieRequest { movie, rating }))
            .await
            .map(|r| r.into_inner().into())
    }

    pub async fn list_ratings(
        &self,
        token: &str,
        movie: Option<i64>,
        limit: Option<u32>,
        offset: u32,
    ) -> Result<ListRatingsResponse, Status> {
        let req = ListRatingsRequest {
            movie,
            limit,
            offset,
            ..Default::default()
        };
        self.client
            .clone()
            .list_ratings(authed(token, req))
            .await
            .map(|r| r.into_inner())
    }
}

/// `message` with `authorization: Token <token>` metadata.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Token {token}").parse().unwrap());
    r
}
