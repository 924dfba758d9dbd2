//! The all-in-one launcher: every service of the platform in one process, on
//! the embedded SQLite store under `./data/`, REST on 127.0.0.1:8000. Each
//! service also has its own binary for multi-process deployments; the flags
//! and environment variables here are theirs.

use std::process::ExitCode;

use clap::Parser;
use movies::{Stack, Wiring};

/// Runs the movie-rating platform in one process.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: movies::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    platform::init_tracing("movies");
    let result = async {
        let stack = Stack::build(&cli.config, Wiring::InProcess).await?;
        tracing::info!(rest = %stack.gateway_addr(), "movies is up");
        stack.run_until_stopped(platform::shutdown_signal()).await
    }
    .await;
    platform::telemetry::shutdown().await;
    platform::exit_code("movies", result)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
