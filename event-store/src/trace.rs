//! Trace context on events. When the process exports traces (a
//! `tracing-opentelemetry` layer is installed), every event appended inside
//! a traced span keeps that span's W3C `traceparent` in its metadata
//! (`{"traceparent": "00-<trace id>-<span id>-<flags>"}`), so the event says
//! which request caused it; the work that later applies the event to a read
//! model runs in a span *linked* to it. Without such a layer, spans have no
//! trace id: metadata stays `{}` and no span is made.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::model::RecordedEvent;
use crate::model::empty_object;

/// The metadata of an event appended now: the current span's
/// `traceparent`, or `{}`.
pub(crate) fn metadata() -> Box<RawValue> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return empty_object();
    }
    // Hex digits and dashes only: valid JSON as it is.
    let json = format!(
        r#"{{"traceparent":"00-{}-{}-{:02x}"}}"#,
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    RawValue::from_string(json).unwrap_or_else(|_| empty_object())
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    traceparent: Option<&'a str>,
}

/// The span that appended `recorded`, from its metadata's `traceparent`
/// (W3C format, version 00), if it has a valid one.
pub fn cause(recorded: &RecordedEvent) -> Option<SpanContext> {
    let meta: Metadata<'_> = serde_json::from_str(recorded.metadata.get()).ok()?;
    parse_traceparent(meta.traceparent?)
}

/// The `traceparent` of the span that appended `recorded`, in its
/// canonical form, if it has a valid one (for envelopes sent outside).
pub fn traceparent(recorded: &RecordedEvent) -> Option<String> {
    if recorded.metadata.get() == "{}" {
        return None;
    }
    let sc = cause(recorded)?;
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// A span for work on `recorded` (`work`: applying it to a read model,
/// sending it to a subscriber...), linked to the span that appended it;
/// `None` when it has no cause (traces off).
pub fn linked(work: &'static str, recorded: &RecordedEvent) -> Option<tracing::Span> {
    if recorded.metadata.get() == "{}" {
        return None;
    }
    let cause = cause(recorded)?;
    let span = tracing::info_span!(
        "event",
        otel.name = work,
        event_type = %recorded.event_type,
        position = recorded.position
    );
    span.add_link(cause);
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_back_and_a_bad_one_is_ignored() {
        let sc =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_traces_events_carry_empty_metadata() {
        // No OpenTelemetry layer is installed in this crate's tests.
        let span = tracing::info_span!("append");
        let _in = span.enter();
        assert_eq!(metadata().get(), "{}");
    }
}
