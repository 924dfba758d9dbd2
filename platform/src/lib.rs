//! What every binary of the platform shares, one module per job:
//!
//! - [`cli`]: flags and their defaults, subcommands, exit codes;
//! - [`process`]: the allocator, the open-file limit, the stop signal;
//! - [`logging`] and [`telemetry`]: logs, and trace export;
//! - [`request`]: the gRPC metadata and field errors the gateway and the
//!   services agree on; [`credentials`]: `Authorization` as knox reads it;
//! - [`grpc`]: serving gRPC; [`http_server`]: serving HTTP within limits;
//!   [`metrics`]: Prometheus text; [`replicas`]: balancing over replicas;
//!   [`probe`]: health checks.

pub mod cli;
pub mod credentials;
pub mod feed;
pub mod grpc;
pub mod http_server;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod replicas;
pub mod request;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use cli::{MaybeAddr, defaults, exit_code, parse_cli, probe_exit, run_binary};
pub use credentials::{CheckUnavailable, Credentials, TokenCheck, credentials};
pub use logging::init_tracing;
pub use process::{no_huge_pages, private_files, raise_open_file_limit, runtime, shutdown_signal};
pub use request::{
    CLIENT_ADDRESS_KEY, CLIENT_USER_AGENT_KEY, FieldError, IDEMPOTENCY_KEY, KEY_REUSED,
    RATELIMIT_KEY, RATELIMIT_POLICY_KEY, client_address, client_user_agent, field_errors,
    idempotency_key, throttled,
};
