//! The gateway on its own: `gateway --help` lists every setting.

use std::process::ExitCode;

fn main() -> ExitCode {
    platform::runtime().block_on(run())
}

async fn run() -> ExitCode {
    let about = "The public REST API, translated into gRPC.";
    let (config, healthcheck) = platform::parse_cli::<gateway::Config>("gateway", about);
    let listen = platform::probe::local(config.gateway_listen);
    let probe = healthcheck.then(|| platform::probe::http_ok(listen, "/healthz"));
    let serve = async {
        let app = gateway::Application::build(&config).await?;
        app.run_until_stopped(platform::shutdown_signal()).await
    };
    platform::run_binary("gateway", probe, serve).await
}
