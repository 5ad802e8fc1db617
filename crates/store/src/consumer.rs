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

use crate::codec::{self, Envelope};
use crate::contract::{SagaMessage, HEADER_MSG_ID, HEADER_ORDER_ID, HEADER_TRACEPARENT};
use crate::error::Result;
use crate::jetstream::{ensure_consumer, ensure_streams, ConsumerSpec};
use crate::outbox::publish_now;
use crate::record::OutboxMessage;

/// Messages requested per pull.
pub const PULL_BATCH: usize = 256;
/// Parallel lanes; one order always maps to the same lane, so it is never handled twice at once.
pub const LANES: usize = 64;
/// Messages queued per lane.
pub const LANE_CAPACITY: usize = 32;
/// First nak backoff of a transiently failing message; doubles per delivery.
pub const RETRY_BACKOFF_MS_MIN: u64 = 100;
/// Cap of the nak backoff of a transiently failing message.
pub const RETRY_BACKOFF_MS_MAX: u64 = 30_000;
/// Backoff a transiently failing message may accumulate before it goes to the DLQ (10 min):
/// long enough to ride out a restart or a short outage of whatever the handler depends on.
pub const RETRY_BUDGET_MS: u64 = 10 * 60 * 1_000;
/// Delay before a message whose DLQ copy could not be published comes back.
pub const DLQ_PUBLISH_RETRY_MS: u64 = 5_000;
/// Cap of the backoff while the consumer cannot be (re)created.
pub const RESUBSCRIBE_BACKOFF_MS_MAX: u64 = 2_000;

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

/// How a message that fails transiently is retried before it is dead-lettered.
///
/// Delivery `n` that fails is naked for `min(backoff_ms_min << (n - 1), backoff_ms_max)`; once
/// the backoff already spent reaches `budget_ms` the message goes to the DLQ instead. The budget
/// counts backoff only: the time each attempt itself takes comes on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff.
    pub backoff_ms_min: u64,
    /// Backoff cap.
    pub backoff_ms_max: u64,
    /// Total backoff before the DLQ.
    pub budget_ms: u64,
}

/// What to do with a message whose handler failed transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Nak it; it comes back after this delay.
    RetryAfter(Duration),
    /// The budget is spent: dead-letter it.
    DeadLetter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

impl RetryPolicy {
    /// Minutes of retries before the DLQ (the default of every consumer).
    pub const PRODUCTION: RetryPolicy = RetryPolicy {
        backoff_ms_min: RETRY_BACKOFF_MS_MIN,
        backoff_ms_max: RETRY_BACKOFF_MS_MAX,
        budget_ms: RETRY_BUDGET_MS,
    };

    /// The nak delay after failed delivery `delivered` (1-based).
    pub fn backoff_ms(&self, delivered: u64) -> u64 {
        let shift = delivered.saturating_sub(1).min(32);
        self.backoff_ms_min
            .max(1)
            .saturating_mul(1u64 << shift)
            .min(self.backoff_ms_max.max(self.backoff_ms_min))
    }

    /// Backoff spent before delivery `delivered` (1-based): the sum of the earlier delays.
    pub fn waited_ms(&self, delivered: u64) -> u64 {
        let mut waited = 0u64;
        let mut n = 1u64;
        while n < delivered {
            let backoff = self.backoff_ms(n);
            if backoff >= self.backoff_ms_max {
                // Every later delay is the cap: finish in one step.
                return waited.saturating_add(backoff.saturating_mul(delivered - n));
            }
            waited = waited.saturating_add(backoff);
            n += 1;
        }
        waited
    }

    /// Whether failed delivery `delivered` is retried, and after how long.
    pub fn after_failure(&self, delivered: u64) -> RetryDecision {
        if self.waited_ms(delivered.max(1)) >= self.budget_ms {
            RetryDecision::DeadLetter
        } else {
            RetryDecision::RetryAfter(Duration::from_millis(self.backoff_ms(delivered.max(1))))
        }
    }

    /// The delivery at which a message that always fails is dead-lettered.
    pub fn max_deliveries(&self) -> u64 {
        let mut delivered = 1;
        while self.after_failure(delivered) != RetryDecision::DeadLetter {
            delivered += 1;
        }
        delivered
    }
}

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
    let mut backoff_ms = 50;
    while !shutdown.is_cancelled() {
        match consume(&js, &spec, &handler, &shutdown).await {
            Ok(()) => backoff_ms = 50,
            Err(err) => {
                tracing::warn!(consumer = %spec.durable, error = %err, "consumer interrupted; re-subscribing");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff_ms = (backoff_ms * 2).min(RESUBSCRIBE_BACKOFF_MS_MAX);
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
    let result = handler.handle(delivery).await;
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
                .ack_with(AckKind::Nak(Some(Duration::from_millis(
                    DLQ_PUBLISH_RETRY_MS,
                ))))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_is_retried_for_minutes_with_capped_backoff_before_the_dlq() {
        // Given the production policy and a handler that fails every time
        let policy = RetryPolicy::default();
        let mut clock_ms = 0u64;
        let mut delivered = 1u64;
        let mut delays = Vec::new();
        // When the clock advances by each nak delay
        while let RetryDecision::RetryAfter(delay) = policy.after_failure(delivered) {
            let delay = u64::try_from(delay.as_millis()).expect("fits");
            delays.push(delay);
            clock_ms += delay;
            delivered += 1;
        }
        // Then it is dead-lettered only after the whole budget, never waiting more than the cap
        assert!(clock_ms >= RETRY_BUDGET_MS, "{clock_ms}");
        assert!(
            clock_ms < RETRY_BUDGET_MS + RETRY_BACKOFF_MS_MAX,
            "{clock_ms}"
        );
        assert_eq!(delays[0], RETRY_BACKOFF_MS_MIN);
        assert!(delays.iter().all(|d| *d <= RETRY_BACKOFF_MS_MAX));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(policy.max_deliveries(), delivered);
        assert_eq!(policy.waited_ms(delivered), clock_ms);
    }

    #[test]
    fn a_small_budget_dead_letters_after_a_few_deliveries() {
        // Given
        let policy = RetryPolicy {
            backoff_ms_min: 100,
            backoff_ms_max: 400,
            budget_ms: 700,
        };
        // When / Then: 100 + 200 + 400 = 700 spent before the fourth delivery
        assert_eq!(
            policy.after_failure(1),
            RetryDecision::RetryAfter(Duration::from_millis(100))
        );
        assert_eq!(
            policy.after_failure(3),
            RetryDecision::RetryAfter(Duration::from_millis(400))
        );
        assert_eq!(policy.after_failure(4), RetryDecision::DeadLetter);
        assert_eq!(policy.max_deliveries(), 4);
        assert_eq!(policy.waited_ms(10), 100 + 200 + 400 * 7);
    }

    #[test]
    fn huge_delivery_counts_do_not_overflow() {
        // Given
        let policy = RetryPolicy::default();
        // When / Then
        assert_eq!(policy.after_failure(u64::MAX), RetryDecision::DeadLetter);
        assert_eq!(policy.backoff_ms(u64::MAX), RETRY_BACKOFF_MS_MAX);
    }
}
