//! Logs and traces. Logs go to stderr (see [`crate::init_tracing`]).
//! Traces are exported over OTLP when the standard OpenTelemetry variables
//! ask for it, and only then:
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) | where to send spans; unset: no export, no trace work at all |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (or `…_TRACES_PROTOCOL`) | `grpc` or `http/protobuf` (the default) |
//! | `OTEL_SERVICE_NAME` | the `service.name` of the spans; default: the binary's name |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no export, whatever else is set |
//!
//! The trace context travels as W3C `traceparent`: the gateway continues
//! the one a client sends (or starts one), passes it to the services in
//! gRPC metadata ([`traced`]), and each service continues it ([`server_span`]).
//! Only our own crates' spans are exported: the HTTP/2 and database
//! libraries would add a hundred spans to every request.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where exporting was set up: [`enabled`] reads it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why traces could not be set up (the service runs on, without them).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol we do not speak.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported (use grpc or http/protobuf)")]
    Protocol(String),
    /// The exporter could not be built (a bad endpoint URL, say).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The crates whose spans are exported.
const OUR_CRATES: [&str; 6] = [
    "gateway",
    "auth_service",
    "catalog_service",
    "event_store",
    "platform",
    "movies",
];

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the variables ask for trace export.
fn wanted() -> bool {
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && (var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
}

/// The exporter the variables describe (they also give it its endpoint,
/// headers and timeout).
fn exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let builder = opentelemetry_otlp::SpanExporter::builder();
    Ok(match protocol.as_str() {
        "grpc" => builder.with_tonic().build()?,
        "http/protobuf" => builder.with_http().build()?,
        other => return Err(TelemetryError::Protocol(other.to_owned())),
    })
}

/// The tracing layer that turns our spans into OpenTelemetry spans, if the
/// variables ask for export; `default_name` is the `service.name` unless
/// `OTEL_SERVICE_NAME` says otherwise. Sets the W3C propagator either way.
pub(crate) fn layer<S>(
    default_name: &'static str,
) -> Option<Result<impl tracing_subscriber::Layer<S>, TelemetryError>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if !wanted() {
        return None;
    }
    let exporter = match exporter() {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    let name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| default_name.to_owned());
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer(name);
    let _ = PROVIDER.set(provider);
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO
            && OUR_CRATES.iter().any(|c| {
                meta.target()
                    .strip_prefix(c)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
    });
    Some(Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(ours)))
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Exports what is buffered and stops exporting: call once, at the end of
/// `main` (spans still open then are lost).
pub async fn shutdown() {
    if let Some(provider) = PROVIDER.get().cloned() {
        // The SDK's shutdown blocks until the export is done.
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(Duration::from_secs(5), done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "flushing traces failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing traces failed"),
            Err(_) => tracing::warn!("flushing traces took more than 5 s; gave up"),
        }
    }
}

/// The longest `tracestate` taken from a caller: W3C Trace Context
/// recommends that a vendor propagate at least 512 characters, and allows
/// at most 32 list members. A longer one is dropped (the `traceparent`
/// is still continued), so that a client's header never grows the calls it
/// is forwarded into past what a server accepts.
pub const MAX_TRACESTATE: usize = 512;

/// At most this many list members in a `tracestate` taken from a caller.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The headers a trace is continued from, `tracestate` within bounds.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key).and_then(|v| v.to_str().ok())?;
        if key.eq_ignore_ascii_case("tracestate")
            && (value.len() > MAX_TRACESTATE || value.split(',').count() > MAX_TRACESTATE_MEMBERS)
        {
            return None;
        }
        Some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Makes `span` continue the trace named by `headers` (`traceparent`), if
/// spans are exported and the headers name one.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if enabled() {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

/// An outgoing call of `message`, carrying the current span's trace
/// context in its metadata if spans are exported.
pub fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if enabled() {
        let cx = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&cx, &mut Metadata(request.metadata_mut()));
    }
    request
}

/// The span a gRPC server call runs in, continuing the caller's trace; a
/// disabled span when nothing is exported.
pub fn server_span(path: &str, headers: &axum::http::HeaderMap) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: "platform::grpc",
        "grpc.server",
        otel.name = path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    continue_trace(&span, headers);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracestate_past_the_w3c_bounds_is_not_taken() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("tracestate", "a=1,b=2".parse().unwrap());
        assert_eq!(Headers(&headers).get("tracestate"), Some("a=1,b=2"));
        let long = format!("a={}", "x".repeat(MAX_TRACESTATE));
        headers.insert("tracestate", long.parse().unwrap());
        assert_eq!(Headers(&headers).get("tracestate"), None);
        let many: Vec<String> = (0..=MAX_TRACESTATE_MEMBERS)
            .map(|i| format!("k{i}=v"))
            .collect();
        headers.insert("tracestate", many.join(",").parse().unwrap());
        assert_eq!(Headers(&headers).get("tracestate"), None);
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert!(Headers(&headers).get("traceparent").is_some());
    }
}
