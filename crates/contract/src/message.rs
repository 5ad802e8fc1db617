//! Outbox entries for saga messages: the design's headers and deterministic message ids.
//! Pure: building an entry does no I/O; the bus's relay publishes it.

use eventlog::OutboxMessage;

use crate::codec;
use crate::wire::{
    self, SagaMessage, CONTENT_TYPE_POSTCARD, HEADER_CONTENT_TYPE, HEADER_EVENT_TYPE,
    HEADER_EVENT_VERSION, HEADER_ORDER_ID, HEADER_TRACEPARENT, HEADER_TRACE_ID,
};

/// Builds the outbox entry for a saga message, with the design's headers.
pub fn outbox_message(
    message: &SagaMessage,
    msg_id: String,
    trace_id: &str,
    traceparent: &str,
    occurred_at_ms: u64,
) -> Result<OutboxMessage, postcard::Error> {
    let subject = message.subject();
    let payload = codec::encode(message, trace_id, occurred_at_ms)?;
    Ok(OutboxMessage {
        headers: vec![
            (HEADER_TRACE_ID.to_owned(), trace_id.to_owned()),
            (HEADER_TRACEPARENT.to_owned(), traceparent.to_owned()),
            (HEADER_EVENT_TYPE.to_owned(), subject.clone()),
            (
                HEADER_EVENT_VERSION.to_owned(),
                codec::ENVELOPE_VERSION.to_string(),
            ),
            (
                HEADER_CONTENT_TYPE.to_owned(),
                CONTENT_TYPE_POSTCARD.to_owned(),
            ),
            (HEADER_ORDER_ID.to_owned(), message.order_id().to_string()),
        ],
        subject,
        msg_id,
        payload,
    })
}

/// The deterministic first-publish entry of a saga message (`<orderId>.<subject>`).
pub fn first_publish(
    message: &SagaMessage,
    trace_id: &str,
    traceparent: &str,
    occurred_at_ms: u64,
) -> Result<OutboxMessage, postcard::Error> {
    let id = wire::message_id(message.order_id(), &message.subject());
    outbox_message(message, id, trace_id, traceparent, occurred_at_ms)
}

/// Copies an already published entry for a deliberate re-publish under a new message id.
///
/// The server keeps an id blocked for its whole dedup window, so a re-publish that must reach
/// consumers (a re-drive, or a recorded outcome re-sent because its input came again) needs an
/// id of its own; deriving it from the cause keeps repeated deliveries of the same cause deduped.
pub fn republish(original: &OutboxMessage, cause: &str) -> OutboxMessage {
    let mut copy = original.clone();
    copy.msg_id = format!("{}~{}", original.msg_id, cause);
    copy
}
