//! Structured logs, with the dependencies that would log secrets capped.

use crate::telemetry;

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

#[cfg(test)]
mod tests {
    use super::is_leaky;

    #[test]
    fn leaky_loggers_are_matched_by_crate() {
        assert!(is_leaky("tokio_postgres"));
        assert!(is_leaky("tokio_postgres::query"));
        assert!(is_leaky("h2::codec"));
        assert!(!is_leaky("hyper_util::client"));
        assert!(!is_leaky("auth_service::service"));
    }
}
