use std::net::SocketAddr;
use std::time::Duration;

use crate::seal::DataKey;

/// A setting that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The store is EventStoreDB and no key table is named.
    #[error(
        "AUTH_KEY_STORE_URL must name a key table (sqlite://file or postgres://…) beside an EventStoreDB store"
    )]
    KeyStoreNeeded,
}

/// The shortest first pause of the login throttle a start accepts.
pub const MIN_LOGIN_PAUSE_MS: u64 = 100;

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
    /// 64 hex digits: the key snapshot files are tagged under (HMAC-SHA256;
    /// a file without this service's tag is refused and the model
    /// replayed). Unset: the store's database keeps one (table
    /// `es_secrets`); on EventStoreDB, which keeps none, snapshots are then
    /// off. Never logged.
    #[arg(long, env, hide_env_values = true)]
    pub auth_snapshot_key: Option<event_sourcing::read_model::snapshot::SnapshotKey>,
    /// Address of a plain HTTP listener serving `GET /metrics` (Prometheus:
    /// gRPC calls by method and status, the read model's lag behind the
    /// store, event-store appends); `off` for none.
    #[arg(long, env, default_value = "127.0.0.1:9101")]
    pub auth_metrics_listen: platform::MaybeAddr,
    /// Key internal consumers must send (metadata `x-service-key`) to use
    /// the feed (`movies.feed.v1.FeedService`). Without one, the feed is
    /// refused, unless `--auth-open-subscriptions` is given.
    #[arg(long, env, hide_env_values = true)]
    pub auth_service_key: Option<String>,
    /// Let anyone use the feed when no service key is set.
    #[arg(long, env)]
    pub auth_open_subscriptions: bool,
    /// How long, in milliseconds, a replica holds a consumer group's
    /// partitions and lists its members without renewing them (renewed
    /// every tenth of it): how long the partitions of a replica that died
    /// wait before another takes them.
    #[arg(long, env, default_value_t = platform::feed::DEFAULT_LEASE_MS)]
    pub auth_feed_lease_ms: u64,
    /// A JSON file listing webhook endpoints: `[{"url": "https://…",
    /// "secret": "whsec_…", "types": ["…"], "allow_private": false}]` (see
    /// README, "Building on the events"). Unset: no webhooks.
    #[arg(long, env)]
    pub auth_webhooks: Option<std::path::PathBuf>,
    /// The most one webhook request may take, in milliseconds.
    #[arg(long, env, default_value_t = 10_000)]
    pub auth_webhook_timeout_ms: u64,
    /// The wait before a failed webhook's first retry, in milliseconds;
    /// doubled for each next one (with jitter, at most 60 s).
    #[arg(long, env, default_value_t = 1_000)]
    pub auth_webhook_backoff_ms: u64,
    /// How long a token lives, in seconds.
    #[arg(long, env, default_value_t = 36_000)]
    pub auth_token_ttl_secs: u64,
    /// Sliding expiry, as knox's `AUTO_REFRESH` (off by default, as in
    /// knox): each authenticated request moves its token's expiry to a full
    /// `AUTH_TOKEN_TTL_SECS` from now, at most once per
    /// `AUTH_TOKEN_MIN_REFRESH_SECS` and never past `AUTH_TOKEN_MAX_TTL_SECS`
    /// after its issue. Each move is one event.
    #[arg(long, env)]
    pub auth_token_auto_refresh: bool,
    /// The least move of an expiry worth a refresh, in seconds (knox's
    /// `MIN_REFRESH_INTERVAL`).
    #[arg(long, env, default_value_t = 60)]
    pub auth_token_min_refresh_secs: u64,
    /// No refresh moves a token's expiry past this long after its issue, in
    /// seconds (knox's `AUTO_REFRESH_MAX_TTL`); 0 for no cap. A stolen
    /// token that is kept in use dies at the cap all the same.
    #[arg(long, env, default_value_t = 30 * 86_400)]
    pub auth_token_max_ttl_secs: u64,
    /// How long an `Idempotency-Key` sent with a registration answers its
    /// retries, in seconds (README, "Idempotency keys on register").
    #[arg(long, env, default_value_t = 86_400)]
    pub auth_registration_key_ttl_secs: u64,
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
    /// The first wait once the free attempts are used, in milliseconds (it
    /// doubles with each further failure). At least 100: a shorter pause
    /// would let a guesser try names almost as fast as it could without one.
    #[arg(long, env, default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(MIN_LOGIN_PAUSE_MS..))]
    pub auth_login_base_pause_ms: u64,
    /// Where users' data keys are kept (see README, "Personal data"):
    /// `sqlite://file` or `postgres://…`; `auto`, beside the store (a
    /// `<file>.keys` file for SQLite, the same database for PostgreSQL; an
    /// EventStoreDB store needs one named).
    #[arg(long, env, hide_env_values = true, default_value = "auto")]
    pub auth_key_store_url: String,
    /// 64 hex digits: the secret usernames and client addresses are MACed
    /// under wherever they must be found without being readable (the
    /// throttle's books, logs). Unset: one is generated and kept in the
    /// key table (a dump of it then holds it too). Never logged.
    #[arg(long, env, hide_env_values = true)]
    pub auth_pepper: Option<Secret>,
    /// 64 hex digits: wraps every data key in the key table, so that a copy
    /// of the table alone opens nothing. Unset: keys are stored unwrapped.
    /// Never logged.
    #[arg(long, env, hide_env_values = true)]
    pub auth_key_encryption_key: Option<Secret>,
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
        .map(|p| p.with_key(self.auth_snapshot_key.clone()))
    }

    /// Where the key table is (`auth_key_store_url`, `auto` resolved).
    pub fn key_store_url(&self) -> Result<String, ConfigError> {
        if self.auth_key_store_url != "auto" {
            return Ok(self.auth_key_store_url.clone());
        }
        crate::keys::beside(&self.auth_store_url).ok_or(ConfigError::KeyStoreNeeded)
    }

    /// The token lifetime, and how long a key on register answers retries.
    pub fn lifetimes(&self) -> crate::service::Lifetimes {
        let secs = |s: u64| chrono::Duration::from_std(Duration::from_secs(s));
        crate::service::Lifetimes {
            token: secs(self.auth_token_ttl_secs).unwrap_or(chrono::Duration::MAX),
            registration_key: secs(self.auth_registration_key_ttl_secs)
                .unwrap_or(chrono::Duration::MAX),
        }
    }

    /// How tokens are refreshed; `None` with auto-refresh off.
    pub fn refresh_policy(&self) -> Option<crate::domain::RefreshPolicy> {
        let secs = |s: u64| chrono::Duration::from_std(Duration::from_secs(s));
        self.auth_token_auto_refresh
            .then(|| crate::domain::RefreshPolicy {
                ttl: self.lifetimes().token,
                min_refresh: secs(self.auth_token_min_refresh_secs)
                    .unwrap_or(chrono::Duration::MAX),
                max_ttl: (self.auth_token_max_ttl_secs > 0)
                    .then(|| secs(self.auth_token_max_ttl_secs).ok())
                    .flatten(),
            })
    }

    /// The login throttle's limits.
    pub fn login_limits(&self) -> crate::throttle::Limits {
        crate::throttle::Limits {
            per_client: self.auth_login_max_failures,
            per_user: self.auth_login_max_failures_per_user,
            base_pause: Duration::from_millis(self.auth_login_base_pause_ms),
            window: Duration::from_secs(self.auth_login_window_secs),
        }
    }
}

/// A 32-byte secret given as 64 hex digits; shown as `Secret(..)`, so that
/// printing a configuration never prints it.
#[derive(Clone)]
pub struct Secret(pub DataKey);

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        DataKey::from_hex(text)
            .map(Self)
            .map_err(|_| "must be 64 hex digits (32 random bytes: `openssl rand -hex 32`)".into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_goes_beside_the_store_unless_named() {
        let mut c = Config::default();
        assert_eq!(c.key_store_url().unwrap(), "sqlite://data/auth.db.keys");
        c.auth_store_url = "postgres://u@h/auth".into();
        assert_eq!(c.key_store_url().unwrap(), "postgres://u@h/auth");
        c.auth_store_url = "esdb://h:2113?tls=false".into();
        assert!(matches!(
            c.key_store_url(),
            Err(ConfigError::KeyStoreNeeded)
        ));
        c.auth_key_store_url = "sqlite:///keys/auth.keys".into();
        assert_eq!(c.key_store_url().unwrap(), "sqlite:///keys/auth.keys");
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        use clap::{Args, FromArgMatches};
        let command = Config::augment_args(clap::Command::new("auth").no_binary_name(true))
            .mut_args(|arg| arg.env(None));
        Config::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    #[test]
    fn the_login_pause_is_refused_below_its_floor() {
        let floor = MIN_LOGIN_PAUSE_MS.to_string();
        let below = (MIN_LOGIN_PAUSE_MS - 1).to_string();
        let flag = "--auth-login-base-pause-ms";
        assert_eq!(
            parse(&[flag, &floor]).unwrap().login_limits().base_pause,
            Duration::from_millis(MIN_LOGIN_PAUSE_MS)
        );
        let refused = parse(&[flag, &below]).unwrap_err();
        assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse(&[flag, "0"]).is_err());
        assert_eq!(
            Config::default().login_limits().base_pause,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn secrets_are_64_hex_digits_and_never_printed() {
        let secret: Secret = "ab".repeat(32).parse().unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        let c = Config {
            auth_pepper: Some(secret),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("abab"));
        assert!("abcd".parse::<Secret>().is_err());
        assert!("zz".repeat(32).parse::<Secret>().is_err());
    }
}
