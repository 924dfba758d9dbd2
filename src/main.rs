//! The all-in-one launcher: every service of the platform in one process, on
//! the embedded SQLite store under `./data/`. Each service also has its own
//! binary for multi-process deployments; the flags and environment variables
//! here are theirs.

use std::process::ExitCode;

use clap::Parser;

/// Runs the movie-rating platform in one process.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    auth: auth_service::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    platform::init_tracing();
    let cli = Cli::parse();
    let auth = match auth_service::Application::build(&cli.auth).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "auth-service cannot start");
            return ExitCode::FAILURE;
        }
    };
    match auth.run_until_stopped(platform::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "auth-service failed");
            ExitCode::FAILURE
        }
    }
}
