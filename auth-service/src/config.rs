use std::net::SocketAddr;
use std::time::Duration;

/// auth-service configuration: every flag is also an environment variable.
/// The defaults run with no configuration at all.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "auth-service")]
#[command(next_help_heading = "auth-service")]
pub struct Config {
    /// Address the gRPC server listens on (port 0: any free port).
    #[arg(long, env, default_value = "127.0.0.1:50051")]
    pub auth_listen: SocketAddr,
    /// Event store URL: sqlite://path/to/file.db or postgres://user@host/db.
    #[arg(
        long,
        env,
        hide_env_values = true,
        default_value = "sqlite://data/auth.db"
    )]
    pub auth_store_url: String,
    /// How long a token lives, in seconds.
    #[arg(long, env, default_value_t = 36_000)]
    pub auth_token_ttl_secs: u64,
    /// Failed logins for one username within the window before logins are refused.
    #[arg(long, env, default_value_t = 5)]
    pub auth_login_max_failures: u32,
    /// The login throttling window, in seconds.
    #[arg(long, env, default_value_t = 900)]
    pub auth_login_window_secs: u64,
}

impl Config {
    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth_token_ttl_secs)
    }

    /// The login throttling window.
    pub fn login_window(&self) -> Duration {
        Duration::from_secs(self.auth_login_window_secs)
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
