//! The outbox relay: publishes durable outbox entries to JetStream, pipelined, and removes each
//! entry only after the server acknowledged it.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::retry::{Backoff, RetryPolicy, Wait};
use contract::{HEADER_MSG_ID, HEADER_TRACEPARENT};
use eventlog::event_store::EventStore;
use eventlog::record::OutboxMessage;

pub use crate::jetstream::RELAY_MAX_IN_FLIGHT;
/// First backoff of the relay while the broker is away; doubles per failed pass.
pub const RELAY_BACKOFF_MS_MIN: u64 = 50;
/// Cap of the relay's retry backoff while the broker is away.
pub const RELAY_BACKOFF_MS_MAX: u64 = 2_000;
/// The relay never gives up on an entry: it retries until the broker takes it or shutdown.
pub const RELAY_RETRY: RetryPolicy =
    RetryPolicy::forever(RELAY_BACKOFF_MS_MIN, RELAY_BACKOFF_MS_MAX);
/// How long a single publish ack may take before it counts as failed.
pub const RELAY_ACK_TIMEOUT_MS: u64 = 5_000;
/// How long shutdown waits for outstanding acks.
pub const RELAY_SHUTDOWN_GRACE_MS: u64 = 3_000;

fn headers_of(message: &OutboxMessage) -> async_nats::HeaderMap {
    headers_of_parts(&message.msg_id, &message.headers)
}

/// Relay counters, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayStats {
    /// Entries acknowledged by the server (duplicates included).
    pub published: u64,
    /// Publish attempts that failed and were retried.
    pub retries: u64,
}

/// Runs the relay until `shutdown`; never gives up on an entry, never removes one unacked.
pub async fn run_relay(
    store: EventStore,
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> Result<RelayStats> {
    let mut durable = store.durable();
    let mut stats = RelayStats::default();
    // Highest outbox seq handed to the server in this pass.
    let mut cursor = store.outbox_first()?.map_or(0, |first| first - 1);
    let mut in_flight = FuturesUnordered::new();
    let mut acked: Vec<u64> = Vec::with_capacity(RELAY_MAX_IN_FLIGHT);
    let mut failed = false;
    let mut backoff = Backoff::new(RELAY_RETRY);
    loop {
        if !failed && in_flight.len() < RELAY_MAX_IN_FLIGHT {
            let upto = durable.borrow_and_update().outbox_seq;
            let room = RELAY_MAX_IN_FLIGHT - in_flight.len();
            let batch = store.outbox_batch(cursor, upto, room)?;
            if batch.is_empty() && cursor < upto {
                // Entries below the mark were already published and removed (by an earlier
                // pass, or another relay): skip the gap instead of polling it forever.
                cursor = upto;
            }
            for (seq, message) in batch {
                let span = publish_span(&message);
                let publish = Publish::build()
                    .payload(message.payload.into())
                    .headers(traced_headers(&span, &message.msg_id, &message.headers));
                let sent = js.send_publish(message.subject, publish);
                match tracing::Instrument::instrument(sent, span).await {
                    Ok(ack) => {
                        in_flight.push(async move {
                            let result = tokio::time::timeout(
                                Duration::from_millis(RELAY_ACK_TIMEOUT_MS),
                                std::future::IntoFuture::into_future(ack),
                            )
                            .await;
                            (seq, matches!(result, Ok(Ok(_))))
                        });
                        cursor = seq;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, seq, "outbox publish failed");
                        failed = true;
                        break;
                    }
                }
            }
        }
        if in_flight.is_empty() {
            if !acked.is_empty() {
                store.outbox_remove(&acked)?;
                acked.clear();
            }
            if failed {
                stats.retries += 1;
                if backoff.wait(&shutdown).await != Wait::Retry {
                    return Ok(stats);
                }
                // The broker may have lost its streams (a wiped store): declare them again.
                if let Err(err) = crate::jetstream::ensure_streams(&js).await {
                    tracing::warn!(error = %err, "cannot declare streams yet");
                }
                cursor = store.outbox_first()?.map_or(cursor, |first| first - 1);
                failed = false;
                continue;
            }
            if cursor >= durable.borrow().outbox_seq {
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return Ok(stats) },
                    _ = shutdown.cancelled() => return Ok(stats),
                }
            }
            continue;
        }
        tokio::select! {
            Some((seq, ok)) = in_flight.next() => {
                if ok {
                    stats.published += 1;
                    acked.push(seq);
                    backoff.reset();
                } else {
                    failed = true;
                }
                // Remove acknowledged entries in batches, not one write per ack.
                if acked.len() >= RELAY_MAX_IN_FLIGHT / 4 {
                    store.outbox_remove(&acked)?;
                    acked.clear();
                }
            }
            _ = shutdown.cancelled() => {
                let grace = tokio::time::sleep(Duration::from_millis(RELAY_SHUTDOWN_GRACE_MS));
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        next = in_flight.next() => match next {
                            Some((seq, true)) => {
                                stats.published += 1;
                                acked.push(seq);
                            }
                            Some((_, false)) => {}
                            None => break,
                        },
                        _ = &mut grace => break,
                    }
                }
                store.outbox_remove(&acked)?;
                return Ok(stats);
            }
        }
    }
}

/// The span of one relay publish: a child of the span that committed the message (its stored
/// `traceparent`), named by the service the subject belongs to.
fn publish_span(message: &OutboxMessage) -> tracing::Span {
    let parent = message
        .headers
        .iter()
        .find(|(name, _)| name == HEADER_TRACEPARENT)
        .map(|(_, value)| value.as_str());
    if parent.is_none() {
        // Not part of a saga's trace (an operator alert): no trace of its own either.
        return tracing::Span::none();
    }
    let service = message.subject.split('.').next().unwrap_or_default();
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {}", message.subject),
        otel.kind = "producer",
        service,
        subject = %message.subject,
        msg_id = %message.msg_id,
    );
    crate::telemetry::continue_trace(&span, parent);
    span
}

/// The message's headers, its `traceparent` naming the publish span when that is traced (so
/// the consumer's span is the publish span's child).
fn traced_headers(
    span: &tracing::Span,
    msg_id: &str,
    headers: &[(String, String)],
) -> async_nats::HeaderMap {
    let mut map = headers_of_parts(msg_id, headers);
    let stored = headers
        .iter()
        .find(|(name, _)| name == HEADER_TRACEPARENT)
        .and_then(|(_, value)| crate::telemetry::parse_traceparent(value));
    if let (Some(stored), Some(trace_id)) = (stored, crate::telemetry::trace_id_of(span)) {
        if stored.trace_id().to_string() == trace_id {
            map.insert(
                HEADER_TRACEPARENT,
                crate::telemetry::traceparent_of(span, &trace_id).as_str(),
            );
        }
    }
    map
}

fn headers_of_parts(msg_id: &str, headers: &[(String, String)]) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    map.insert(HEADER_MSG_ID, msg_id);
    for (name, value) in headers {
        map.insert(name.as_str(), value.as_str());
    }
    map
}

/// Publishes one message directly and waits for its ack (for DLQ entries and alerts).
pub async fn publish_now(js: &jetstream::Context, message: &OutboxMessage) -> Result<()> {
    let ack = js
        .send_publish(
            message.subject.clone(),
            Publish::build()
                .payload(message.payload.clone().into())
                .headers(headers_of(message)),
        )
        .await
        .map_err(|e| crate::Error::jetstream("publish", e))?;
    tokio::time::timeout(
        Duration::from_millis(RELAY_ACK_TIMEOUT_MS),
        std::future::IntoFuture::into_future(ack),
    )
    .await
    .map_err(|_| crate::Error::Timeout {
        op: "publish ack",
        after: Duration::from_millis(RELAY_ACK_TIMEOUT_MS),
    })?
    .map_err(|e| crate::Error::jetstream("publish ack", e))?;
    Ok(())
}
