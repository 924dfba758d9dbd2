use std::net::SocketAddr;

/// catalog-service configuration: every flag is also an environment variable.
/// The defaults run with no configuration at all.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "catalog-service")]
#[command(next_help_heading = "catalog-service")]
pub struct Config {
    /// Address the gRPC server listens on (port 0: any free port).
    #[arg(
        id = "catalog-listen",
        long = "catalog-listen",
        env = "CATALOG_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub listen: SocketAddr,
    /// Event store URL: sqlite://path/to/file.db or postgres://user@host/db.
    #[arg(
        id = "catalog-store-url",
        long = "catalog-store-url",
        env = "CATALOG_STORE_URL",
        default_value = "sqlite://data/catalog.db"
    )]
    pub store_url: String,
    /// Where auth-service answers `Authenticate`.
    #[arg(
        id = "catalog-auth-url",
        long = "catalog-auth-url",
        env = "CATALOG_AUTH_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_url: String,
    /// Key internal consumers must send (metadata `x-service-key`) to call
    /// SubscribeEvents. Without one, SubscribeEvents is refused, unless
    /// `--catalog-open-subscriptions` is given.
    #[arg(
        id = "catalog-service-key",
        long = "catalog-service-key",
        env = "CATALOG_SERVICE_KEY",
        hide_env_values = true
    )]
    pub service_key: Option<String>,
    /// Let anyone call SubscribeEvents when no service key is set (the
    /// all-in-one launcher's default: everything is on loopback).
    #[arg(
        id = "catalog-open-subscriptions",
        long = "catalog-open-subscriptions",
        env = "CATALOG_OPEN_SUBSCRIPTIONS"
    )]
    pub open_subscriptions: bool,
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
