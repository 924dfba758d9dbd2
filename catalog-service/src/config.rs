use std::net::SocketAddr;

/// catalog-service configuration: every flag is also an environment variable.
/// The defaults run with no configuration at all.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "catalog-service")]
#[command(next_help_heading = "catalog-service")]
pub struct Config {
    /// Address the gRPC server listens on (port 0: any free port).
    #[arg(long, env, default_value = "127.0.0.1:50052")]
    pub catalog_listen: SocketAddr,
    /// Event store URL: sqlite://path/to/file.db or postgres://user@host/db.
    #[arg(
        long,
        env,
        hide_env_values = true,
        default_value = "sqlite://data/catalog.db"
    )]
    pub catalog_store_url: String,
    /// Address of a plain HTTP listener serving `GET /metrics` (Prometheus:
    /// as auth-service's, plus
    /// live event-feed subscribers); `off` for none.
    #[arg(long, env, default_value = "127.0.0.1:9102")]
    pub catalog_metrics_listen: platform::MaybeAddr,
    /// Where auth-service answers `Authenticate`.
    #[arg(long, env, default_value = "http://127.0.0.1:50051")]
    pub catalog_auth_url: String,
    /// Key internal consumers must send (metadata `x-service-key`) to call
    /// SubscribeEvents. Without one, SubscribeEvents is refused, unless
    /// `--catalog-open-subscriptions` is given.
    #[arg(long, env, hide_env_values = true)]
    pub catalog_service_key: Option<String>,
    /// Let anyone call SubscribeEvents when no service key is set (the
    /// all-in-one launcher's default: everything is on loopback).
    #[arg(long, env)]
    pub catalog_open_subscriptions: bool,
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
