//! auth-service: users and tokens as events, served over gRPC.
//!
//! Where things are:
//! - [`domain`]: the rules: value types, events, and the pure decider of one
//!   user's stream (given/when/then tests beside it);
//! - [`read_model`]: users and live tokens by digest, a pure fold over the
//!   events: what `Authenticate` answers from;
//! - [`service`]: the gRPC edge: parsing, hashing, one command or query each;
//! - [`error`]: the errors and their one mapping to gRPC statuses;
//! - `password`, `token`, `throttle`: argon2id, tokens and their digests,
//!   failed-login counting;
//! - [`seal`], [`keys`]: crypto-shredding: personal data sealed under a key
//!   per user, kept in a key table beside the store, and names MACed
//!   under the server's pepper.
//!
//! A library with a thin `main`: tests, the all-in-one launcher and the
//! binary all start the same [`Application`].

mod config;
pub mod domain;
pub mod error;
mod feed;
pub mod keys;
mod password;
mod pg;
pub mod read_model;
pub mod seal;
mod service;
mod sessions;
mod throttle;
pub mod token;
mod token_table;
pub mod upgrade;

use std::future::Future;

use std::sync::Arc;

use event_sourcing::consumer_group::ConsumerGroups;
use event_sourcing::read_model::Projection;
use event_store::{EventStore, EventStoreError};
use platform::grpc::{GrpcListener, ServeError};
use proto::auth::auth_service_server::AuthServiceServer;

pub use config::{Config, Secret};
use keys::Keyring;
pub use service::AuthGrpc;
pub use throttle::{BooksCopied, LoginThrottle, copy_books};

use crate::password::PasswordHasher;
use crate::read_model::AuthView;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The event store could not be opened, or the read model rebuilt.
    #[error("event store: {0}")]
    Store(#[from] EventStoreError),
    /// The hashing threads or the login throttle could not start.
    #[error("auth: {0}")]
    Auth(#[from] error::AuthError),
    /// A setting cannot be used.
    #[error("auth: {0}")]
    Config(#[from] config::ConfigError),
    /// The key table could not be opened.
    #[error("auth: {0}")]
    Keys(#[from] keys::KeyError),
    /// The server could not listen, or failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The webhooks file cannot be used.
    #[error(transparent)]
    Webhooks(#[from] platform::webhooks::WebhookError),
}

/// A bound, ready auth-service.
pub struct Application {
    listener: GrpcListener,
    service: AuthGrpc,
    view: Arc<Projection<AuthView>>,
    /// Follows erasures made through other replicas (see [`follow_erasures`]).
    erasures: ErasureFollower,
    /// Delivers to the webhook endpoints while the service lives.
    _webhooks: platform::webhooks::Webhooks,
}

/// The task running [`follow_erasures`], and how to stop it.
struct ErasureFollower {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ErasureFollower {
    fn start(view: &Arc<Projection<AuthView>>, keyring: Arc<Keyring>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(follow_erasures(Arc::downgrade(view), keyring, stopped));
        Self { stop, task }
    }

    /// Stops it, and waits for a snapshot it is writing to be written
    /// (so that nothing writes the store's files once the service stopped).
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the erasure follower failed");
        }
    }
}

/// How often a replica looks for erasures made elsewhere.
const ERASURES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// On every replica, once its read model has applied an erasure made
/// anywhere: the erased users' keys leave this process's memory, and its
/// snapshot is rewritten without them. Runs until `stop` resolves (or its
/// read model is dropped).
async fn follow_erasures(
    view: std::sync::Weak<Projection<AuthView>>,
    keyring: Arc<Keyring>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Some(mut seen) = view.upgrade().map(|v| v.read().erased().len()) else {
        return;
    };
    let mut every = tokio::time::interval(ERASURES_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = &mut stop => return,
        }
        let Some(view) = view.upgrade() else { return };
        let erased = view
            .read()
            .erased()
            .get(seen..)
            .unwrap_or_default()
            .to_vec();
        if erased.is_empty() {
            continue;
        }
        seen += erased.len();
        for user in erased {
            keyring.forget(user);
        }
        if let Err(e) = view.save_snapshot().await {
            tracing::error!(error = %e, "cannot rewrite the snapshot after an erasure");
        }
    }
}

impl platform::grpc::Served for Application {
    fn listener(&self) -> &GrpcListener {
        &self.listener
    }
}

impl Application {
    /// Opens the store `config` names, rebuilds the read model and binds the
    /// listen address (port 0 picks a free port).
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let store = event_store::open(&config.auth_store_url).await?;
        Self::build_with_store(config, store).await
    }

    /// As [`Application::build`], on an already open store.
    pub async fn build_with_store(
        config: &Config,
        store: Arc<dyn EventStore>,
    ) -> Result<Self, StartError> {
        let hasher = PasswordHasher::new(config.auth_hash_queue)?;
        let view = Projection::start_with_snapshots(
            store.clone(),
            AuthView::default(),
            config.snapshot_policy(),
        )
        .await?;
        tracing::info!(
            users = view.read().user_count(),
            tokens = view.read().token_count(),
            from_snapshot = view.started_from(),
            "auth read model ready"
        );
        let kek = config.auth_key_encryption_key.clone().map(|s| s.0);
        let keyring = Keyring::open(&config.key_store_url()?, kek).await?;
        let pepper = keyring
            .pepper(config.auth_pepper.clone().map(|s| s.0))
            .await?;
        let throttle = LoginThrottle::open(
            &config.auth_store_url,
            config.login_limits(),
            pepper.clone(),
        )
        .await?;
        let view = Arc::new(view);
        let keyring = Arc::new(keyring);
        let groups = Arc::new(ConsumerGroups::new(
            store.clone(),
            feed::opener(pepper.clone()),
            platform::feed::settings(config.auth_feed_lease_ms),
        ));
        let service = AuthGrpc::new(
            store.clone(),
            view.clone(),
            hasher,
            throttle,
            config.lifetimes(),
            (pepper, keyring.clone()),
            config.refresh_policy(),
        );
        service.destroy_erased_keys().await?;
        let erasures = ErasureFollower::start(&view, keyring);
        let mut listener =
            GrpcListener::bind(config.auth_listen, config.auth_metrics_listen.0).await?;
        let access = platform::feed::Access::from_config(
            config.auth_service_key.as_deref(),
            config.auth_open_subscriptions,
        );
        listener.add_service(platform::feed::FeedGrpc::new(groups.clone(), access).server());
        let webhooks = platform::webhooks::Webhooks::from_file(
            config.auth_webhooks.as_deref(),
            groups.clone(),
            platform::webhooks::Timing {
                timeout: std::time::Duration::from_millis(config.auth_webhook_timeout_ms.max(100)),
                backoff: std::time::Duration::from_millis(config.auth_webhook_backoff_ms.max(10)),
            },
        )?;
        let projection = view.metrics_source("auth", store.clone());
        let feed_metrics = platform::feed::metrics("auth", groups);
        let hooks = webhooks.metrics("auth");
        listener.add_metrics(Arc::new(move || {
            let (projection, feed, hooks) = (projection(), feed_metrics(), hooks());
            Box::pin(async move { projection.await + &feed.await + &hooks })
        }));
        Ok(Self {
            listener,
            service,
            view,
            erasures,
            _webhooks: webhooks,
        })
    }

    /// Stops without serving (a command run on the store, not a server):
    /// the read model's follower and the erasure follower end, so the
    /// store's files are closed when this returns and the last handle goes.
    pub async fn close(self) {
        self.erasures.stop().await;
        self.view.close().await;
    }

    /// Every user erased in this store, oldest first (ids only): the
    /// erasure list kept beside backups (see README).
    pub fn erasures(&self) -> Vec<domain::UserId> {
        self.service.erasures()
    }

    /// Erases again every user of `users` this store still holds (after a
    /// restore from a backup older than their erasure); the ids erased now.
    pub async fn reapply_erasures(
        &self,
        users: &[domain::UserId],
    ) -> Result<Vec<domain::UserId>, StartError> {
        Ok(self.service.reapply_erasures(users).await?)
    }

    /// The token check `Authenticate` answers from, for services in this
    /// process: the same linearizable read, without encoding a call.
    pub fn token_check(&self) -> Arc<dyn platform::TokenCheck> {
        Arc::new(self.service.token_check())
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let service = AuthServiceServer::new(self.service)
            .max_decoding_message_size(platform::grpc::MAX_REQUEST_BYTES);
        self.listener.serve(service, shutdown).await?;
        self.erasures.stop().await;
        self.view.close().await;
        Ok(())
    }
}
