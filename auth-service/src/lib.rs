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
use proto::auth::auth_service_server::AuthServiceServer;
use tonic::transport::server::TcpIncoming;

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
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A bound, ready auth-service.
pub struct Application {
    incoming: TcpIncoming,
    local_addr: SocketAddr,
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
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Ok(Self {
            incoming,
            local_addr,
            auth,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AuthServiceServer<AuthGrpc>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        tracing::info!(addr = %self.local_addr, "auth-service listening");
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AuthServiceServer::new(AuthGrpc::new(self.auth)))
            .serve_with_incoming_shutdown(self.incoming, shutdown)
            .await?;
        tracing::info!("auth-service stopped");
        Ok(())
    }
}
