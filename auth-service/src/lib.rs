//! auth-service: users and tokens as events, served over gRPC.
//!
//! A library with a thin `main`: tests, the all-in-one launcher and the
//! binary all start the same [`Application`].

pub mod auth;
mod config;
pub mod domain;
mod password;
mod service;
pub mod state;
mod throttle;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use event_store::{EventStore, EventStoreError};
use platform::grpc::{GrpcListener, ServeError};
use proto::auth::auth_service_server::AuthServiceServer;

pub use auth::Auth;
pub use config::Config;
pub use service::AuthGrpc;
pub use throttle::LoginThrottle;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The event store could not be opened.
    #[error("event store: {0}")]
    Store(#[from] EventStoreError),
    /// The read model could not be rebuilt.
    #[error("auth: {0}")]
    Auth(#[from] domain::AuthError),
    /// The server could not listen, or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A bound, ready auth-service.
pub struct Application {
    listener: GrpcListener,
    auth: Arc<Auth>,
}

impl Application {
    /// Opens the store `config` names, rebuilds the read model and binds the
    /// listen address (port 0 picks a free port).
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let store = event_store::open(&config.store_url).await?;
        Self::build_with_store(config, store).await
    }

    /// As [`Application::build`], on an already open store.
    pub async fn build_with_store(
        config: &Config,
        store: Arc<dyn EventStore>,
    ) -> Result<Self, StartError> {
        let throttle = LoginThrottle::new(config.login_max_failures, config.login_window());
        let auth = Arc::new(Auth::start(store, config.token_ttl(), throttle).await?);
        let listener = GrpcListener::bind(config.listen).await?;
        Ok(Self { listener, auth })
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
    pub fn auth(&self) -> Arc<Auth> {
        self.auth.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let service = AuthServiceServer::new(AuthGrpc::new(self.auth));
        self.listener.serve(service, shutdown).await?;
        Ok(())
    }
}
