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
    /// Where the read model's snapshot is kept, so that a start replays
    /// only the events after it: a file path; `auto`, beside a SQLite
    /// store's file (`<file>.auth.snapshot`) and none on other stores;
    /// `off`, none. A damaged snapshot, one of another code version or of
    /// another database is ignored (full replay). Replicas may share a file.
    #[arg(long, env, default_value = "auto")]
    pub auth_snapshot: String,
    /// Events applied between two snapshots (one is also saved at stop).
    #[arg(long, env, default_value_t = 100_000)]
    pub auth_snapshot_every: u64,
    /// Address of a plain HTTP listener serving `GET /metrics` (Prometheus:
    /// gRPC calls by method and status, the read model's lag behind the
    /// store, event-store appends); `off` for none.
    #[arg(long, env, default_value = "127.0.0.1:9101")]
    pub auth_metrics_listen: platform::MaybeAddr,
    /// How long a token lives, in seconds.
    #[arg(long, env, default_value_t = 36_000)]
    pub auth_token_ttl_secs: u64,
    /// Failed logins for one username from one client address before each
    /// further attempt waits (1 s, doubling with each failure).
    #[arg(long, env, default_value_t = 5)]
    pub auth_login_max_failures: u32,
    /// Failed logins for one username from all addresses together before
    /// each further attempt waits.
    #[arg(long, env, default_value_t = 20)]
    pub auth_login_max_failures_per_user: u32,
    /// The longest wait between attempts, and how long failures are remembered, in seconds.
    #[arg(long, env, default_value_t = 900)]
    pub auth_login_window_secs: u64,
    /// Password hashes (logins, registrations) waiting for a hashing thread
    /// beyond which requests are refused at once with UNAVAILABLE.
    #[arg(long, env, default_value_t = 64)]
    pub auth_hash_queue: usize,
}

impl Config {
    /// Where and how often the read model is snapshotted.
    pub fn snapshot_policy(&self) -> Option<event_sourcing::read_model::SnapshotPolicy> {
        event_sourcing::read_model::SnapshotPolicy::from_setting(
            &self.auth_snapshot,
            &self.auth_store_url,
            "auth",
            self.auth_snapshot_every,
        )
    }

    /// The token lifetime.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth_token_ttl_secs)
    }

    /// The login throttle's limits.
    pub fn login_limits(&self) -> crate::throttle::Limits {
        crate::throttle::Limits {
            per_client: self.auth_login_max_failures,
            per_user: self.auth_login_max_failures_per_user,
            base_pause: Duration::from_secs(1),
            window: Duration::from_secs(self.auth_login_window_secs),
        }
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
