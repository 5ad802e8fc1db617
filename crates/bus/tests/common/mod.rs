//! Fixtures shared by the store's integration tests: commits shaped like a handler's, and
//! readers that look at what a JetStream stream really holds.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use bus::jetstream::NatsSettings;
use bus::testing::NatsServer;
use contract::{OrderLine, OrderPlaced, SagaMessage, HEADER_MSG_ID};
use eventlog::{Commit, EventMeta, EventStore, NewEvent, OutboxMessage, StoreConfig, StreamAppend};
use futures::StreamExt;
use uuid::Uuid;

/// How long a test waits for a condition it polls before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Opens a group-commit store in `dir`.
pub(crate) fn open_store(dir: &Path) -> EventStore {
    EventStore::open(StoreConfig::new(dir)).expect("the store opens")
}

/// An `order.placed` message for a fresh order.
pub(crate) fn placed(order_id: Uuid) -> SagaMessage {
    SagaMessage::Placed(OrderPlaced {
        order_id,
        user_id: "user-1".into(),
        items: vec![OrderLine {
            sku: "sku-1".into(),
            qty: 1,
            price: 1_000,
        }],
        coupon_id: None,
        points: 0,
        amount: 1_000,
        placed_at_ms: 1,
        deadline_ms: 2,
    })
}

/// The outbox entry a handler would queue for `order.placed` of this order.
pub(crate) fn placed_entry(order_id: Uuid) -> OutboxMessage {
    let trace_id = contract::new_trace_id();
    contract::message::first_publish(
        &placed(order_id),
        &trace_id,
        &contract::traceparent(&trace_id),
        1,
    )
    .expect("order.placed encodes")
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
        dedup_key: Some(contract::dedup_key(order_id, "order", "place")),
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

/// A client and the services' JetStream context for a test server.
pub(crate) async fn connect(server: &NatsServer) -> (async_nats::Client, jetstream::Context) {
    let client = bus::jetstream::connect(&NatsSettings::new(server.url(), "store-tests"))
        .await
        .expect("the test server accepts connections");
    let js = bus::jetstream::context(client.clone());
    (client, js)
}

/// Messages a stream holds right now.
pub(crate) async fn stream_count(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// Messages a stream holds, or `None` while the server cannot answer (e.g. restarting).
pub(crate) async fn try_stream_count(js: &jetstream::Context, stream: &str) -> Option<u64> {
    let mut stream = js.get_stream(stream).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Reads the first `n` messages of a stream through an ephemeral pull consumer.
pub(crate) async fn read_messages(
    js: &jetstream::Context,
    stream: &str,
    n: usize,
) -> Vec<jetstream::Message> {
    let stream = js.get_stream(stream).await.expect("the stream exists");
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("an ephemeral consumer");
    let mut messages = consumer.messages().await.expect("a message stream");
    let mut out = Vec::with_capacity(n);
    let read = tokio::time::timeout(WAIT, async {
        while out.len() < n {
            match messages.next().await {
                Some(Ok(message)) => out.push(message),
                Some(Err(err)) => panic!("reading {n} messages: {err}"),
                None => panic!("the message stream ended after {} messages", out.len()),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "read only {} of {n} messages", out.len());
    out
}

/// A header of a stream message. The name is parsed so standard names (`Nats-Msg-Id`) match
/// the way the client keys received headers; a `&str` key never would.
pub(crate) fn header(message: &jetstream::Message, name: &str) -> Option<String> {
    let name: async_nats::HeaderName = name.parse().expect("a valid header name");
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

/// The distinct `Nats-Msg-Id`s of some messages.
pub(crate) fn msg_ids(messages: &[jetstream::Message]) -> HashSet<String> {
    messages
        .iter()
        .map(|m| header(m, HEADER_MSG_ID).expect("every relayed message has a Nats-Msg-Id"))
        .collect()
}
