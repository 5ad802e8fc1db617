//! Logs, traces and the metrics recorder.
//!
//! - Logs: human-readable by default; `LOG_FORMAT=json` gives one JSON object per line with the
//!   current span and the span list, so `order_id` and `trace_id` (fields of the HTTP, consume and
//!   decide spans) are on every line where they are known. `RUST_LOG` filters (default `info`).
//! - Traces: OpenTelemetry through `tracing-opentelemetry`, exported over OTLP/HTTP only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off by default: no exporter, no cost).
//!   `OTEL_SERVICE_NAME` names the service (default: the binary's name).
//! - Metrics: one process-wide Prometheus recorder; durations ending in `duration_seconds` are
//!   histograms with buckets, the store's timings stay summaries.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Environment variable choosing the log format (`json`, or anything else for text).
pub const LOG_FORMAT_ENV: &str = "LOG_FORMAT";
/// The standard OTLP endpoint variable; traces are exported only when it is set.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Buckets of the `*_duration_seconds` histograms (HTTP requests, sagas), in seconds.
pub const DURATION_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the tracing subscriber once: logs (text or JSON, see [`LOG_FORMAT_ENV`]) and, when
/// [`OTLP_ENDPOINT_ENV`] is set, the OpenTelemetry layer exporting over OTLP.
pub fn init_telemetry() {
    let json = std::env::var(LOG_FORMAT_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let otel = std::env::var_os(OTLP_ENDPOINT_ENV)
        .filter(|v| !v.is_empty())
        .and_then(|_| match otlp_provider() {
            Ok(provider) => Some(provider),
            Err(err) => {
                eprintln!("OpenTelemetry export disabled: {err}");
                None
            }
        })
        .map(|provider| {
            let tracer = provider.tracer("saga");
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = TRACER_PROVIDER.set(provider);
            tracing_opentelemetry::layer().with_tracer(tracer)
        });
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(log_layer(json, std::io::stdout))
        .with(env_filter())
        .try_init();
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// The log layer writing to `writer`: JSON lines with the current span and span list (so span
/// fields such as `order_id` and `trace_id` are on every line), or human-readable text.
pub fn log_layer<S, W>(json: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(writer).boxed()
    }
}

fn otlp_provider() -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| e.to_string())?;
    let service = std::env::var("OTEL_SERVICE_NAME").ok().unwrap_or_else(|| {
        std::env::args()
            .next()
            .and_then(|arg| {
                std::path::Path::new(&arg)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "saga".to_owned())
    });
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Flushes and stops the trace exporter, if one runs (at the end of a binary).
pub fn shutdown_telemetry() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        if let Err(err) = provider.shutdown() {
            eprintln!("OpenTelemetry shutdown: {err}");
        }
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".to_owned()),
                    &DURATION_BUCKETS_SECONDS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_log_line_inside_a_handler_span_carries_its_order_and_trace_ids() {
        // Given
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(true, move || writer.clone()));
        // When
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "consume",
                order_id = "0190-order",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _entered = span.enter();
            tracing::info!(delivered = 1, "handled");
        });
        // Then
        let text =
            String::from_utf8(lines.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("one line")).expect("a JSON line");
        assert_eq!(line["fields"]["message"], "handled", "{line}");
        assert_eq!(line["span"]["order_id"], "0190-order", "{line}");
        assert_eq!(
            line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{line}"
        );
        assert_eq!(line["spans"][0]["name"], "consume", "{line}");
    }
}
