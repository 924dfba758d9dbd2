//! The whole platform in one process: auth-service, catalog-service and the
//! gateway, each the same `Application` its own binary runs. `main.rs` and
//! the end-to-end tests both start this [`Stack`].

pub mod copy;
pub mod erasures;

use platform::grpc::Served as _;
use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A boxed error from any service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The configuration of every service, as flags and environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Config {
    /// auth-service.
    #[command(flatten)]
    pub auth: auth_service::Config,
    /// catalog-service.
    #[command(flatten)]
    pub catalog: catalog_service::Config,
    /// gateway. Its backend URLs are ignored here: it talks to the services
    /// started beside it.
    #[command(flatten)]
    pub gateway: gateway::Config,
}

impl Config {
    /// Where the launcher keeps catalog-service's key for `SubscribeEvents`
    /// and the feed when none is set: beside the catalog's SQLite store,
    /// else in the working directory.
    pub fn service_key_file(&self) -> std::path::PathBuf {
        key_file(&self.catalog.catalog_store_url, "catalog-service-key")
    }

    /// The same for auth-service's feed: `auth-service-key` beside the
    /// auth store.
    pub fn auth_service_key_file(&self) -> std::path::PathBuf {
        key_file(&self.auth.auth_store_url, "auth-service-key")
    }
}

/// `name` beside the SQLite store at `store_url`, else in the working
/// directory.
fn key_file(store_url: &str, name: &str) -> std::path::PathBuf {
    let dir = match event_store::StoreUrl::parse(store_url) {
        Ok(event_store::StoreUrl::Sqlite(db)) => db.parent().map(std::path::Path::to_path_buf),
        _ => None,
    };
    dir.filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| ".".into())
        .join(name)
}

/// The key in `file`, or a new random one written there, the owner's only
/// (0600): what a local consumer of `SubscribeEvents` reads, and no other
/// user of the machine can.
fn service_key(file: &std::path::Path) -> std::io::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let key = hex::encode(bytes);
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(file)?, key.as_bytes())?;
    Ok(key)
}

/// How the services reach each other inside the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// As one process should: the gateway calls both services through the
    /// same gRPC services and codec, handed over in-process, without HTTP/2
    /// or sockets; the catalog checks tokens by what auth's `Authenticate`
    /// runs, without encoding a call.
    InProcess,
    /// As separate processes do: every hop is gRPC over loopback TCP (a
    /// test fixture: the end-to-end suite runs on both).
    Grpc,
}

/// The three services, bound and ready.
pub struct Stack {
    auth: auth_service::Application,
    catalog: catalog_service::Application,
    gateway: gateway::Application,
}

impl Stack {
    /// Opens the stores, rebuilds the read models and binds every address.
    pub async fn build(config: &Config, wiring: Wiring) -> Result<Self, BoxError> {
        let mut auth_config = config.auth.clone();
        // The same for auth's feed.
        if auth_config.auth_service_key.is_none() && !auth_config.auth_open_subscriptions {
            let file = config.auth_service_key_file();
            auth_config.auth_service_key = Some(service_key(&file)?);
            tracing::info!(file = %file.display(), "auth's feed takes the key in this file");
        }
        let auth = auth_service::Application::build(&auth_config).await?;
        let mut catalog_config = config.catalog.clone();
        // Following the catalog's events always takes a key: without one
        // set, a key of the launcher's own, in a file only this user reads
        // (any local process could otherwise learn who rated what).
        if catalog_config.catalog_service_key.is_none()
            && !catalog_config.catalog_open_subscriptions
        {
            let file = config.service_key_file();
            catalog_config.catalog_service_key = Some(service_key(&file)?);
            tracing::info!(file = %file.display(), "SubscribeEvents and the catalog's feed take the key in this file");
        }
        let catalog = match wiring {
            Wiring::InProcess => {
                let store = event_store::open(&catalog_config.catalog_store_url).await?;
                let identity = catalog_service::Identity::Local(auth.token_check());
                catalog_service::Application::build_with(&catalog_config, store, identity).await?
            }
            Wiring::Grpc => {
                catalog_config.catalog_auth_url = format!("http://{}", auth.local_addr());
                catalog_service::Application::build(&catalog_config).await?
            }
        };
        let gateway_config = gateway::Config {
            gateway_auth_url: format!("http://{}", auth.local_addr()),
            gateway_catalog_url: format!("http://{}", catalog.local_addr()),
            ..config.gateway.clone()
        };
        let gateway = match wiring {
            Wiring::InProcess => {
                let backends = gateway::Backends::with_channels(
                    auth.in_process_channel(),
                    catalog.in_process_channel(),
                    gateway_config.grpc_timeout(),
                )
                .report(auth.metrics())
                .report(catalog.metrics())
                .catalog_direct(catalog.local_calls());
                gateway::Application::build_with(&gateway_config, backends).await?
            }
            Wiring::Grpc => gateway::Application::build(&gateway_config).await?,
        };
        Ok(Self {
            auth,
            catalog,
            gateway,
        })
    }

    /// Where the REST API listens.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    /// Where the gateway serves `/metrics` (all three services), if it does.
    pub fn gateway_metrics_addr(&self) -> Option<SocketAddr> {
        self.gateway.metrics_addr()
    }

    /// Where auth-service listens.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth.local_addr()
    }

    /// Where catalog-service listens.
    pub fn catalog_addr(&self) -> SocketAddr {
        self.catalog.local_addr()
    }

    /// Serves until `shutdown` resolves or a service fails; then stops the
    /// gateway, letting in-flight requests finish (their calls to the
    /// services included), and only then the services. Every acknowledged
    /// write is already durable in its store, so nothing else needs flushing.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), BoxError> {
        let (stop_gateway, gateway_stop) = watch::channel(false);
        let (stop_services, services_stop) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut servers = JoinSet::new();
        let (auth, catalog, gateway) = (self.auth, self.catalog, self.gateway);
        let on_stop = stopped(gateway_stop);
        servers.spawn(async move {
            let ended = gateway.run_until_stopped(on_stop).await;
            (GATEWAY, ended.map_err(BoxError::from))
        });
        let on_stop = stopped(services_stop.clone());
        servers.spawn(async move {
            let ended = catalog.run_until_stopped(on_stop).await;
            ("catalog-service", ended.map_err(BoxError::from))
        });
        let on_stop = stopped(services_stop);
        servers.spawn(async move {
            let ended = auth.run_until_stopped(on_stop).await;
            ("auth-service", ended.map_err(BoxError::from))
        });

        let mut failed = false;
        let mut gateway_running = true;
        tokio::select! {
            () = shutdown => {}
            Some(ended) = servers.join_next() => {
                gateway_running = !ended_is(&ended, GATEWAY);
                failed = report(ended);
            }
        }
        let _ = stop_gateway.send(true);
        while gateway_running && let Some(ended) = servers.join_next().await {
            gateway_running = !ended_is(&ended, GATEWAY);
            failed |= report(ended);
        }
        let _ = stop_services.send(true);
        while let Some(ended) = servers.join_next().await {
            failed |= report(ended);
        }
        if failed {
            Err("a service stopped unexpectedly".into())
        } else {
            Ok(())
        }
    }
}

const GATEWAY: &str = "gateway";

type Ended = Result<(&'static str, Result<(), BoxError>), tokio::task::JoinError>;

/// Whether `ended` is the end of the server called `name` (a panicked task
/// counts as any: its name is lost, and everything stops anyway).
fn ended_is(ended: &Ended, name: &str) -> bool {
    ended.as_ref().map_or(true, |(n, _)| *n == name)
}

/// Logs how a server ended; answers whether that was a failure (a server
/// ending before the shutdown signal is one, even without an error).
fn report(ended: Ended) -> bool {
    match ended {
        Ok((name, Ok(()))) => {
            tracing::info!(service = name, "stopped");
            false
        }
        Ok((name, Err(e))) => {
            tracing::error!(service = name, error = %e, "failed");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "a service panicked");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, service_key};

    #[test]
    fn the_service_key_is_kept_the_owners_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.catalog.catalog_store_url =
            format!("sqlite://{}", dir.path().join("data/catalog.db").display());
        let file = config.service_key_file();
        assert_eq!(file, dir.path().join("data/catalog-service-key"));
        let key = service_key(&file).unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(service_key(&file).unwrap(), key, "the same key next run");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        config.catalog.catalog_store_url = "postgres://localhost/catalog".into();
        assert_eq!(
            config.service_key_file(),
            std::path::Path::new("./catalog-service-key")
        );
    }
}
