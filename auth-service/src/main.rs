//! auth-service on its own: `auth-service --help` lists every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc malloc's arena locks showed up as the top cost under load (futex
// waits in malloc/free); mimalloc has none of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Users and tokens as events, served over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: auth_service::Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the service at --auth-listen answers its gRPC health check
    /// as serving, else 1 (for container health checks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        let serving =
            platform::probe::grpc_serving(platform::probe::local(cli.config.listen)).await;
        return if serving {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    platform::init_tracing();
    let app = match auth_service::Application::build(&cli.config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "auth-service cannot start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(platform::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "auth-service failed");
            ExitCode::FAILURE
        }
    }
}
