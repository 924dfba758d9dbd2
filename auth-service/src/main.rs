//! auth-service on its own: `auth-service --help` lists every setting.

use std::process::ExitCode;

use clap::Parser;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    platform::init_tracing();
    let cli = Cli::parse();
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
