//! gateway: the public REST API of the movie-rating platform (the contract
//! of the Django REST + knox system it replaces), translated into gRPC calls
//! to auth-service and catalog-service. It holds no state and no rules.

mod backends;
pub mod client;
mod conditional;
mod config;
pub mod error;
mod extract;
mod list_cache;
mod observe;
mod openapi;
mod pagination;
mod problem;
pub mod routes;
mod server;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use backends::Backends;
pub use config::Config;
pub use extract::BODY_LIMIT;
use observe::Metrics;

/// What every handler shares. Cloned for every request, so one pointer.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    backends: Backends,
    metrics: Metrics,
    openapi: String,
    /// `GET /api/auth/movies` answers by (limit, offset), kept with the catalog's tag.
    movie_lists: list_cache::ListCache<(Option<u32>, u32)>,
    /// Where pagination links point: the configured public URL, else the
    /// listen address (never the request's `Host`).
    public_url: String,
    /// Peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Each route's policy, as the route declares it.
    route_policies: routes::RoutePolicies,
    /// Logins and registrations per client.
    auth_limit: client::RateLimit,
    /// Ratings per page of a streamed full list.
    list_page: u32,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The OpenAPI document's frame; its paths come from the routes themselves
/// (each module's `router()`), so a route is declared once.
#[derive(OpenApi)]
#[openapi(
    info(title = "movies", description = "The movie-rating REST API (Django REST + knox compatible)."),
    modifiers(&TokenAuth)
)]
pub struct ApiDoc;

/// The REST API's routes and the OpenAPI document describing exactly them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::activity::router())
        .merge(routes::sessions::router())
        .merge(routes::movies::router())
        .merge(routes::ratings::router())
        .split_for_parts()
}

struct TokenAuth;

impl utoipa::Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <64 hex chars>`, as returned by register and login",
            ))),
        );
    }
}

/// CORS for the configured origins: preflights answered with the methods
/// and headers the API uses, `ETag` and `Retry-After` readable by scripts.
/// `None` when no origin is configured: then no CORS header, not even
/// `Vary`, is ever sent. An origin that is not `scheme://host[:port]`, `*`
/// beside others, or `null` not explicitly allowed is a [`CorsError`].
fn cors(
    origins: &[String],
    allow_null: bool,
) -> Result<Option<tower_http::cors::CorsLayer>, CorsError> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins == ["*"] {
        AllowOrigin::any()
    } else {
        let mut list = Vec::new();
        for origin in origins {
            let valid = match origin {
                "*" => return Err(CorsError::WildcardAmongOthers),
                "null" if !allow_null => return Err(CorsError::NullOrigin),
                "null" => true,
                o => o.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains(['/', '?', '#', '@', '*', ' '])
                }),
            };
            match HeaderValue::from_str(origin) {
                Ok(value) if valid => list.push(value),
                _ => return Err(CorsError::NotAnOrigin(origin.to_owned())),
            }
        }
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([header::ETAG, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// A `GATEWAY_CORS_ORIGINS` the gateway refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    /// Not `scheme://host[:port]`.
    #[error(
        "GATEWAY_CORS_ORIGINS: {0:?} is not an origin (scheme://host[:port], e.g. https://app.example)"
    )]
    NotAnOrigin(String),
    /// `*` with other origins.
    #[error("GATEWAY_CORS_ORIGINS: `*` (any origin) stands alone, not beside other origins")]
    WildcardAmongOthers,
    /// `null` without `GATEWAY_CORS_ALLOW_NULL_ORIGIN`.
    #[error(
        "GATEWAY_CORS_ORIGINS: the origin `null` is that of sandboxed frames and file: pages, which any site can give itself; set GATEWAY_CORS_ALLOW_NULL_ORIGIN=true to allow it anyway"
    )]
    NullOrigin,
}

/// The whole router: every route, the 404 fallback, observation.
/// `public_url` is where pagination links point.
/// Also returns what the metrics listener shows.
pub fn router(
    backends: Backends,
    config: &Config,
    public_url: String,
) -> Result<(Router, platform::metrics::Render), CorsError> {
    let cors = cors(
        &config.gateway_cors_origins,
        config.gateway_cors_allow_null_origin,
    )?;
    let (api, openapi) = api();
    let mut openapi = serde_json::to_value(&openapi).expect("the OpenAPI document serializes");
    let route_policies = routes::RoutePolicies::take(&mut openapi);
    openapi::complete(&mut openapi, &route_policies);
    let api_paths = Arc::new(web::ApiPaths::from_openapi(&openapi));
    let openapi = openapi.to_string();
    let state = AppState(Arc::new(Shared {
        backends,
        metrics: Metrics::default(),
        openapi,
        movie_lists: list_cache::ListCache::default(),
        public_url: public_url.trim_end_matches('/').to_owned(),
        trusted_proxies: config.gateway_trusted_proxies.clone(),
        route_policies,
        auth_limit: client::RateLimit::new(client::Policy {
            burst: config.gateway_auth_burst,
            per_minute: config.gateway_auth_per_minute,
            concurrency: config.gateway_auth_concurrency,
        }),
        list_page: config.gateway_list_page.max(1),
    }));
    let mut api = api
        .route_layer(axum::middleware::from_fn(conditional::conditional))
        .merge(routes::ops::router())
        .merge(web::router())
        .fallback(observe::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client::limit,
        ));
    if let Some(cors) = cors {
        api = api.layer(cors);
    }
    // Problems outside the routes: they rewrite every error, 405s
    // included; the browsable API outermost: it shows the final answer.
    let metrics = routes::ops::metrics(state.clone());
    let router = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(axum::middleware::from_fn(problem::problems))
        .layer(axum::middleware::from_fn_with_state(
            api_paths,
            web::browsable,
        ))
        .with_state(state);
    Ok((router, metrics))
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend URL is not usable.
    #[error(transparent)]
    BackendUrl(#[from] platform::replicas::BadUrl),
    /// The CORS origins are not usable.
    #[error(transparent)]
    Cors(#[from] CorsError),
    /// The listen address could not be bound, or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound, ready gateway.
pub struct Application {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    router: Router,
    limits: server::Limits,
    /// The metrics listener, if any, and what it shows.
    metrics: Option<(tokio::net::TcpListener, platform::metrics::Render)>,
}

impl Application {
    /// Binds the listen address; the backends are connected on first use.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let backends = Backends::new(
            &config.gateway_auth_url,
            &config.gateway_catalog_url,
            config.grpc_timeout(),
        )?;
        Self::build_with(config, backends).await
    }

    /// As [`Application::build`], with backends made elsewhere (the
    /// all-in-one launcher's in-process channels). Backend URLs are ignored.
    pub async fn build_with(config: &Config, backends: Backends) -> Result<Self, StartError> {
        let io = |source| StartError::Io {
            addr: config.gateway_listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.gateway_listen)
            .await
            .map_err(io)?;
        let local_addr = listener.local_addr().map_err(io)?;
        let public_url = config
            .gateway_public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let (router, render) = router(backends, config, public_url)?;
        let metrics = match config.gateway_metrics_listen.0 {
            Some(addr) => {
                let io = |source| StartError::Io { addr, source };
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
                Some((listener, render))
            }
            None => None,
        };
        Ok(Self {
            listener,
            local_addr,
            router,
            limits: config.server_limits(platform::raise_open_file_limit()),
            metrics,
        })
    }

    /// Where the REST API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        tracing::info!(addr = %self.local_addr, limits = ?self.limits, "gateway listening");
        let metrics = self.metrics.map(|(listener, render)| {
            tracing::info!(addr = ?listener.local_addr().ok(), "gateway metrics listening");
            tokio::spawn(platform::metrics::serve(listener, render))
        });
        server::serve(self.listener, self.router, self.limits, shutdown).await;
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}
