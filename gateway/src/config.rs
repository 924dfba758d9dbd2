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
    /// Address of a plain HTTP listener serving `GET /metrics` (Prometheus:
    /// requests by route and status, calls to the services; in the
    /// one-process launcher, the services' series too); `off` for none.
    /// Never the public port: the series tell login successes and failures
    /// over time.
    #[arg(long, env, default_value = "127.0.0.1:9103")]
    pub gateway_metrics_listen: platform::MaybeAddr,
    /// Where auth-service listens.
    #[arg(long, env, default_value = "http://127.0.0.1:50051")]
    pub gateway_auth_url: String,
    /// Where catalog-service listens.
    #[arg(long, env, default_value = "http://127.0.0.1:50052")]
    pub gateway_catalog_url: String,
    /// Deadline of every gRPC call, in milliseconds; past it the client gets 504.
    #[arg(long, env, default_value_t = 5_000)]
    pub gateway_grpc_timeout_ms: u64,
    /// Open connections at most; one more is answered 503 and closed. Never
    /// more than the open-file limit allows (less 64 for everything else).
    #[arg(long, env, default_value_t = 10_000)]
    pub gateway_max_connections: usize,
    /// Seconds a connection may take to send a request's head, and may stay
    /// idle between two requests.
    #[arg(long, env, default_value_t = 10)]
    pub gateway_header_timeout_secs: u64,
    /// Seconds to answer a request, its body read included; past it, 408.
    #[arg(long, env, default_value_t = 30)]
    pub gateway_request_timeout_secs: u64,
    /// Logins and registrations one client (an IPv4 address, an IPv6 /64)
    /// may start at once: the size of its token bucket. Past it, 429.
    #[arg(long, env, default_value_t = 1_000)]
    pub gateway_auth_burst: u32,
    /// Logins and registrations added back to a client's bucket per minute:
    /// the rate a client may keep up.
    #[arg(long, env, default_value_t = 300)]
    pub gateway_auth_per_minute: u32,
    /// Of one client's admitted logins and registrations, how many are
    /// worked on at once; the others wait their turn (so one client never
    /// fills auth-service's hash queue).
    #[arg(long, env, default_value_t = 8)]
    pub gateway_auth_concurrency: u32,
    /// Addresses of the reverse proxies in front of the gateway, comma
    /// separated: only from these is `X-Forwarded-For` believed.
    #[arg(long, env, value_delimiter = ',')]
    pub gateway_trusted_proxies: Vec<std::net::IpAddr>,
    /// The public base URL of the API (e.g. https://movies.example), from
    /// which pagination links are built; without it, links are relative
    /// (never built from the request's Host header).
    #[arg(long, env)]
    pub gateway_public_url: Option<String>,
    /// Ratings per page when the whole rating list is streamed (read from
    /// the catalog a page at a time, so memory stays flat however long the
    /// list; a page is about 37 bytes a rating, held per slow reader); at
    /// least 1.
    #[arg(long, env, default_value_t = 2_000)]
    pub gateway_list_page: u32,
    /// Origins of browser apps allowed to call the API (CORS), comma
    /// separated, each `scheme://host[:port]`, e.g. https://app.example.
    /// `*` alone: any origin (tokens travel in `Authorization`, never in
    /// cookies, so a page can only use a token it was given). Empty: no
    /// CORS headers at all.
    #[arg(long, env, value_delimiter = ',')]
    pub gateway_cors_origins: Vec<String>,
    /// Allow the origin `null` in `GATEWAY_CORS_ORIGINS`: the origin of
    /// sandboxed frames, `file:` pages and some redirects, which any site
    /// can make itself have, so listing it alone is refused.
    #[arg(long, env)]
    pub gateway_cors_allow_null_origin: bool,
}

impl Config {
    /// The deadline of every gRPC call.
    pub fn grpc_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_grpc_timeout_ms.max(1))
    }
}

impl Config {
    /// The HTTP server's limits, within the process's open-file limit.
    pub fn server_limits(&self, open_files: u64) -> crate::server::Limits {
        let room = usize::try_from(open_files.saturating_sub(64)).unwrap_or(usize::MAX);
        crate::server::Limits {
            connections: platform::http_server::ConnectionLimits {
                max_connections: self.gateway_max_connections.min(room).max(1),
                header_timeout: Duration::from_secs(self.gateway_header_timeout_secs.max(1)),
                drain_timeout: Duration::from_secs(30),
            },
            request_timeout: Duration::from_secs(self.gateway_request_timeout_secs.max(1)),
        }
    }
}

impl Default for Config {
    /// The defaults the flags declare.
    fn default() -> Self {
        platform::defaults()
    }
}
