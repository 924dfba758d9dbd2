//! auth-service on its own: `auth-service --help` lists every setting.

use std::process::ExitCode;

fn main() -> ExitCode {
    platform::runtime().block_on(run())
}

async fn run() -> ExitCode {
    let about = "Users and tokens as events, served over gRPC.";
    let (config, healthcheck) = platform::parse_cli::<auth_service::Config>("auth-service", about);
    let listen = platform::probe::local(config.auth_listen);
    let probe = healthcheck.then(|| platform::probe::grpc_serving(listen));
    let serve = async {
        let app = auth_service::Application::build(&config).await?;
        app.run_until_stopped(platform::shutdown_signal()).await
    };
    platform::run_binary("auth-service", probe, serve).await
}
