//! auth-service on its own: `auth-service --help` lists every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        let listen = platform::probe::local(cli.config.listen);
        return platform::probe_exit(platform::probe::grpc_serving(listen).await);
    }
    platform::init_tracing();
    let result = async {
        let app = auth_service::Application::build(&cli.config).await?;
        app.run_until_stopped(platform::shutdown_signal()).await
    };
    platform::exit_code("auth-service", result.await)
}
