use std::net::SocketAddr;
use std::time::Duration;

/// gateway configuration: every flag is also an environment variable. The
/// defaults run with no configuration at all.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "gateway")]
#[command(next_help_heading = "gateway")]
pub struct Config {
    /// Address the REST API listens on (port 0: any free port).
    #[arg(long, env, default_value = "127.0.0.1:8000")]
    pub gateway_listen: SocketAddr,
    /// Where auth-service listens.
    #[arg(long, env, default_value = "http://127.0.0.1:50051")]
    pub gateway_auth_url: String,
    /// Where catalog-service listens.
    #[arg(long, env, default_value = "http://127.0.0.1:50052")]
    pub gateway_catalog_url: String,
    /// Deadline of every gRPC call, in milliseconds; past it the client gets 504.
    #[arg(long, env, default_value_t = 5_000)]
    pub gateway_grpc_timeout_ms: u64,
}

impl Config {
    /// The deadline of every gRPC call.
    pub fn grpc_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_grpc_timeout_ms.max(1))
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
