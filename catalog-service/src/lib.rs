//! catalog-service: movies and ratings as events, with read models rebuilt
//! from the event feed, served over gRPC.
//!
//! A library with a thin `main`: tests, the all-in-one launcher and the
//! binary all start the same [`Application`].

pub mod catalog;
mod config;
pub mod domain;
pub mod identity;
pub mod model;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use event_store::{EventStore, EventStoreError};
use platform::grpc::{GrpcListener, ServeError};
use proto::catalog::catalog_service_server::CatalogServiceServer;

pub use catalog::Movies;
pub use config::Config;
pub use identity::{GrpcIdentity, Identity};
pub use service::{CatalogGrpc, SubscribeAccess};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The event store could not be opened.
    #[error("event store: {0}")]
    Store(#[from] EventStoreError),
    /// The read models could not be rebuilt.
    #[error("catalog: {0}")]
    Catalog(#[from] domain::CatalogError),
    /// The auth-service URL is not usable.
    #[error("auth-service URL: {0}")]
    AuthUrl(tonic::transport::Error),
    /// The server could not listen, or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A bound, ready catalog-service.
pub struct Application {
    listener: GrpcListener,
    movies: Arc<Movies>,
    identity: Arc<dyn Identity>,
    subscribe: SubscribeAccess,
}

impl Application {
    /// Opens the store `config` names, rebuilds the read models, connects
    /// (lazily) to auth-service and binds the listen address.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let identity = GrpcIdentity::new(&config.auth_url).map_err(StartError::AuthUrl)?;
        let store = event_store::open(&config.store_url).await?;
        Self::build_with(config, store, Arc::new(identity)).await
    }

    /// As [`Application::build`], on an open store and with another way to
    /// check identities (the all-in-one launcher asks auth in-process).
    pub async fn build_with(
        config: &Config,
        store: Arc<dyn EventStore>,
        identity: Arc<dyn Identity>,
    ) -> Result<Self, StartError> {
        let movies = Arc::new(Movies::start(store).await?);
        let listener = GrpcListener::bind(config.listen).await?;
        let subscribe = match (&config.service_key, config.open_subscriptions) {
            (Some(key), _) if !key.is_empty() => SubscribeAccess::Key(key.clone()),
            (_, true) => SubscribeAccess::Open,
            _ => SubscribeAccess::Closed,
        };
        Ok(Self {
            listener,
            movies,
            identity,
            subscribe,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// A client of this service for callers in this process: calls run the
    /// service directly (beside the TCP listener, once running).
    pub fn in_process_channel(&mut self) -> platform::grpc::in_process::Channel {
        self.listener.in_process_channel()
    }

    /// The domain core, for in-process callers.
    pub fn movies(&self) -> Arc<Movies> {
        self.movies.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let service = CatalogGrpc::new(self.movies, self.identity, self.subscribe);
        self.listener
            .serve(CatalogServiceServer::new(service), shutdown)
            .await?;
        Ok(())
    }
}
