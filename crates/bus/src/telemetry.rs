//! Trace context across messages (the W3C `traceparent` header every event carries) and the
//! broker-side gauges (consumer backlog, redeliveries, DLQ depth) a service reports on scrape.
//!
//! Without an OpenTelemetry layer on the subscriber every function here falls back to what the
//! saga did before: a `traceparent` in the event's trace with a fresh span id.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use contract::{Participant, DATAPLATFORM_CONSUMER, DLQ_STREAM, ORDER_STREAM};

/// How long one scrape may spend asking the broker; a slow broker leaves the gauges as they were.
pub const BROKER_GAUGES_TIMEOUT_MS: u64 = 1_000;

/// The remote span context a `traceparent` names; `None` when it is malformed.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes `span` (in OpenTelemetry) a child of the remote span `traceparent` names.
/// Returns whether it did (false when malformed or when no OpenTelemetry layer records spans).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let Some(parent) = traceparent.and_then(parse_traceparent) else {
        return false;
    };
    let context = opentelemetry::Context::new().with_remote_span_context(parent);
    span.set_parent(context).is_ok()
}

/// The OpenTelemetry trace id of `span`, when an OpenTelemetry layer records it.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The `traceparent` a message sent from within `span` carries: the span itself when it belongs
/// to trace `trace_id` (so the receiver's span is its child), else a fresh span id in `trace_id`.
pub fn traceparent_of(span: &tracing::Span, trace_id: &str) -> String {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() && span_context.trace_id().to_string() == trace_id {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    } else {
        contract::traceparent(trace_id)
    }
}

/// [`traceparent_of`] the current span.
pub fn current_traceparent(trace_id: &str) -> String {
    traceparent_of(&tracing::Span::current(), trace_id)
}

/// The service a durable consumer belongs to: `payment` for `payment` and `payment-failed`,
/// `order` for `order-payment` and for the data platform forwarder.
pub fn consumer_owner(durable: &str) -> &str {
    if durable == DATAPLATFORM_CONSUMER {
        return "order";
    }
    durable.split('-').next().unwrap_or(durable)
}

/// Every durable consumer of the saga with its stream: the participants' on ORDER, the order
/// service's on each participant's stream, the data platform forwarder's.
pub fn saga_consumers() -> Vec<(&'static str, &'static str)> {
    let mut consumers = Vec::new();
    for participant in Participant::ALL {
        consumers.push((ORDER_STREAM, participant.name()));
        consumers.push((ORDER_STREAM, participant.failed_consumer()));
    }
    for participant in Participant::ALL {
        consumers.push((participant.stream(), participant.order_consumer()));
    }
    consumers.push((ORDER_STREAM, DATAPLATFORM_CONSUMER));
    consumers
}

/// Refreshes the gauges of `domain`'s consumers from the broker: `nats_consumer_pending_messages`,
/// `nats_consumer_ack_pending_messages`, `nats_consumer_redelivered_messages` and
/// `saga_dlq_messages` (DLQ entries per consumer), each labelled `consumer`. Bounded by
/// [`BROKER_GAUGES_TIMEOUT_MS`]; failures leave the gauges as they were.
pub async fn refresh_broker_gauges(js: &jetstream::Context, domain: &str) {
    let work = async {
        let owned: Vec<(&str, &str)> = saga_consumers()
            .into_iter()
            .filter(|(_, durable)| consumer_owner(durable) == domain)
            .collect();
        for (stream, durable) in &owned {
            let Ok(stream) = js.get_stream(stream).await else {
                continue;
            };
            if let Ok(info) = stream.consumer_info(durable).await {
                let consumer = durable.to_string();
                metrics::gauge!("nats_consumer_pending_messages", "consumer" => consumer.clone())
                    .set(info.num_pending as f64);
                metrics::gauge!("nats_consumer_ack_pending_messages", "consumer" => consumer.clone())
                    .set(info.num_ack_pending as f64);
                metrics::gauge!("nats_consumer_redelivered_messages", "consumer" => consumer)
                    .set(info.num_redelivered as f64);
            }
        }
        let Ok(dlq) = js.get_stream(DLQ_STREAM).await else {
            return;
        };
        let mut depth: std::collections::HashMap<&str, u64> =
            owned.iter().map(|(_, durable)| (*durable, 0)).collect();
        if let Ok(mut subjects) = dlq.info_with_subjects("dlq.>").await {
            while let Some(Ok((subject, count))) = subjects.next().await {
                let consumer = subject.strip_prefix("dlq.").unwrap_or(&subject);
                if let Some(slot) = depth.get_mut(consumer) {
                    *slot = count as u64;
                }
            }
        }
        for (consumer, count) in depth {
            metrics::gauge!("saga_dlq_messages", "consumer" => consumer.to_owned())
                .set(count as f64);
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(BROKER_GAUGES_TIMEOUT_MS), work).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_names_its_trace_and_span() {
        let parsed = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("well formed");
        assert_eq!(
            parsed.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.is_sampled());
        assert!(parsed.is_remote());
    }

    #[test]
    fn malformed_or_all_zero_traceparents_are_ignored() {
        for value in [
            "",
            "00-trace-span-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(value).is_none(), "{value:?}");
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_a_message_gets_a_fresh_span_in_its_trace() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let sent = current_traceparent(trace);
        let parsed = parse_traceparent(&sent).expect("well formed");
        assert_eq!(parsed.trace_id().to_string(), trace);
    }

    #[test]
    fn every_consumer_belongs_to_the_service_that_runs_it() {
        assert_eq!(consumer_owner("payment"), "payment");
        assert_eq!(consumer_owner("payment-failed"), "payment");
        assert_eq!(consumer_owner("order-payment"), "order");
        assert_eq!(consumer_owner(DATAPLATFORM_CONSUMER), "order");
        let order_owned = saga_consumers()
            .into_iter()
            .filter(|(_, d)| consumer_owner(d) == "order")
            .count();
        assert_eq!(order_owned, 5);
    }

    #[test]
    fn the_saga_consumers_are_every_durable_consumer_of_the_design_once() {
        let consumers = saga_consumers();
        let mut names: Vec<_> = consumers.iter().map(|(_, d)| *d).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 13, "{consumers:?}");
        assert_eq!(consumers.len(), 13);
        for wanted in [
            ("ORDER", "payment"),
            ("ORDER", "payment-failed"),
            ("STOCK", "order-stock"),
            ("ORDER", "dataplatform"),
        ] {
            assert!(consumers.contains(&wanted), "{wanted:?}");
        }
    }
}
