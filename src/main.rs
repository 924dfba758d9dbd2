//! The all-in-one launcher: every service of the platform in one process, on
//! the embedded SQLite store under `./data/`. Each service also has its own
//! binary for multi-process deployments; the flags and environment variables
//! here are theirs.

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Runs the movie-rating platform in one process.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    auth: auth_service::Config,
    #[command(flatten)]
    catalog: catalog_service::Config,
}

/// In one process the catalog asks auth's in-memory read model directly: the
/// same answer as the `Authenticate` RPC (revocations included, at once)
/// without a gRPC round trip.
struct InProcessIdentity(Arc<auth_service::Auth>);

#[async_trait]
impl catalog_service::Identity for InProcessIdentity {
    async fn user_id(&self, token: &str) -> Result<i64, catalog_service::domain::CatalogError> {
        self.0
            .authenticate(token)
            .map(|u| u.id)
            .map_err(|_| catalog_service::domain::CatalogError::InvalidToken)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    platform::init_tracing();
    let mut cli = Cli::parse();
    // Everything listens on loopback by default: no service key needed to
    // follow the catalog's events unless one is set.
    cli.catalog.open_subscriptions |= cli.catalog.service_key.is_none();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "movies failed");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(cli: Cli) -> Result<(), BoxError> {
    let auth = auth_service::Application::build(&cli.auth).await?;
    let identity = Arc::new(InProcessIdentity(auth.auth()));
    let catalog_store = event_store::open(&cli.catalog.store_url).await?;
    let catalog =
        catalog_service::Application::build_with(&cli.catalog, catalog_store, identity).await?;

    // One shutdown signal, fanned out to every server.
    let (stop_tx, stop) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = JoinSet::new();
    let on_stop = stopped(stop.clone());
    servers.spawn(async move {
        (
            "auth-service",
            auth.run_until_stopped(on_stop)
                .await
                .map_err(BoxError::from),
        )
    });
    let on_stop = stopped(stop.clone());
    servers.spawn(async move {
        (
            "catalog-service",
            catalog
                .run_until_stopped(on_stop)
                .await
                .map_err(BoxError::from),
        )
    });

    let mut failed = false;
    tokio::select! {
        () = platform::shutdown_signal() => {}
        Some(ended) = servers.join_next() => {
            failed = true;
            report(ended);
        }
    }
    // Servers finish their in-flight calls; every acknowledged write is
    // already durable in its store, so nothing else needs flushing.
    let _ = stop_tx.send(true);
    while let Some(ended) = servers.join_next().await {
        failed |= report(ended);
    }
    if failed {
        Err("a service stopped unexpectedly".into())
    } else {
        Ok(())
    }
}

/// Logs how a server ended; answers whether that was a failure.
fn report(ended: Result<(&'static str, Result<(), BoxError>), tokio::task::JoinError>) -> bool {
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
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
