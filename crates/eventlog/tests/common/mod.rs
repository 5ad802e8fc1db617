//! Fixtures shared by the event log's integration tests: commits shaped like a handler's.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use eventlog::{Commit, EventMeta, EventStore, NewEvent, OutboxMessage, StoreConfig, StreamAppend};
use uuid::Uuid;

/// How long a test waits for a condition it polls before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Opens a group-commit store in `dir`.
pub(crate) fn open_store(dir: &Path) -> EventStore {
    EventStore::open(StoreConfig::new(dir)).expect("the store opens")
}

/// The message id of an order's first `order.placed` (the log treats ids as opaque).
pub(crate) fn placed_msg_id(order_id: Uuid) -> String {
    format!("{order_id}.order.placed")
}

/// The dedup key a handler would record for placing this order (opaque to the log).
pub(crate) fn place_key(order_id: Uuid) -> String {
    format!("{order_id}/order/place")
}

/// The outbox entry a handler would queue for `order.placed` of this order.
pub(crate) fn placed_entry(order_id: Uuid) -> OutboxMessage {
    OutboxMessage {
        subject: "order.placed".to_owned(),
        msg_id: placed_msg_id(order_id),
        headers: vec![("Order-Id".to_owned(), order_id.to_string())],
        payload: order_id.as_bytes().to_vec(),
    }
}

/// Polls `check` until it yields a value; panics naming `what` after `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Metadata of a commit about one order.
pub(crate) fn meta_for(order_id: &str) -> EventMeta {
    EventMeta {
        correlation_id: order_id.to_owned(),
        trace_id: format!("trace-{order_id}"),
        traceparent: format!("00-trace-{order_id}-01"),
        causation_id: format!("cause-{order_id}"),
    }
}

/// One event handed to an append.
pub(crate) fn event(event_type: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

/// What a handler commits for one input: a new stream's first event, the input's dedup key and
/// the `order.placed` entry to publish.
pub(crate) fn handler_commit(order_id: Uuid) -> Commit {
    Commit {
        meta: meta_for(&order_id.to_string()),
        appends: vec![StreamAppend {
            stream: format!("order-{order_id}"),
            expected_version: 0,
            events: vec![event("OrderPlaced", order_id.as_bytes())],
        }],
        dedup_key: Some(place_key(order_id)),
        outbox: vec![placed_entry(order_id)],
        ..Commit::default()
    }
}

/// A commit that only queues outbox entries.
pub(crate) fn outbox_only(entries: Vec<OutboxMessage>) -> Commit {
    Commit {
        outbox: entries,
        ..Commit::default()
    }
}
