//! Declaring the design's streams against a real nats-server: idempotent, and drift repaired
//! in place without losing messages.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bus::jetstream::{
    ensure_streams, ensure_streams_with, stream_configs, stream_configs_with, Retention,
    DUPLICATE_WINDOW_SECS,
};
use bus::testing::NatsServer;
use common::{connect, stream_count};
use contract::ORDER_STREAM;

/// Asserts a stream's configuration is the design's on every field `ensure_streams` manages.
async fn assert_as_designed(js: &jetstream::Context, wanted: &stream::Config) -> stream::Info {
    let mut stream = js
        .get_stream(&wanted.name)
        .await
        .unwrap_or_else(|e| panic!("stream {} exists: {e}", wanted.name));
    let info = stream.info().await.expect("stream info").clone();
    let have = &info.config;
    // A macro rather than a loop over fields of different types; each failure names its field.
    macro_rules! as_wanted {
        ($($field:ident),*) => {
            $(assert_eq!(
                have.$field, wanted.$field,
                "{} {}", wanted.name, stringify!($field)
            );)*
        };
    }
    as_wanted!(
        subjects,
        storage,
        retention,
        discard,
        max_age,
        max_bytes,
        duplicate_window
    );
    info
}

async fn publish(js: &jetstream::Context, subject: &str) {
    js.publish(subject.to_owned(), "x".into())
        .await
        .expect("sent")
        .await
        .expect("acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_the_streams_twice_changes_nothing_the_second_time() {
    // Given a broker where the streams were declared once and hold a message
    let server = NatsServer::start().await;
    let (_client, js) = connect(&server).await;
    ensure_streams(&js).await.expect("first declaration");
    let mut first = Vec::new();
    for wanted in stream_configs() {
        first.push(assert_as_designed(&js, &wanted).await);
    }
    publish(&js, "order.placed").await;

    // When they are declared again
    ensure_streams(&js).await.expect("second declaration");

    // Then every stream is the same one, configured as designed, and the message is still there
    assert_eq!(stream_configs().len(), 7);
    for (wanted, before) in stream_configs().iter().zip(&first) {
        let after = assert_as_designed(&js, wanted).await;
        assert_eq!(
            after.created, before.created,
            "{} was not recreated",
            wanted.name
        );
        assert_eq!(after.config, before.config, "{} unchanged", wanted.name);
    }
    assert_eq!(stream_count(&js, ORDER_STREAM).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_stream_is_updated_in_place_to_the_design() {
    // Given ORDER created by hand with a short dedup window, no age limit and a narrower
    // subject, holding a message
    let server = NatsServer::start().await;
    let (_client, js) = connect(&server).await;
    let drifted = stream::Config {
        name: ORDER_STREAM.to_owned(),
        subjects: vec!["order.placed".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(10),
        ..Default::default()
    };
    let mut created = js
        .create_stream(drifted)
        .await
        .expect("ORDER created by hand");
    let created_at = created.info().await.expect("info").created;
    publish(&js, "order.placed").await;

    // When the streams are declared
    ensure_streams(&js)
        .await
        .expect("declaration repairs drift");

    // Then ORDER has the design's settings, is the same stream and kept its message
    let wanted = stream_configs()
        .into_iter()
        .find(|c| c.name == ORDER_STREAM)
        .expect("ORDER is designed");
    let info = assert_as_designed(&js, &wanted).await;
    assert_eq!(
        info.config.duplicate_window,
        Duration::from_secs(DUPLICATE_WINDOW_SECS)
    );
    assert_eq!(info.created, created_at, "updated, not recreated");
    assert_eq!(info.state.messages, 1);
    // And the rest of the design's streams exist
    for wanted in stream_configs() {
        assert_as_designed(&js, &wanted).await;
    }
    // And the widened subjects now take the other order events
    publish(&js, "order.failed").await;
    assert_eq!(stream_count(&js, ORDER_STREAM).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_the_wrong_storage_is_refused_not_recreated() {
    // Given ORDER created by hand in memory, holding a message
    let server = NatsServer::start().await;
    let (_client, js) = connect(&server).await;
    js.create_stream(stream::Config {
        name: ORDER_STREAM.to_owned(),
        subjects: vec!["order.>".to_owned()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("ORDER created by hand");
    publish(&js, "order.placed").await;

    // When the streams are declared
    let err = ensure_streams(&js)
        .await
        .expect_err("storage cannot be changed in place");

    // Then the error names the stream and the fix, and the stream and its message are untouched
    let message = err.to_string();
    assert!(
        message.contains(ORDER_STREAM) && message.contains("recreate"),
        "{message}"
    );
    let mut order = js.get_stream(ORDER_STREAM).await.expect("ORDER exists");
    let info = order.info().await.expect("info");
    assert_eq!(info.config.storage, stream::StorageType::Memory);
    assert_eq!(info.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_retention_limits_are_applied_in_place_keeping_the_messages() {
    // Given the streams declared with the default limits, holding a message, all bounded
    let server = NatsServer::start().await;
    let (_client, js) = connect(&server).await;
    ensure_streams(&js).await.expect("declared");
    for wanted in stream_configs() {
        assert!(wanted.max_bytes > 0, "{} has a byte limit", wanted.name);
        assert!(
            !wanted.max_age.is_zero(),
            "{} has an age limit",
            wanted.name
        );
    }
    publish(&js, "order.placed").await;
    let created = js
        .get_stream(ORDER_STREAM)
        .await
        .expect("ORDER")
        .info()
        .await
        .expect("info")
        .created;

    // When an operator tunes the limits and the streams are declared again
    let tuned = Retention {
        saga_max_age: Duration::from_secs(3 * 24 * 3600),
        saga_max_bytes: 64 * 1024 * 1024,
        dlq_max_age: Duration::from_secs(90 * 24 * 3600),
        dlq_max_bytes: 32 * 1024 * 1024,
    };
    ensure_streams_with(&js, &tuned).await.expect("re-declared");

    // Then every stream has the new limits, is the same stream, and kept its messages
    for wanted in stream_configs_with(&tuned) {
        assert_as_designed(&js, &wanted).await;
    }
    let info = assert_as_designed(
        &js,
        &stream_configs_with(&tuned)
            .into_iter()
            .find(|c| c.name == ORDER_STREAM)
            .expect("ORDER"),
    )
    .await;
    assert_eq!(info.created, created, "updated, not recreated");
    assert_eq!(info.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_taking_over_a_subject_starts_after_what_its_predecessor_acknowledged() {
    use async_nats::jetstream::consumer::pull;
    use bus::jetstream::{ensure_consumer, ConsumerSpec};
    use futures::StreamExt;

    // Given a consumer of every order subject that acknowledged the first two messages of four
    let server = NatsServer::start().await;
    let (_client, js) = connect(&server).await;
    ensure_streams(&js).await.expect("declared");
    for subject in [
        "order.failed",
        "order.placed",
        "order.failed",
        "order.placed",
    ] {
        publish(&js, subject).await;
    }
    let both = ensure_consumer(&js, &ConsumerSpec::new(ORDER_STREAM, "p", "order.>"))
        .await
        .expect("the old consumer");
    let mut batch = both
        .fetch()
        .max_messages(2)
        .messages()
        .await
        .expect("fetched");
    while let Some(message) = batch.next().await {
        message
            .expect("a message")
            .double_ack()
            .await
            .expect("acked");
    }

    // When it is narrowed to order.placed and order.failed gets a consumer of its own
    let failed = ConsumerSpec::new(ORDER_STREAM, "p-failed", "order.failed").taking_over_from("p");
    let taking_over = ensure_consumer(&js, &failed).await.expect("created");
    ensure_consumer(&js, &ConsumerSpec::new(ORDER_STREAM, "p", "order.placed"))
        .await
        .expect("narrowed");

    // Then the new one gets the order.failed the old one had not acknowledged (seq 3), not the
    // one it had (seq 1) ...
    let mut batch = taking_over
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetched");
    let mut seqs = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("a message");
        seqs.push(message.info().expect("info").stream_sequence);
        message.double_ack().await.expect("acked");
    }
    assert_eq!(seqs, [3]);
    // ... and declaring it again changes nothing
    let mut again = js
        .get_stream(ORDER_STREAM)
        .await
        .expect("stream")
        .get_consumer::<pull::Config>("p-failed")
        .await
        .expect("still there");
    let before = again.info().await.expect("info").created;
    ensure_consumer(&js, &failed).await.expect("declared again");
    assert_eq!(again.info().await.expect("info").created, before);
}
