//! Structured logs, with the dependencies that would log secrets capped,
//! written to stderr; a runtime worker's lines a batch at a time.

use std::io::Write;

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
        .with_writer(LogWriter::default())
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

/// How many bytes of log lines a runtime worker keeps before it writes
/// them (about a hundred lines).
const FLUSH_AT: usize = 16 * 1024;

thread_local! {
    /// This thread's log lines not yet written: `None` on a thread that
    /// writes each line at once (any thread but a runtime's workers).
    static PENDING: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Appends `bytes` to `pending`, and writes what is pending to `sink` once
/// it reaches [`FLUSH_AT`], or at once if `urgent`; without a buffer,
/// writes at once.
fn buffer_or_write(
    pending: Option<&mut Vec<u8>>,
    bytes: &[u8],
    urgent: bool,
    sink: &mut impl Write,
) {
    match pending {
        Some(pending) => {
            pending.extend_from_slice(bytes);
            if urgent || pending.len() >= FLUSH_AT {
                write_out(pending, sink);
            }
        }
        // Nothing useful can be done when stderr fails.
        None => drop(sink.write_all(bytes)),
    }
}

/// Writes what is pending, in one call, and empties it.
fn write_out(pending: &mut Vec<u8>, sink: &mut impl Write) {
    if !pending.is_empty() {
        let _ = sink.write_all(pending);
        pending.clear();
    }
}

/// For a runtime's `on_thread_park` (see [`crate::runtime`]): a worker
/// going idle writes the lines it kept, and keeps its lines from then on.
/// So a busy worker writes about a hundred lines per system call, and no
/// line waits longer than its worker stays busy: under load, requests no
/// longer each pay a `write(2)` to stderr, and an idle service's lines
/// are written as soon as they are logged. Lines are written whole, each
/// worker's in order; what a process killed outright had not written is
/// lost, as with any buffered writer.
pub fn on_worker_park() {
    let _ = PENDING.try_with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            match pending.as_mut() {
                Some(lines) => write_out(lines, &mut std::io::stderr().lock()),
                None => *pending = Some(Vec::with_capacity(FLUSH_AT)),
            }
        }
    });
}

/// For a runtime's `on_thread_stop`, and before a process exits: writes
/// this thread's kept lines.
pub fn flush() {
    let _ = PENDING.try_with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut()
            && let Some(lines) = pending.as_mut()
        {
            write_out(lines, &mut std::io::stderr().lock());
        }
    });
}

/// Where the log layer writes each formatted line (in one `write_all`).
/// Warnings and errors (failed logins, throttling, failures: what
/// security and operators act on) are urgent: written at once, after the
/// lines the worker kept before them, so that not even a SIGKILL loses
/// them. Only info and below are batched.
#[derive(Default)]
struct LogWriter {
    urgent: bool,
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let kept = PENDING.try_with(|pending| match pending.try_borrow_mut() {
            Ok(mut pending) => {
                let stderr = &mut std::io::stderr().lock();
                buffer_or_write(pending.as_mut(), bytes, self.urgent, stderr);
                true
            }
            Err(_) => false,
        });
        if kept != Ok(true) {
            // The thread is ending, or this line was logged while writing.
            let _ = std::io::stderr().lock().write_all(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter::default()
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LogWriter {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FLUSH_AT, buffer_or_write, is_leaky, write_out};

    #[test]
    fn a_workers_lines_are_kept_until_enough_or_it_parks() {
        let mut sink = Vec::new();
        let mut pending = Vec::new();
        let line = [b'x'; 100];
        let mut written = 0;
        while sink.is_empty() {
            buffer_or_write(Some(&mut pending), &line, false, &mut sink);
            written += line.len();
        }
        // Written in one piece, once it reached the threshold.
        assert_eq!(sink.len(), written);
        assert!(written >= FLUSH_AT && written < FLUSH_AT + line.len());
        assert!(pending.is_empty());
        buffer_or_write(Some(&mut pending), b"last\n", false, &mut sink);
        assert_eq!(sink.len(), written);
        // Parking writes what is left.
        write_out(&mut pending, &mut sink);
        assert!(sink.ends_with(b"xlast\n"));
        // Any other thread writes each line at once.
        buffer_or_write(None, b"now\n", false, &mut sink);
        assert!(sink.ends_with(b"now\n"));
        // An urgent line goes out at once, after what was kept before it.
        buffer_or_write(Some(&mut pending), b"kept\n", false, &mut sink);
        buffer_or_write(Some(&mut pending), b"warn\n", true, &mut sink);
        assert!(sink.ends_with(b"kept\nwarn\n"));
        assert!(pending.is_empty());
    }

    #[test]
    fn warnings_and_errors_are_urgent_and_nothing_below() {
        use tracing_subscriber::fmt::MakeWriter as _;
        struct Levels;
        impl tracing::Subscriber for Levels {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let meta = event.metadata();
                let urgent = super::LogWriter::default().make_writer_for(meta).urgent;
                URGENT.with(|u| u.borrow_mut().push((*meta.level(), urgent)));
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        thread_local! {
            static URGENT: std::cell::RefCell<Vec<(tracing::Level, bool)>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        tracing::subscriber::with_default(Levels, || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        use tracing::Level;
        let seen = URGENT.with(|u| u.borrow().clone());
        assert_eq!(
            seen,
            [
                (Level::ERROR, true),
                (Level::WARN, true),
                (Level::INFO, false),
                (Level::DEBUG, false)
            ]
        );
    }

    #[test]
    fn leaky_loggers_are_matched_by_crate() {
        assert!(is_leaky("tokio_postgres"));
        assert!(is_leaky("tokio_postgres::query"));
        assert!(is_leaky("h2::codec"));
        assert!(!is_leaky("hyper_util::client"));
        assert!(!is_leaky("auth_service::service"));
    }
}
