//! Logging and tracing: `tracing` with JSON logs (pretty on a terminal) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry spans exported over OTLP/gRPC.
//!
//! W3C trace context is the propagation format, both on gRPC metadata and in event
//! envelopes. Leads' personal data never goes into a log field or span attribute.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the exporter alive; dropping it flushes buffered spans.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the span exporter.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {error}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber. Call once, early in `main`, and keep the guard.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // Every enclosing span's fields on each line: they are what OpenTelemetry exports
            // as span attributes, so a log search also covers what traces carry.
            .with_span_list(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().compact().boxed()
    };

    let (otel_layer, provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer(config.service_name.clone());
            opentelemetry::global::set_tracer_provider(provider.clone());
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// The current span's W3C trace context (`traceparent`, `tracestate`), empty when no trace
/// is being recorded.
pub fn current_trace_context() -> BTreeMap<String, String> {
    let context = tracing::Span::current().context();
    let mut carrier = BTreeMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut MapCarrier(&mut carrier));
    carrier
}

/// A trace context as one text column: `key=value` lines (W3C values contain neither).
pub fn encode_trace_context(ctx: &BTreeMap<String, String>) -> String {
    ctx.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inverse of [`encode_trace_context`]; unreadable lines are dropped (a lost trace
/// link, never a failed read).
pub fn decode_trace_context(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Makes `span` a child of a stored trace context, so work done later (a timer firing)
/// joins the trace of the span that caused it. An empty or unreadable context makes `span`
/// a root. Call before the span is first entered.
pub fn set_parent_from(span: &tracing::Span, stored: &BTreeMap<String, String>) {
    let _ = span.set_parent(extract(stored));
}

/// Makes `span` continue a stored trace (a lead's) instead of the caller's, and links it to
/// the span the caller is in: a change an RPC makes to a lead then shows in the lead's
/// trace, and the request's trace and the lead's can each be reached from the other. With
/// nothing stored, `span` stays in the caller's trace. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, stored: &BTreeMap<String, String>) {
    let parent = extract(stored);
    if !parent.span().span_context().is_valid() {
        return;
    }
    let caller = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    let _ = span.set_parent(parent);
    span.add_link(caller);
}

fn extract(stored: &BTreeMap<String, String>) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&MapExtractor(stored))
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl opentelemetry::propagation::Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MapCarrier<'a>(&'a mut BTreeMap<String, String>);

impl opentelemetry::propagation::Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips() {
        let mut ctx = BTreeMap::new();
        ctx.insert(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        );
        ctx.insert("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned());
        assert_eq!(decode_trace_context(&encode_trace_context(&ctx)), ctx);
    }
}
