//! catalog-service on its own: `catalog-service --help` lists every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Movies and ratings as events, served over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: catalog_service::Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the service at --catalog-listen answers its gRPC health
    /// check as serving, else 1 (for container health checks).
    Healthcheck,
    /// Rebuild every read model from the events and print what it holds
    /// (counts, checkpoint, SHA-256 of the canonical snapshot); with
    /// --output, also write the snapshot as JSON. From the events alone: the
    /// service's own snapshot file (--catalog-snapshot) is not read.
    RebuildProjections {
        /// Where to write the snapshot.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    platform::runtime().block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Healthcheck) => {
            let listen = platform::probe::local(cli.config.catalog_listen);
            return platform::probe_exit(platform::probe::grpc_serving(listen).await);
        }
        Some(Command::RebuildProjections { output }) => {
            platform::init_tracing("catalog-service");
            rebuild(&cli.config, output).await
        }
        None => {
            platform::init_tracing("catalog-service");
            let served = serve(&cli.config).await;
            platform::telemetry::shutdown().await;
            served
        }
    };
    platform::exit_code("catalog-service", result)
}

async fn serve(config: &catalog_service::Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = catalog_service::Application::build(config).await?;
    app.run_until_stopped(platform::shutdown_signal()).await?;
    Ok(())
}

async fn rebuild(
    config: &catalog_service::Config,
    output: Option<std::path::PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = event_store::open(&config.catalog_store_url).await?;
    let started = std::time::Instant::now();
    let (catalog, checkpoint) = catalog_service::rebuild(&*store).await?;
    let elapsed = started.elapsed();
    println!(
        "rebuilt in {:.3} s: {} movies, {} ratings, checkpoint {checkpoint}, snapshot sha256 {}",
        elapsed.as_secs_f64(),
        catalog.movies.len(),
        catalog.ratings.len(),
        catalog.snapshot_digest()
    );
    if let Some(path) = output {
        std::fs::write(&path, catalog.snapshot())?;
        println!("snapshot written to {}", path.display());
    }
    Ok(())
}
