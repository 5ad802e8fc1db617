//! The consumer runner: batched pulls, per-order serialisation, ack after durable commit,
//! nak with backoff on transient failures, poison messages to the DLQ.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::jetstream::{ensure_consumer, ensure_streams, ConsumerSpec};
use crate::outbox::publish_now;
use crate::retry::{Backoff, RetryDecision, RetryPolicy, Wait};
use contract::codec::Envelope;
use contract::{codec, SagaMessage, HEADER_MSG_ID, HEADER_ORDER_ID, HEADER_TRACEPARENT};
use eventlog::record::OutboxMessage;

/// Messages requested per pull.
pub const PULL_BATCH: usize = 256;
/// Parallel lanes; one order always maps to the same lane, so it is never handled twice at once.
pub const LANES: usize = 64;
/// Messages queued per lane.
pub const LANE_CAPACITY: usize = 32;
/// Delay before a message whose DLQ copy could not be published comes back.
pub const DLQ_PUBLISH_RETRY: Duration = Duration::from_secs(5);
/// First backoff while the consumer cannot be (re)created; doubles per failure.
pub const RESUBSCRIBE_BACKOFF_MS_MIN: u64 = 50;
/// Cap of the backoff while the consumer cannot be (re)created.
pub const RESUBSCRIBE_BACKOFF_MS_MAX: u64 = 2_000;
/// Re-subscribing never gives up: the broker coming back is what it waits for.
pub const RESUBSCRIBE_RETRY: RetryPolicy =
    RetryPolicy::forever(RESUBSCRIBE_BACKOFF_MS_MIN, RESUBSCRIBE_BACKOFF_MS_MAX);

/// DLQ header: why the message was dead-lettered.
pub const HEADER_DLQ_REASON: &str = "Dlq-Reason";
/// DLQ header: the subject it was published on.
pub const HEADER_DLQ_SUBJECT: &str = "Dlq-Original-Subject";
/// DLQ header: deliveries made before it was dead-lettered.
pub const HEADER_DLQ_ATTEMPTS: &str = "Dlq-Attempts";
/// DLQ header: the consumer that gave up.
pub const HEADER_DLQ_CONSUMER: &str = "Dlq-Consumer";
/// DLQ header: the original stream sequence.
pub const HEADER_DLQ_STREAM_SEQ: &str = "Dlq-Stream-Seq";
/// DLQ header: the original message id.
pub const HEADER_DLQ_MSG_ID: &str = "Dlq-Original-Msg-Id";

/// A decoded message handed to a service's handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Subject it arrived on.
    pub subject: String,
    /// The envelope (trace id, time).
    pub envelope: Envelope,
    /// The decoded body.
    pub message: SagaMessage,
    /// Its `Nats-Msg-Id` (or subject + stream seq when absent).
    pub msg_id: String,
    /// W3C traceparent, if sent.
    pub traceparent: Option<String>,
    /// Delivery count (1 on first delivery).
    pub delivered: u64,
}

/// Why a handler could not process a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// Worth retrying (store busy, gateway down): nak with backoff, DLQ after the budget.
    Transient(String),
    /// Never going to work: DLQ now.
    Poison(String),
}

/// A service's message handler. Resolve `Ok` only once its effects are durable.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery.
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl std::future::Future<Output = std::result::Result<(), HandleError>> + Send;
}

/// Runs a durable consumer until `shutdown`, re-creating it if the broker lost it.
pub async fn run_consumer<H: Handler>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(RESUBSCRIBE_RETRY);
    while !shutdown.is_cancelled() {
        match consume(&js, &spec, &handler, &shutdown).await {
            Ok(()) => backoff.reset(),
            Err(err) => {
                tracing::warn!(consumer = %spec.durable, error = %err, "consumer interrupted; re-subscribing");
                if backoff.wait(&shutdown).await != Wait::Retry {
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn consume<H: Handler>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    handler: &Arc<H>,
    shutdown: &CancellationToken,
) -> Result<()> {
    ensure_streams(js).await?;
    let consumer = ensure_consumer(js, spec).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| crate::Error::jetstream("subscribe", e))?;
    tracing::info!(consumer = %spec.durable, stream = %spec.stream, "consuming");

    let mut lanes = Vec::with_capacity(LANES);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..LANES {
        let (tx, rx) = mpsc::channel(LANE_CAPACITY);
        lanes.push(tx);
        workers.spawn(lane(
            rx,
            handler.clone(),
            js.clone(),
            spec.durable.clone(),
            spec.retry,
        ));
    }

    let outcome = loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = shutdown.cancelled() => break Ok(()),
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                // Heartbeat misses and "consumer deleted" end this subscription; the caller
                // re-declares everything, which is what recovers from a wiped broker.
                break Err(crate::Error::jetstream("pull", err));
            }
            None => break Err(crate::Error::jetstream("pull", "message stream ended")),
        };
        let key = order_key(&message);
        let lane_index = (key % LANES as u64) as usize;
        if lanes[lane_index].send(message).await.is_err() {
            break Err(crate::Error::jetstream("dispatch", "lane stopped"));
        }
    };
    // Let every lane finish and ack what it holds before returning.
    drop(lanes);
    while workers.join_next().await.is_some() {}
    outcome
}

fn order_key(message: &jetstream::Message) -> u64 {
    let mut hasher = DefaultHasher::new();
    match message
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_ORDER_ID))
    {
        Some(order) => order.as_str().hash(&mut hasher),
        None => message.payload.hash(&mut hasher),
    }
    hasher.finish()
}

async fn lane<H: Handler>(
    mut queue: mpsc::Receiver<jetstream::Message>,
    handler: Arc<H>,
    js: jetstream::Context,
    consumer: String,
    retry: RetryPolicy,
) {
    while let Some(message) = queue.recv().await {
        process(&message, &*handler, &js, &consumer, &retry).await;
    }
}

async fn process<H: Handler>(
    message: &jetstream::Message,
    handler: &H,
    js: &jetstream::Context,
    consumer: &str,
    retry: &RetryPolicy,
) {
    let (delivered, stream_seq) = match message.info() {
        Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence),
        Err(_) => (1, 0),
    };
    let delivery = match decode_delivery(message, delivered, stream_seq) {
        Ok(delivery) => delivery,
        Err(reason) => {
            dead_letter(message, js, consumer, &reason, delivered, stream_seq).await;
            return;
        }
    };
    let order_id = delivery.message.order_id();
    let span = consume_span(&delivery, consumer);
    let result = tracing::Instrument::instrument(handler.handle(delivery), span).await;
    let ack = match result {
        Ok(()) => message.ack().await,
        Err(HandleError::Poison(reason)) => {
            dead_letter(message, js, consumer, &reason, delivered, stream_seq).await;
            return;
        }
        Err(HandleError::Transient(reason)) => match retry.after_failure(delivered) {
            RetryDecision::DeadLetter => {
                let reason = format!(
                    "failed {delivered} deliveries over {}s of backoff, last: {reason}",
                    retry.waited_ms(delivered) / 1_000
                );
                dead_letter(message, js, consumer, &reason, delivered, stream_seq).await;
                return;
            }
            RetryDecision::RetryAfter(delay) => {
                tracing::warn!(%order_id, consumer, delivered, %reason, "handler failed; retrying later");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
        },
    };
    if let Err(err) = ack {
        // The server redelivers after ack_wait and the handler's dedup absorbs it.
        tracing::warn!(%order_id, consumer, error = %err, "ack not sent");
    }
}

/// The span of one delivery's handling: a child of the span that sent it (its `traceparent`,
/// or the saga's trace when it carries none), named by the consuming service.
fn consume_span(delivery: &Delivery, consumer: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format!("consume {}", delivery.subject),
        otel.kind = "consumer",
        service = crate::telemetry::consumer_owner(consumer),
        consumer,
        subject = %delivery.subject,
        order_id = %delivery.message.order_id(),
        trace_id = %delivery.envelope.trace_id,
        delivered = delivery.delivered,
    );
    let fallback = contract::traceparent(&delivery.envelope.trace_id);
    if !crate::telemetry::continue_trace(&span, delivery.traceparent.as_deref()) {
        crate::telemetry::continue_trace(&span, Some(&fallback));
    }
    span
}

fn decode_delivery(
    message: &jetstream::Message,
    delivered: u64,
    stream_seq: u64,
) -> std::result::Result<Delivery, String> {
    let (envelope, decoded) =
        codec::decode(&message.payload).map_err(|e| format!("undecodable: {e}"))?;
    let subject = message.subject.to_string();
    if envelope.event_type != subject {
        return Err(format!(
            "event type {} does not match subject {subject}",
            envelope.event_type
        ));
    }
    let header = |name: &str| header_value(message, name);
    let msg_id = header(HEADER_MSG_ID).unwrap_or_else(|| format!("{subject}#{stream_seq}"));
    Ok(Delivery {
        subject,
        traceparent: header(HEADER_TRACEPARENT),
        envelope,
        message: decoded,
        msg_id,
        delivered,
    })
}

/// Copies a message to `dlq.<consumer>` with the reason in headers, then terminates it.
async fn dead_letter(
    message: &jetstream::Message,
    js: &jetstream::Context,
    consumer: &str,
    reason: &str,
    delivered: u64,
    stream_seq: u64,
) {
    let original_id = header_value(message, HEADER_MSG_ID).unwrap_or_default();
    let entry = OutboxMessage {
        subject: format!("dlq.{consumer}"),
        // One DLQ entry per original message, however often this runs.
        msg_id: format!("dlq.{consumer}.{}.{stream_seq}", message.subject),
        headers: vec![
            (HEADER_DLQ_REASON.to_owned(), sanitize(reason)),
            (HEADER_DLQ_SUBJECT.to_owned(), message.subject.to_string()),
            (HEADER_DLQ_ATTEMPTS.to_owned(), delivered.to_string()),
            (HEADER_DLQ_CONSUMER.to_owned(), consumer.to_owned()),
            (HEADER_DLQ_STREAM_SEQ.to_owned(), stream_seq.to_string()),
            (HEADER_DLQ_MSG_ID.to_owned(), original_id),
        ],
        payload: message.payload.to_vec(),
    };
    tracing::error!(consumer, subject = %message.subject, reason, delivered, "message dead-lettered");
    metrics::counter!("saga_dead_letters_total", "consumer" => consumer.to_owned()).increment(1);
    match publish_now(js, &entry).await {
        Ok(()) => {
            if let Err(err) = message.ack_with(AckKind::Term).await {
                tracing::warn!(error = %err, "term not sent");
            }
        }
        Err(err) => {
            // Without a DLQ copy the message must stay: nak it so it comes back later.
            tracing::error!(error = %err, "DLQ publish failed; message kept");
            let _ = message
                .ack_with(AckKind::Nak(Some(DLQ_PUBLISH_RETRY)))
                .await;
        }
    }
}

/// A received header's value. The name is parsed, not passed as `&str`: the client keys
/// received standard names (`Nats-Msg-Id`) as `HeaderName::Standard`, which a `&str` key
/// (always `Custom`) never matches.
fn header_value(message: &jetstream::Message, name: &str) -> Option<String> {
    let name: async_nats::HeaderName = name.parse().ok()?;
    let value = message.headers.as_ref()?.get(name)?;
    Some(value.as_str().to_owned())
}

/// Header values cannot hold line breaks; keep reasons on one bounded line.
fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}
