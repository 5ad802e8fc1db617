//! Metrics and traces at the HTTP edge: `/metrics` (everything through the `metrics` crate,
//! refreshed gauges on scrape) and the request middleware (a span per request continuing an
//! incoming `traceparent`; `http_requests_total` and `http_request_duration_seconds` by route,
//! method and status).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use tracing::Instrument;

use contract::HEADER_TRACEPARENT;
use eventlog::event_store::EventStore;

use crate::telemetry::metrics_handle;

/// Something a scrape refreshes before rendering (a gauge read from state or the broker).
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The scrape hooks of one service; a service's wiring may add its own (e.g. orders by status).
#[derive(Clone, Default)]
pub struct ScrapeHooks(Arc<Mutex<Vec<ScrapeHook>>>);

impl ScrapeHooks {
    /// Adds a hook run on every scrape.
    pub fn add(&self, hook: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static) {
        if let Ok(mut hooks) = self.0.lock() {
            hooks.push(Arc::new(hook));
        }
    }

    /// Runs every hook, one after the other.
    pub async fn run(&self) {
        let hooks: Vec<ScrapeHook> = match self.0.lock() {
            Ok(hooks) => hooks.clone(),
            Err(_) => return,
        };
        for hook in hooks {
            hook().await;
        }
    }
}

/// The hooks every service has: its log head and outbox backlog, and its consumers' gauges.
pub fn service_hooks(
    domain: &'static str,
    store: EventStore,
    js: async_nats::jetstream::Context,
) -> ScrapeHooks {
    let hooks = ScrapeHooks::default();
    hooks.add(move || {
        metrics::gauge!("saga_log_head", "domain" => domain).set(store.head() as f64);
        metrics::gauge!("saga_outbox_backlog_messages", "domain" => domain)
            .set(store.outbox_len() as f64);
        Box::pin(async {})
    });
    hooks.add(move || {
        let js = js.clone();
        Box::pin(async move { bus::telemetry::refresh_broker_gauges(&js, domain).await })
    });
    hooks
}

/// `GET /metrics`: runs the scrape hooks, then renders the process's Prometheus recorder.
pub fn metrics_routes(hooks: ScrapeHooks) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(hooks)
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "common",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub(crate) async fn render(State(hooks): State<ScrapeHooks>) -> Response {
    hooks.run().await;
    let text = metrics_handle().map(|h| h.render()).unwrap_or_default();
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// Middleware: one span per request (continuing an incoming W3C `traceparent`, fields
/// `service`, `method`, `route`, `status`, `trace_id`, and `order_id` once a handler records
/// it) and the request metrics. `route` is the matched route pattern (`/orders/{order_id}`),
/// never the raw path, so the label set stays bounded; unmatched requests count as `unmatched`.
pub async fn track_http(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        service,
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        order_id = tracing::field::Empty,
    );
    let incoming = request
        .headers()
        .get(HEADER_TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    bus::telemetry::continue_trace(&span, incoming);
    let trace_id = bus::telemetry::trace_id_of(&span).or_else(|| {
        incoming
            .and_then(bus::telemetry::parse_traceparent)
            .map(|c| c.trace_id().to_string())
    });
    if let Some(trace_id) = &trace_id {
        span.record("trace_id", trace_id.as_str());
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16().to_string();
    span.record("status", status.as_str());
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The trace id an order placed by this request gets: the request span's trace (which continues
/// an incoming `traceparent`), else the incoming `traceparent`'s trace id, else a new one.
pub fn request_trace_id(headers: &axum::http::HeaderMap) -> String {
    if let Some(trace_id) = bus::telemetry::trace_id_of(&tracing::Span::current()) {
        return trace_id;
    }
    headers
        .get(HEADER_TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(bus::telemetry::parse_traceparent)
        .map(|c| c.trace_id().to_string())
        .unwrap_or_else(contract::new_trace_id)
}
