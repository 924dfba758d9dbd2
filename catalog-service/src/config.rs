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
    /// Where the read models' snapshot is kept, so that a start replays
    /// only the events after it: a file path; `auto`, beside a SQLite
    /// store's file (`<file>.catalog.snapshot`) and none on other stores;
    /// `off`, none. A damaged snapshot, one of another code version or of
    /// another database is ignored (full replay). Replicas may share a file.
    #[arg(long, env, default_value = "auto")]
    pub catalog_snapshot: String,
    /// Events applied between two snapshots (one is also saved at stop).
    #[arg(long, env, default_value_t = 100_000)]
    pub catalog_snapshot_every: u64,
    /// 64 hex digits: the key snapshot files are tagged under (HMAC-SHA256;
    /// a file without this service's tag is refused and the model
    /// replayed). Unset: the store's database keeps one (table
    /// `es_secrets`); on EventStoreDB, which keeps none, snapshots are then
    /// off. Never logged.
    #[arg(long, env, hide_env_values = true)]
    pub catalog_snapshot_key: Option<event_sourcing::read_model::snapshot::SnapshotKey>,
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
    /// How long, in milliseconds, a replica holds a consumer group's
    /// partitions and lists its members without renewing them (renewed
    /// every tenth of it): how long the partitions of a replica that died
    /// wait before another takes them.
    #[arg(long, env, default_value_t = platform::feed::DEFAULT_LEASE_MS)]
    pub catalog_feed_lease_ms: u64,
    /// A JSON file listing webhook endpoints: `[{"url": "https://…",
    /// "secret": "whsec_…", "types": ["…"], "allow_private": false}]` (see
    /// README, "Building on the events"). Unset: no webhooks.
    #[arg(long, env)]
    pub catalog_webhooks: Option<std::path::PathBuf>,
    /// The most one webhook request may take, in milliseconds.
    #[arg(long, env, default_value_t = 10_000)]
    pub catalog_webhook_timeout_ms: u64,
    /// The wait before a failed webhook's first retry, in milliseconds;
    /// doubled for each next one (with jitter, at most 60 s).
    #[arg(long, env, default_value_t = 1_000)]
    pub catalog_webhook_backoff_ms: u64,
    /// Movies and ratings one user may add in any window of
    /// `CATALOG_WRITE_QUOTA_WINDOW_SECS` (all replicas together); past it,
    /// 429 with `Retry-After`. 0: no quota.
    #[arg(long, env, default_value_t = 600)]
    pub catalog_write_quota: u32,
    /// The write quota's sliding window, in seconds.
    #[arg(long, env, default_value_t = 60)]
    pub catalog_write_quota_window_secs: u64,
    /// `m` of `?ordering=score` (IMDb's weighted rating): how many ratings
    /// a movie needs before its own mean counts as much as the mean of
    /// every rating. 10 keeps one lone 5 from topping the list, while a
    /// movie rated by dozens ranks by its own mean.
    #[arg(long, env, default_value_t = 10)]
    pub catalog_score_min_votes: u64,
}

impl Config {
    /// The per-user write quota.
    pub fn write_quota(&self) -> crate::service::WriteQuota {
        crate::service::WriteQuota {
            writes: self.catalog_write_quota,
            window: std::time::Duration::from_secs(self.catalog_write_quota_window_secs.max(1)),
        }
    }

    /// Where and how often the read models are snapshotted.
    pub fn snapshot_policy(&self) -> Option<event_sourcing::read_model::SnapshotPolicy> {
        event_sourcing::read_model::SnapshotPolicy::from_setting(
            &self.catalog_snapshot,
            &self.catalog_store_url,
            "catalog",
            self.catalog_snapshot_every,
        )
        .map(|p| p.with_key(self.catalog_snapshot_key.clone()))
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
