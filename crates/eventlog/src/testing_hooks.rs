//! Test support (feature `test-util`): failure injection that holds the writer between applying
//! a commit group and flushing it, to show that nothing is answered before the disk has it; and
//! the fixtures the store's integration tests share with those of the crates built on it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Commit, EventMeta, EventStore, NewEvent, OutboxMessage, StoreConfig, StreamAppend};

static HOLD_FLUSH: AtomicBool = AtomicBool::new(false);
static HELD_GROUPS: AtomicU64 = AtomicU64::new(0);
/// How often a held writer looks whether it may flush.
const HOLD_POLL_MS: u64 = 1;

/// While `true`, every store writer in this process applies commit groups but does not flush
/// them, so their callers are not answered. A SIGKILL in that window loses them, as a crash would.
pub fn set_hold_flush(hold: bool) {
    HOLD_FLUSH.store(hold, Ordering::SeqCst);
}

/// Commit groups that were applied and then held before their flush: a test's sign that a
/// decision reached the writer.
pub fn held_groups() -> u64 {
    HELD_GROUPS.load(Ordering::SeqCst)
}

/// Called by the writer right before it flushes.
pub(crate) fn hold_flush() {
    if !HOLD_FLUSH.load(Ordering::SeqCst) {
        return;
    }
    HELD_GROUPS.fetch_add(1, Ordering::SeqCst);
    while HOLD_FLUSH.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(HOLD_POLL_MS));
    }
}

/// How often [`eventually`] checks again.
const EVENTUALLY_POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(EVENTUALLY_POLL).await;
    }
}

/// A number a measuring test or benchmark reads from the environment variable `name`: `None`
/// when it is unset or not a number.
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Opens a group-commit store in `dir`.
pub fn open_store(dir: &Path) -> EventStore {
    EventStore::open(StoreConfig::new(dir)).expect("the store opens")
}

/// Metadata of a commit about one order.
pub fn meta_for(order_id: &str) -> EventMeta {
    EventMeta {
        correlation_id: order_id.to_owned(),
        trace_id: format!("trace-{order_id}"),
        traceparent: format!("00-trace-{order_id}-01"),
        causation_id: format!("cause-{order_id}"),
    }
}

/// One event handed to an append.
pub fn event(event_type: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

/// What a handler commits for placing an order: the first event of the order's stream (carrying
/// `payload`), the input's dedup key and the `order.placed` entry to publish.
pub fn handler_commit(
    order_id: &str,
    payload: &[u8],
    dedup_key: String,
    placed: OutboxMessage,
) -> Commit {
    Commit {
        meta: meta_for(order_id),
        appends: vec![StreamAppend {
            stream: format!("order-{order_id}"),
            expected_version: 0,
            events: vec![event("OrderPlaced", payload)],
        }],
        dedup_key: Some(dedup_key),
        outbox: vec![placed],
        ..Commit::default()
    }
}

/// A commit that only queues outbox entries.
pub fn outbox_only(entries: Vec<OutboxMessage>) -> Commit {
    Commit {
        outbox: entries,
        ..Commit::default()
    }
}
