//! The outbox relay: publishes durable outbox entries to JetStream, pipelined, and removes each
//! entry only after the server acknowledged it.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::retry::{Backoff, RetryPolicy, Wait};
use contract::HEADER_MSG_ID;
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
                let publish = Publish::build()
                    .payload(message.payload.into())
                    .headers(headers_of_parts(&message.msg_id, &message.headers));
                match js.send_publish(message.subject, publish).await {
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
