//! A binary's command line and how it ends: defaults read from the flags,
//! optional addresses, parsing with subcommands, exit codes.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::logging::init_tracing;
use crate::process::raise_open_file_limit;
use crate::telemetry;

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

/// How a binary ends: success, or the error logged and a failure code.
pub fn exit_code(binary: &str, result: Result<(), impl Display>) -> ExitCode {
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(binary, error = %e, "failed");
            ExitCode::FAILURE
        }
    };
    // Lines this thread kept go out before the process ends (the
    // runtime's workers write theirs as they stop).
    crate::logging::flush();
    code
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
    crate::process::private_files();
    let open_files = raise_open_file_limit();
    tracing::debug!(open_files, "open-file limit");
    let ended = serve.await;
    telemetry::shutdown().await;
    exit_code(binary, ended)
}

/// How a `healthcheck` subcommand ends: 0 if the probe passed, else 1.
pub fn probe_exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
