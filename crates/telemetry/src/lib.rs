//! Telemetry: structured logs, traces, and trace context across process boundaries.
//!
//! - [`init`] installs the process-wide `tracing` subscriber (JSON or human logs on
//!   stderr, filtered by `RUST_LOG`/`HELPLINE_LOG`) with an OpenTelemetry layer, so every
//!   `tracing` span is also an OpenTelemetry span. Stdout stays for what a command prints.
//!   With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/gRPC in batches
//!   (the service name from `OTEL_SERVICE_NAME`, else the one the binary gives).
//! - [`inject`] / [`extract`] carry W3C `traceparent`/`tracestate` in NATS headers, so one
//!   trace follows a customer message through every service. (The `opentelemetry-nats`
//!   crate targets an older async-nats, hence these few lines here.)
//!
//! - [`metrics`]: counters and latency histograms for each process's `/metrics`.
//!
//! **Invariant:** propagation always uses the W3C trace-context format, independent of any
//! global propagator another library may install.

#![forbid(unsafe_code)]

pub mod metrics;

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Writes `cx` into NATS headers as `traceparent` (and `tracestate` when set).
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut NatsHeaders(headers));
}

/// Reads the trace context a producer wrote into NATS headers; an empty context when
/// there is none or it is malformed.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&NatsHeadersRef(headers))
}

/// The OpenTelemetry context of the current `tracing` span.
pub fn current_context() -> Context {
    tracing::Span::current().context()
}

/// Makes `span` a child of the remote context `parent` (e.g. from [`extract`]). Without an
/// OpenTelemetry layer installed there is nothing to link, which is not an error.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    let _ = span.set_parent(parent);
}

struct NatsHeaders<'a>(&'a mut HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeadersRef<'a>(&'a HeaderMap);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for collectors.
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Where log lines go.
#[derive(Debug, Default)]
pub enum LogWriter {
    /// Standard error, for collectors and terminals.
    #[default]
    Stderr,
    /// A file, appended to, without terminal colours: `helpline dev` keeps its terminal
    /// for the conversation.
    File(std::fs::File),
}

/// Keeps the tracer provider alive; dropping it flushes and shuts tracing down.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Installs logging and tracing for this process. `service` names the spans' resource
/// unless `OTEL_SERVICE_NAME` does.
///
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://otel-collector:4317`) it must be
/// called within a tokio runtime: the OTLP exporter's connection lives on it.
pub fn init(service: &str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    init_to(service, format, LogWriter::Stderr)
}

/// As [`init`], the log lines written to `writer`.
pub fn init_to(
    service: &str,
    format: LogFormat,
    writer: LogWriter,
) -> Result<TelemetryGuard, TelemetryError> {
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service.clone())
            .build(),
    );
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.trim().is_empty());
    let exporting = endpoint.is_some();
    if let Some(endpoint) = endpoint {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint,
                reason: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_from_env("HELPLINE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    // Spans become OpenTelemetry spans only where they are exported: building one per
    // handled event was about 6 % of a busy process's CPU samples, for nothing when no
    // collector takes them (trace context then goes unpropagated, which nobody reads).
    let otel = exporting.then(|| tracing_opentelemetry::layer().with_tracer(tracer));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let (to_file, make) = match writer {
        LogWriter::Stderr => (false, BoxMakeWriter::new(std::io::stderr)),
        LogWriter::File(file) => (true, BoxMakeWriter::new(std::sync::Mutex::new(file))),
    };
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(make),
            )
            .try_init()?,
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(!to_file)
                    .with_writer(make),
            )
            .try_init()?,
    }
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn trace_context_round_trips_through_nats_headers() {
        let span = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c),
            SpanId::from(0xb7ad6b7169203331),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span.clone());
        let mut headers = HeaderMap::new();
        inject(&cx, &mut headers);
        assert_eq!(
            headers.get("traceparent").map(|v| v.as_str()),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        let back = extract(&headers);
        assert_eq!(back.span().span_context().trace_id(), span.trace_id());
        assert_eq!(back.span().span_context().span_id(), span.span_id());
    }

    #[test]
    fn missing_or_malformed_traceparent_gives_an_empty_context() {
        let mut headers = HeaderMap::new();
        assert!(!extract(&headers).span().span_context().is_valid());
        headers.insert("traceparent", "not-a-trace");
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
