use std::net::SocketAddr;
use std::time::Duration;

/// auth-service configuration: every flag is also an environment variable.
/// The defaults run with no configuration at all.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "auth-service")]
#[command(next_help_heading = "auth-service")]
pub struct Config {
    /// Address the gRPC server listens on (port 0: any free port).
    #[arg(
        id = "auth-listen",
        long = "auth-listen",
        env = "AUTH_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Event store URL: sqlite://path/to/file.db or postgres://user@host/db.
    #[arg(
        id = "auth-store-url",
        long = "auth-store-url",
        env = "AUTH_STORE_URL",
        default_value = "sqlite://data/auth.db"
    )]
    pub store_url: String,
    /// How long a token lives, in seconds.
    #[arg(
        id = "auth-token-ttl-secs",
        long = "auth-token-ttl-secs",
        env = "AUTH_TOKEN_TTL_SECS",
        default_value_t = 36_000
    )]
    pub token_ttl_secs: u64,
    /// Failed logins for one username within the window before logins are refused.
    #[arg(
        id = "auth-login-max-failures",
        long = "auth-login-max-failures",
        env = "AUTH_LOGIN_MAX_FAILURES",
        default_value_t = 5
    )]
    pub login_max_failures: u32,
    /// The login throttling window, in seconds.
    #[arg(
        id = "auth-login-window-secs",
        long = "auth-login-window-secs",
        env = "AUTH_LOGIN_WINDOW_SECS",
        default_value_t = 900
    )]
    pub login_window_secs: u64,
}

impl Config {
    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    /// The login throttling window.
    pub fn login_window(&self) -> Duration {
        Duration::from_secs(self.login_window_secs)
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
