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
    /// Whether every listener of the stack is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        [
            self.auth.auth_listen,
            self.catalog.catalog_listen,
            self.gateway.gateway_listen,
        ]
        .iter()
        .all(|addr| addr.ip().is_loopback())
    }
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
        let auth = auth_service::Application::build(&config.auth).await?;
        let mut catalog_config = config.catalog.clone();
        // Following the catalog's events needs no key only while nobody but
        // this machine can reach any of the stack's ports.
        catalog_config.catalog_open_subscriptions |=
            catalog_config.catalog_service_key.is_none() && config.loopback_only();
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
                .report(catalog.metrics());
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

    /// Where auth-service listens.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth.local_addr()
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
    use super::Config;

    #[test]
    fn subscriptions_open_only_while_every_listener_is_on_loopback() {
        let mut config = Config::default();
        assert!(config.loopback_only());
        config.gateway.gateway_listen = "0.0.0.0:8000".parse().unwrap();
        assert!(!config.loopback_only());
        config.gateway.gateway_listen = "[::1]:8000".parse().unwrap();
        config.catalog.catalog_listen = "192.168.1.10:50052".parse().unwrap();
        assert!(!config.loopback_only());
    }
}
