//! The gateway on its own: `gateway --help` lists every setting.

use std::process::ExitCode;

use clap::Parser;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    platform::init_tracing();
    let cli = Cli::parse();
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
