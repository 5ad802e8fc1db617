//! Observability end to end: one saga is one OpenTelemetry trace across the five services, and
//! `/metrics` reports the saga's metrics with sensible values after it ran.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use bus::testing::eventually;
use e2e::{alice_order, order_body, Options, System};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// The spans every test of this binary records (one global subscriber per process).
fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("e2e");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(tracing_subscriber::EnvFilter::new("info"));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        exporter
    })
}

async fn seeded() -> System {
    System::start_seeded(Options::declining_above(100_000)).await
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_continuing_the_callers_traceparent_across_all_five_services() {
    // Given: spans collected in process, and a caller with a trace of its own
    let exporter = spans();
    let system = seeded().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    // When
    let reply: serde_json::Value = system
        .http
        .post(format!("{}/orders", system.url("order")))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&alice_order(1, 100, 400))
        .send()
        .await
        .expect("order service reachable")
        .json()
        .await
        .expect("a JSON reply");
    let order_id = reply["orderId"].as_str().expect("an orderId").to_owned();
    let order = system.settled(&order_id).await;
    // Then: the order's trace id is the caller's
    assert_eq!(reply["traceId"], caller_trace, "{reply}");
    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(order["traceId"], caller_trace, "{order}");
    // ...and every service handled its part in that one trace
    let want: BTreeSet<&str> = ["order", "payment", "stock", "coupon", "point"].into();
    let trace = eventually(
        Duration::from_secs(30),
        "spans of all five services in the caller's trace",
        || async {
            let finished = exporter.get_finished_spans().unwrap_or_default();
            let in_trace: Vec<SpanData> = finished
                .into_iter()
                .filter(|s| s.span_context.trace_id().to_string() == caller_trace)
                .collect();
            let deciders: BTreeSet<String> = in_trace
                .iter()
                .filter(|s| s.name == "decide")
                .filter_map(|s| attribute(s, "service"))
                .collect();
            // Children end before their parents: wait until every parent has ended too.
            let ids: BTreeSet<String> = in_trace
                .iter()
                .map(|s| s.span_context.span_id().to_string())
                .collect();
            let parents_ended = in_trace
                .iter()
                .all(|s| s.name == "POST /orders" || ids.contains(&s.parent_span_id.to_string()));
            (want.iter().all(|s| deciders.contains(*s)) && parents_ended).then_some(in_trace)
        },
    )
    .await;
    let services: BTreeSet<String> = trace
        .iter()
        .filter_map(|s| attribute(s, "service"))
        .collect();
    for service in &want {
        assert!(
            services.contains(*service),
            "{service} missing: {services:?}"
        );
    }
    // The HTTP span is the caller's child; every hop has a parent in the trace.
    let http = trace
        .iter()
        .find(|s| s.name == "POST /orders")
        .expect("the POST /orders span");
    assert_eq!(http.parent_span_id.to_string(), caller_span);
    // Every hop has its parent in the trace (checked above), and the hops are all there.
    let kinds: BTreeSet<String> = trace.iter().map(|s| s.name.to_string()).collect();
    assert!(
        kinds.iter().any(|k| k.starts_with("publish order.placed")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| k.starts_with("consume payment.approved")),
        "{kinds:?}"
    );
    // A consume span's parent is the publish span that sent the message.
    let consume = trace
        .iter()
        .find(|s| s.name.starts_with("consume order.placed"))
        .expect("a consume span");
    let parent = trace
        .iter()
        .find(|s| s.span_context.span_id() == consume.parent_span_id)
        .expect("its parent");
    assert!(
        parent.name.starts_with("publish order.placed"),
        "{}",
        parent.name
    );
}

/// The summed value of the samples of `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

async fn scrape(system: &System, service: &str) -> String {
    system
        .http
        .get(format!("{}/metrics", system.url(service)))
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("a text body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_completed_and_a_failed_saga_report_statuses_durations_compensations_and_backlogs(
) {
    // Given
    let _ = spans();
    let system = seeded().await;
    // When: one order completes, one is declined by the PG and compensated
    let completed = system
        .place_id(order_body("alice", &[("apple", 1, 500)], None, 0, 500))
        .await;
    let declined = system
        .place_id(order_body("alice", &[("apple", 1, 500)], None, 0, 200_000))
        .await;
    assert_eq!(system.settled(&completed).await["status"], "COMPLETED");
    assert_eq!(system.settled(&declined).await["status"], "FAILED");
    // Then
    let text = eventually(
        Duration::from_secs(30),
        "the compensation and both statuses counted",
        || async {
            let text = scrape(&system, "order").await;
            let compensated =
                sample(&text, "saga_compensations_total", &[("domain", "stock")]) >= Some(1.0);
            let failed = sample(&text, "saga_orders", &[("status", "FAILED")]) >= Some(1.0);
            let completed = sample(&text, "saga_orders", &[("status", "COMPLETED")]) >= Some(1.0);
            (compensated && failed && completed).then_some(text)
        },
    )
    .await;
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        let value = sample(&text, name, labels);
        assert!(
            value.is_some_and(|v| v >= min),
            "{name}{labels:?} = {value:?}, want >= {min}\n{text}"
        );
    };
    for (status, min) in [("COMPLETED", 1.0), ("FAILED", 1.0), ("PENDING", 0.0)] {
        at_least("saga_orders", &[("status", status)], min);
    }
    for outcome in ["completed", "failed"] {
        at_least("saga_duration_seconds_count", &[("outcome", outcome)], 1.0);
    }
    at_least(
        "saga_duration_seconds_bucket",
        &[("outcome", "completed"), ("le", "+Inf")],
        1.0,
    );
    at_least(
        "saga_participant_outcomes_total",
        &[("domain", "payment"), ("kind", "rejected")],
        1.0,
    );
    at_least(
        "http_requests_total",
        &[
            ("service", "order"),
            ("method", "POST"),
            ("route", "/orders"),
            ("status", "202"),
        ],
        2.0,
    );
    at_least(
        "http_request_duration_seconds_bucket",
        &[("route", "/orders/{order_id}"), ("le", "+Inf")],
        1.0,
    );
    at_least("saga_outbox_backlog_messages", &[("domain", "order")], 0.0);
    at_least("saga_log_head", &[("domain", "order")], 1.0);
    for consumer_metric in [
        "nats_consumer_pending_messages",
        "nats_consumer_redelivered_messages",
        "saga_dlq_messages",
    ] {
        at_least(consumer_metric, &[("consumer", "order-payment")], 0.0);
    }
    assert_eq!(
        sample(&text, "saga_dlq_messages", &[("consumer", "order-payment")]),
        Some(0.0)
    );
    assert!(text.contains("store_flush_seconds"), "{text}");
    // The raw path never becomes a label: one series per route pattern.
    assert!(!text.contains(&format!("route=\"/orders/{completed}\"")));
    // Every participant reports its own consumer when scraped.
    for participant in ["payment", "stock", "coupon", "point"] {
        let text = scrape(&system, participant).await;
        assert!(
            sample(
                &text,
                "nats_consumer_pending_messages",
                &[("consumer", participant)]
            )
            .is_some(),
            "{participant}: {text}"
        );
        assert!(
            sample(
                &text,
                "saga_outbox_backlog_messages",
                &[("domain", participant)]
            )
            .is_some(),
            "{participant}"
        );
    }
}

/// Every metric the services export, as documented in the README's Observability section.
const EXPORTED: &[&str] = &[
    "saga_orders",
    "saga_orders_placed_total",
    "saga_duration_seconds",
    "saga_participant_outcomes_total",
    "saga_compensations_total",
    "saga_compensation_failures_total",
    "saga_redrives_total",
    "saga_compensation_retries_total",
    "saga_attention_needed_total",
    "saga_dead_letters_total",
    "saga_dlq_redrives_total",
    "saga_dlq_messages",
    "nats_consumer_pending_messages",
    "nats_consumer_ack_pending_messages",
    "nats_consumer_redelivered_messages",
    "saga_outbox_backlog_messages",
    "saga_log_head",
    "store_commit_batch_size",
    "store_apply_seconds",
    "store_flush_seconds",
    "http_requests_total",
    "http_request_duration_seconds",
];

#[test]
fn the_grafana_dashboard_and_the_readme_use_only_exported_metric_names() {
    // Given
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("ops/grafana/saga-dashboard.json"))
        .expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    // When
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            for token in expr.split(|c: char| !(c.is_ascii_lowercase() || c == '_')) {
                let is_metric = ["saga_", "http_", "nats_", "store_"]
                    .iter()
                    .any(|p| token.starts_with(p));
                if is_metric {
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| token.strip_suffix(s))
                        .unwrap_or(token);
                    used.insert(base.to_owned());
                }
            }
        }
    }
    // Then
    assert!(used.len() >= 15, "{used:?}");
    for name in &used {
        assert!(EXPORTED.contains(&name.as_str()), "dashboard uses {name}");
    }
    for name in EXPORTED {
        assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
    }
}
