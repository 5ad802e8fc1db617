//! The outbox relay against a real nats-server: exactly once per entry across relay restarts,
//! a crashed relay and a broker restart, and server-side dedup of a repeated message id.

mod common;

use std::collections::HashSet;

use async_nats::jetstream::{self, message::PublishMessage};
use bus::outbox::{run_relay, RelayStats};
use bus::testing::eventually;
use common::{
    broker, msg_ids, placed_entry, read_messages, stream_count, temp_store, try_stream_count, WAIT,
};
use contract::{HEADER_MSG_ID, ORDER_STREAM};
use eventlog::testing_hooks::outbox_only;
use eventlog::{EventStore, OutboxMessage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Outbox entries of the exactly-once test.
const ENTRIES: usize = 2_000;
/// Outbox entries of the broker-restart test.
const ENTRIES_ACROSS_RESTART: usize = 5_000;
/// Entries per commit when filling the outbox.
const ENTRIES_PER_COMMIT: usize = 100;

/// Commits `n` `order.placed` entries, each for its own order, and returns their message ids.
async fn fill_outbox(store: &EventStore, n: usize) -> HashSet<String> {
    common::fill_outbox(store, n, ENTRIES_PER_COMMIT).await
}

fn spawn_relay(
    store: &EventStore,
    js: &jetstream::Context,
    token: &CancellationToken,
) -> JoinHandle<bus::Result<RelayStats>> {
    tokio::spawn(run_relay(store.clone(), js.clone(), token.clone()))
}

/// Waits until the stream holds at least `n` messages.
async fn stream_reaches(js: &jetstream::Context, n: u64) {
    eventually(WAIT, "the relay to publish", || async {
        try_stream_count(js, ORDER_STREAM)
            .await
            .filter(|count| *count >= n)
    })
    .await;
}

/// Waits until the relay emptied the outbox: every entry was acknowledged, so it is stored.
async fn outbox_drains(store: &EventStore) {
    eventually(WAIT, "the outbox to drain", || async {
        (store.outbox_len() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outbox_entry_is_published_exactly_once_across_relay_restarts() {
    // Given a broker with the design's streams and 2000 durable outbox entries
    let (_server, js) = broker().await;
    let (_dir, store) = temp_store();
    let ids = fill_outbox(&store, ENTRIES).await;

    // When the relay is shut down as soon as it has published something
    let token = CancellationToken::new();
    let first = spawn_relay(&store, &js, &token);
    stream_reaches(&js, 1).await;
    token.cancel();
    let first = first.await.expect("joins").expect("a clean stop");
    let left_after_stop = store.outbox_len();
    // A clean stop removes exactly the entries it saw acknowledged, and no others.
    assert_eq!(left_after_stop as u64, ENTRIES as u64 - first.published);
    let in_stream_after_stop = stream_count(&js, ORDER_STREAM).await;
    // And a second relay is aborted once it made progress (a crash: entries the server
    // acknowledged may stay in the outbox and be published again)
    let crashed = spawn_relay(&store, &js, &CancellationToken::new());
    if in_stream_after_stop < ENTRIES as u64 {
        stream_reaches(&js, in_stream_after_stop + 1).await;
    }
    crashed.abort();
    let aborted = crashed.await.expect_err("the relay only ends when told");
    assert!(
        aborted.is_cancelled(),
        "the relay was aborted, not failed: {aborted}"
    );
    let left_after_crash = store.outbox_len();
    // And a third relay runs until the outbox is empty
    let token = CancellationToken::new();
    let last = spawn_relay(&store, &js, &token);
    outbox_drains(&store).await;
    token.cancel();
    let last = last.await.expect("joins").expect("a clean stop");
    eprintln!(
        "stopped relay: {first:?}, left {left_after_stop} of {ENTRIES}; \
         crashed relay left {left_after_crash}; last relay: {last:?}"
    );

    // Then the stream holds exactly one message per entry, each with its own id
    assert_eq!(stream_count(&js, ORDER_STREAM).await, ENTRIES as u64);
    let messages = read_messages(&js, ORDER_STREAM, ENTRIES).await;
    assert_eq!(msg_ids(&messages), ids);
    // And the outbox is empty
    assert_eq!(store.outbox_len(), 0);
    assert_eq!(store.verify().expect("verifies").outbox_pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_while_the_relay_publishes_loses_and_doubles_nothing() {
    // Given a broker with the design's streams, 5000 outbox entries and a running relay
    let (mut server, js) = broker().await;
    let (_dir, store) = temp_store();
    let mut ids = fill_outbox(&store, ENTRIES_ACROSS_RESTART).await;
    let token = CancellationToken::new();
    let relay = spawn_relay(&store, &js, &token);
    stream_reaches(&js, 1).await;

    // When the broker restarts under it
    let before_restart = try_stream_count(&js, ORDER_STREAM).await;
    server.restart().await;
    eprintln!("restarted the broker with {before_restart:?} of {ENTRIES_ACROSS_RESTART} published");
    // And more entries are committed while it is coming back
    ids.extend(fill_outbox_more(&store, ENTRIES_PER_COMMIT).await);

    // Then every entry ends up in the stream exactly once and the outbox empties
    let n = ids.len();
    outbox_drains(&store).await;
    token.cancel();
    let stats = relay.await.expect("joins").expect("a clean stop");
    eprintln!("relay: {stats:?}");
    assert_eq!(stream_count(&js, ORDER_STREAM).await, n as u64);
    let messages = read_messages(&js, ORDER_STREAM, n).await;
    assert_eq!(msg_ids(&messages), ids);
    assert_eq!(store.outbox_len(), 0);
}

/// Commits `n` more entries without asserting the outbox size (the relay may be draining it).
async fn fill_outbox_more(store: &EventStore, n: usize) -> HashSet<String> {
    let entries: Vec<OutboxMessage> = (0..n).map(|_| placed_entry(Uuid::new_v4())).collect();
    let ids = entries.iter().map(|e| e.msg_id.clone()).collect();
    store
        .commit(outbox_only(entries))
        .await
        .expect("the outbox commit is durable");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_message_id_is_dropped_by_the_server() {
    // Given two commits that queued the same outbox entry (same Nats-Msg-Id)
    let (_server, js) = broker().await;
    let (_dir, store) = temp_store();
    let entry = placed_entry(Uuid::new_v4());
    for _ in 0..2 {
        store
            .commit(outbox_only(vec![entry.clone()]))
            .await
            .expect("durable");
    }
    assert_eq!(store.outbox_len(), 2);

    // When the relay publishes both
    let token = CancellationToken::new();
    let relay = spawn_relay(&store, &js, &token);
    outbox_drains(&store).await;
    token.cancel();
    let stats = relay.await.expect("joins").expect("a clean stop");

    // Then the server acknowledged both but the stream holds one message
    assert_eq!(stats.published, 2);
    assert_eq!(stream_count(&js, ORDER_STREAM).await, 1);
    let messages = read_messages(&js, ORDER_STREAM, 1).await;
    assert_eq!(msg_ids(&messages), HashSet::from([entry.msg_id.clone()]));
    assert_eq!(messages[0].payload.as_ref(), entry.payload.as_slice());

    // And publishing it once more is acknowledged as a duplicate of stream seq 1
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_MSG_ID, entry.msg_id.as_str());
    let ack = js
        .send_publish(
            entry.subject.clone(),
            PublishMessage::build()
                .payload(entry.payload.clone().into())
                .headers(headers),
        )
        .await
        .expect("sent")
        .await
        .expect("acknowledged");
    assert!(ack.duplicate, "the server flags the re-publish: {ack:?}");
    assert_eq!((ack.stream.as_str(), ack.sequence), (ORDER_STREAM, 1));
    assert_eq!(stream_count(&js, ORDER_STREAM).await, 1);
}
