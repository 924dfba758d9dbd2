//! The gateway on its own: `gateway --help` lists every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The public REST API, translated into gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: gateway::Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the gateway at --gateway-listen answers GET /healthz with
    /// 200, else 1 (for container health checks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        let listen = platform::probe::local(cli.config.listen);
        return platform::probe_exit(platform::probe::http_ok(listen, "/healthz").await);
    }
    platform::init_tracing();
    let result = async {
        let app = gateway::Application::build(&cli.config).await?;
        app.run_until_stopped(platform::shutdown_signal()).await
    };
    platform::exit_code("gateway", result.await)
}
