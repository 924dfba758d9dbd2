//! catalog-service: movies and ratings as events, with read models rebuilt
//! from the event feed, served over gRPC.
//!
//! Where things are:
//! - [`domain`]: the rules: value types, events, and the pure deciders of a
//!   movie and of a rating (given/when/then tests beside them);
//! - [`read_model`]: the views (movie list, rating list, per-movie
//!   statistics), a pure fold over the events;
//! - [`service`]: the gRPC edge: caller, parsing, one command or query each;
//! - [`error`]: the errors and their one mapping to gRPC statuses;
//! - [`identity`]: the caller's token, checked with auth-service by
//!   `authenticated`, before the call's message is decoded (the checks of
//!   concurrent calls sent together: `token_batch`);
//! - [`local`]: the calls of a gateway in the same process, run directly,
//!   admitted as over gRPC.
//!
//! A library with a thin `main`: tests, the all-in-one launcher and the
//! binary all start the same [`Application`].

mod authenticated;
mod config;
pub mod domain;
pub mod error;
mod feed;
pub mod identity;
pub mod local;
mod methods;
pub mod read_model;
mod service;
mod token_batch;

use std::future::Future;

use std::sync::Arc;

use event_sourcing::consumer_group::ConsumerGroups;
use event_sourcing::read_model::Projection;
use event_store::{EventStore, EventStoreError};
use platform::grpc::{GrpcListener, ServeError};
use platform::metrics::Stages;
use proto::catalog::catalog_service_server::CatalogServiceServer;

use crate::authenticated::{Admission, Authenticated};

pub use config::Config;
pub use identity::Identity;
pub use read_model::CatalogView;
pub use service::{CatalogGrpc, SubscribeAccess, WriteQuota};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The event store could not be opened, or the read models rebuilt.
    #[error("event store: {0}")]
    Store(#[from] EventStoreError),
    /// The auth-service URL is not usable.
    #[error("auth-service URL: {0}")]
    AuthUrl(platform::replicas::BadUrl),
    /// The server could not listen, or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The webhooks file cannot be used.
    #[error(transparent)]
    Webhooks(#[from] platform::webhooks::WebhookError),
}

/// A bound, ready catalog-service.
pub struct Application {
    listener: GrpcListener,
    view: Arc<Projection<CatalogView>>,
    /// The service, shared by the server and [`Application::local_calls`].
    service: Arc<CatalogGrpc>,
    /// Who may call.
    admission: Admission,
    /// Set once the server has stopped: direct calls are refused then.
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Delivers to the webhook endpoints while the service lives.
    _webhooks: platform::webhooks::Webhooks,
}

impl platform::grpc::Served for Application {
    fn listener(&self) -> &GrpcListener {
        &self.listener
    }
}

impl Application {
    /// Opens the store `config` names, rebuilds the read models, connects
    /// (lazily) to auth-service and binds the listen address.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let identity =
            Identity::connect_lazy(&config.catalog_auth_url).map_err(StartError::AuthUrl)?;
        let store = event_store::open(&config.catalog_store_url).await?;
        Self::build_with(config, store, identity).await
    }

    /// As [`Application::build`], on an open store and with auth-service
    /// reached another way (the all-in-one launcher: in-process).
    pub async fn build_with(
        config: &Config,
        store: Arc<dyn EventStore>,
        identity: Identity,
    ) -> Result<Self, StartError> {
        let view = Projection::start_with_snapshots(
            store.clone(),
            CatalogView::default(),
            config.snapshot_policy(),
        )
        .await?;
        tracing::info!(
            movies = view.read().movies.len(),
            ratings = view.read().ratings.len(),
            from_snapshot = view.started_from(),
            "catalog read models ready"
        );
        let mut listener =
            GrpcListener::bind(config.catalog_listen, config.catalog_metrics_listen.0).await?;
        let view = Arc::new(view);
        let stages = Arc::new(Stages::new(
            "catalog_stage_duration_seconds",
            "Time spent in each stage of a call: authenticate (the token check, every \
             call), and rate_load_movie, rate_allocate_id, rate_append, rate_apply_wait \
             (RateMovie's steps).",
        ));
        let subscribe = SubscribeAccess::from_config(
            config.catalog_service_key.as_deref(),
            config.catalog_open_subscriptions,
        );
        let groups = Arc::new(ConsumerGroups::new(
            store.clone(),
            feed::opener(),
            platform::feed::settings(config.catalog_feed_lease_ms),
        ));
        listener
            .add_service(platform::feed::FeedGrpc::new(groups.clone(), subscribe.clone()).server());
        let webhooks = platform::webhooks::Webhooks::from_file(
            config.catalog_webhooks.as_deref(),
            groups.clone(),
            platform::webhooks::Timing {
                timeout: std::time::Duration::from_millis(
                    config.catalog_webhook_timeout_ms.max(100),
                ),
                backoff: std::time::Duration::from_millis(
                    config.catalog_webhook_backoff_ms.max(10),
                ),
            },
        )?;
        let projection = view.metrics_source("catalog", store.clone());
        let feed_metrics = platform::feed::metrics("catalog", groups);
        let hooks = webhooks.metrics("catalog");
        let staged = stages.clone();
        listener.add_metrics(Arc::new(move || {
            let (projection, stages, feed) = (projection(), staged.render(), feed_metrics());
            let hooks = hooks();
            Box::pin(async move { projection.await + &stages + &feed.await + &hooks })
        }));
        let policies = service::Policies {
            subscribe,
            quota: config.write_quota(),
            score_min_votes: config.catalog_score_min_votes,
        };
        Ok(Self {
            listener,
            service: Arc::new(CatalogGrpc::new(
                store,
                view.clone(),
                policies,
                stages.clone(),
            )),
            admission: Admission::new(identity, view.clone(), stages),
            view,
            stopped: Arc::default(),
            _webhooks: webhooks,
        })
    }

    /// The catalog's calls for a gateway in this process, run directly
    /// (see [`local`]); refused once the server has stopped.
    pub fn local_calls(&self) -> Arc<local::LocalCatalog> {
        Arc::new(local::LocalCatalog::new(
            self.service.clone(),
            self.admission.clone(),
            self.listener.call_metrics(),
            self.stopped.clone(),
        ))
    }

    /// The live read models (for tests and tools).
    pub fn view(&self) -> Arc<Projection<CatalogView>> {
        self.view.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let view = self.view.clone();
        let server = CatalogServiceServer::from_arc(self.service)
            .max_decoding_message_size(platform::grpc::MAX_REQUEST_BYTES);
        let served = self
            .listener
            .serve(Authenticated::new(server, self.admission), shutdown)
            .await;
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        served?;
        view.close().await;
        Ok(())
    }
}

/// Rebuilds every read model from scratch: what the `rebuild-projections`
/// subcommand and the equality tests use. Returns the views and the position
/// of the last event read.
pub async fn rebuild(store: &dyn EventStore) -> Result<(CatalogView, u64), EventStoreError> {
    event_sourcing::read_model::rebuild(store, CatalogView::default()).await
}
