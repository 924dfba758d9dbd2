//! What every binary of the platform shares at start-up and shutdown.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

pub mod grpc;
pub mod metrics;
pub mod probe;
pub mod replicas;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

// glibc malloc's arena locks showed up as the top cost under load (futex
// waits in malloc/free); mimalloc has none of that. Declared once, here, for
// every binary of the platform.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A configuration with every field at the default its `#[arg]` declares
/// (environment variables ignored): the defaults are written once, in the
/// flags, and `Default` reads them from there.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("every setting has a default");
    T::from_arg_matches(&matches).expect("defaults parse")
}

/// A listen address that can be turned off: `host:port`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeAddr(pub Option<std::net::SocketAddr>);

impl MaybeAddr {
    /// No listener.
    pub const OFF: Self = Self(None);
}

impl std::str::FromStr for MaybeAddr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "" => Ok(Self::OFF),
            addr => addr.parse().map(|a| Self(Some(a))),
        }
    }
}

impl Display for MaybeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}

/// The gRPC metadata that carries a client's idempotency key (see the
/// gateway's `Idempotency-Key`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The message a request gets when its idempotency key was used before
/// for another request (as FAILED_PRECONDITION; 422 at the REST edge).
pub const KEY_REUSED: &str = "This Idempotency-Key was already used with a different request.";

/// A call's idempotency key, if it has a usable one (1–255 visible ASCII
/// characters).
pub fn idempotency_key<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
}

/// How a binary ends: success, or the error logged and a failure code.
pub fn exit_code(binary: &str, result: Result<(), impl Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(binary, error = %e, "failed");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line of a service binary: its configuration (flags
/// and environment variables), and whether the `healthcheck` subcommand
/// was given. Exits with clap's message on bad input, `--help`, `--version`.
pub fn parse_cli<C: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    about: &'static str,
) -> (C, bool) {
    let healthcheck = clap::Command::new("healthcheck").about(
        "Exit 0 if the service at the listen address answers its health check, else 1 \
         (for container health checks)",
    );
    let command = C::augment_args(clap::Command::new(name))
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand(healthcheck);
    let matches = command.get_matches();
    let config = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (config, matches.subcommand_name() == Some("healthcheck"))
}

/// The `main` of a service binary: given a health `probe` (the
/// `healthcheck` subcommand), its verdict as the exit code; otherwise logs
/// set up, then `serve` until it ends, logged if it failed.
pub async fn run_binary<E: Display>(
    binary: &'static str,
    probe: Option<impl Future<Output = bool>>,
    serve: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    if let Some(probe) = probe {
        return probe_exit(probe.await);
    }
    init_tracing(binary);
    let open_files = raise_open_file_limit();
    tracing::debug!(open_files, "open-file limit");
    let ended = serve.await;
    telemetry::shutdown().await;
    exit_code(binary, ended)
}

/// Raises this process's soft limit on open files to its hard limit (a
/// server holds a file descriptor per connection), and answers the limit
/// now in force (`u64::MAX` where there is none to read).
pub fn raise_open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return u64::MAX;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    ..limit
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every unix
        u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    u64::MAX
}

/// How a `healthcheck` subcommand ends: 0 if the probe passed, else 1.
pub fn probe_exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Dependencies whose debug or trace logs print what must never reach a
/// log: `tokio_postgres` every statement's parameters (password hashes,
/// emails, token digests), `h2`/`hyper` request frames and heads (the
/// `Authorization` header). They log at `info` at most, whatever `RUST_LOG`
/// asks for.
const LEAKY_LOGGERS: [&str; 3] = ["tokio_postgres", "h2", "hyper"];

fn is_leaky(target: &str) -> bool {
    LEAKY_LOGGERS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// Sets up structured logs on stderr, filtered by `RUST_LOG` (default
/// `info`), with [`LEAKY_LOGGERS`] capped at `info`; and trace export if the
/// OpenTelemetry variables ask for it (see [`telemetry`]), with
/// `default_name` as the service's name. Calling it twice is harmless.
pub fn init_tracing(default_name: &'static str) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !is_leaky(meta.target())
    });
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(no_secrets)
        .with_filter(filter);
    let (traces, failed) = match telemetry::layer(default_name) {
        Some(Ok(layer)) => (Some(layer), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "traces are not exported");
    } else if telemetry::enabled() {
        tracing::info!("exporting traces over OTLP");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}

/// A request field that failed validation, and why, in DRF's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as named in the REST API (`non_field_errors` for the whole request).
    pub field: &'static str,
    /// The message shown to the client.
    pub message: String,
}

impl FieldError {
    /// `field` failed with `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A status carrying field errors as `google.rpc.BadRequest` violations,
/// which the gateway turns into DRF's `{"field": ["message"]}`.
pub fn field_errors(code: tonic::Code, message: &str, errors: &[FieldError]) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::new();
    for e in errors {
        details.add_bad_request_violation(e.field, e.message.clone());
    }
    tonic::Status::with_error_details(code, message, details)
}

/// The metadata key in which the gateway tells the services the end
/// client's address (the services' gRPC ports are internal: see the
/// README's Security section).
pub const CLIENT_ADDRESS_KEY: &str = "x-client-address";

/// The address of the end client of a gRPC request: the one the gateway
/// passed on, else the peer's IP, else `unknown` (in-process calls).
pub fn client_address<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(CLIENT_ADDRESS_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_owned)
        .or_else(|| request.remote_addr().map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Resolves a token to its user, inside one process: auth-service's token
/// index, lent to catalog-service by the all-in-one launcher. (Separate
/// processes ask auth-service's `Authenticate` RPC, which answers from the
/// same index.)
pub trait TokenCheck: Send + Sync + 'static {
    /// The id of the user of `token` if it is live now; `None` if it is
    /// malformed, unknown, revoked or expired.
    fn user_id(&self, token: &str) -> Option<i64>;
}

/// What an `Authorization` value carries, read as django-rest-knox reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No value, or another scheme than `Token`: no credentials at all.
    Missing,
    /// `Token` followed by nothing usable.
    Malformed,
    /// `Token <token>`: the token, not yet checked.
    Token(&'a str),
}

/// Reads an `Authorization` header or `authorization` metadata value.
pub fn credentials(authorization: Option<&str>) -> Credentials<'_> {
    let value = authorization.map(str::trim).unwrap_or_default();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("token") {
        return Credentials::Missing;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        Credentials::Malformed
    } else {
        Credentials::Token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::{Credentials, credentials, is_leaky};

    #[test]
    fn leaky_loggers_are_matched_by_crate() {
        assert!(is_leaky("tokio_postgres"));
        assert!(is_leaky("tokio_postgres::query"));
        assert!(is_leaky("h2::codec"));
        assert!(!is_leaky("hyper_util::client"));
        assert!(!is_leaky("auth_service::service"));
    }

    #[test]
    fn authorization_values_read_like_knox() {
        assert_eq!(credentials(Some("Token abc")), Credentials::Token("abc"));
        assert_eq!(credentials(Some("token  abc ")), Credentials::Token("abc"));
        assert_eq!(credentials(None), Credentials::Missing);
        assert_eq!(credentials(Some("")), Credentials::Missing);
        assert_eq!(credentials(Some("Bearer abc")), Credentials::Missing);
        assert_eq!(credentials(Some("Token")), Credentials::Malformed);
        assert_eq!(credentials(Some("Token a b")), Credentials::Malformed);
    }
}
