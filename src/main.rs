//! The all-in-one launcher: every service of the platform in one process, on
//! the embedded SQLite store under `./data/`, REST on 127.0.0.1:8000. Each
//! service also has its own binary for multi-process deployments; the flags
//! and environment variables here are theirs.

use std::process::ExitCode;

use clap::Parser;
use movies::{Stack, Wiring};

/// Runs the movie-rating platform in one process.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: movies::Config,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Copies the auth and catalog stores (the same flags and variables as
    /// a run name them) to other stores, for instance from the embedded
    /// SQLite files to PostgreSQL: every event with its position, version,
    /// id, metadata and time, and the login throttle's records. Stop the
    /// services first. Resumable: run it again after an interruption.
    Copy {
        #[command(flatten)]
        to: movies::copy::CopyArgs,
        #[command(flatten)]
        config: Box<movies::Config>,
    },
    /// The erasure list, for backups: a backup taken before an erasure
    /// still holds the user's key; after restoring one, reapply the list
    /// (see README, "Backups and erasures"). Stop the services first.
    Erasures {
        #[command(subcommand)]
        action: Erasures,
        #[command(flatten)]
        config: Box<movies::Config>,
    },
}

/// What to do with the erasure list.
#[derive(clap::Subcommand)]
enum Erasures {
    /// Prints the id of every user erased in the auth store, one per line
    /// (ids only): keep it beside your backups, not in them.
    List,
    /// After a restore from a backup older than some erasures: erases again
    /// every user of the list in FILE (one id per line) the store holds.
    Reapply {
        /// The list, as `list` printed it.
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    platform::runtime().block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    platform::init_tracing("movies");
    platform::private_files();
    let result = async {
        match &cli.command {
            Some(Command::Copy { to, config }) => return movies::copy::run(config, to).await,
            Some(Command::Erasures { action, config }) => {
                return match action {
                    Erasures::List => movies::erasures::list(config).await,
                    Erasures::Reapply { file } => movies::erasures::reapply(config, file).await,
                };
            }
            None => {}
        }
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
