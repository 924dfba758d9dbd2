//! The gateway on its own: `gateway --help` lists every setting.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc malloc's arena locks showed up as the top cost under load (futex
// waits in malloc/free); mimalloc has none of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        let ok =
            platform::probe::http_ok(platform::probe::local(cli.config.listen), "/healthz").await;
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    platform::init_tracing();
    let result = async {
        let app = gateway::Application::build(&cli.config).await?;
        app.run_until_stopped(platform::shutdown_signal()).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            ExitCode::FAILURE
        }
    }
}
