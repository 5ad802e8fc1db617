//! The consumer runner against a real nats-server: poison messages go to the DLQ with their
//! reason, a message that keeps failing goes there after its delivery budget, and the consumer
//! keeps going either way.

mod common;

use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use bus::consumer::{
    run_consumer, Delivery, HandleError, Handler, HEADER_DLQ_ATTEMPTS, HEADER_DLQ_CONSUMER,
    HEADER_DLQ_MSG_ID, HEADER_DLQ_REASON, HEADER_DLQ_SUBJECT,
};
use bus::jetstream::ConsumerSpec;
use bus::outbox::publish_now;
use bus::retry::RetryPolicy;
use bus::testing::eventually;
use common::{broker, header, placed, read_messages, stream_count, try_stream_count, WAIT};
use contract::codec::{Envelope, ENVELOPE_VERSION};
use contract::message::first_publish;
use contract::{codec, DLQ_STREAM, ORDER_PLACED, ORDER_STREAM};
use eventlog::OutboxMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The durable consumer under test (its DLQ subject is `dlq.payment`).
const CONSUMER: &str = "payment";

/// A retry budget of under a second, so a message that keeps failing reaches the DLQ quickly;
/// production retries for minutes (`RetryPolicy::PRODUCTION`).
const TEST_RETRY: RetryPolicy = RetryPolicy {
    backoff_ms_min: 50,
    backoff_ms_max: 200,
    budget_ms: 500,
};

/// A handler that records what it was given and answers with a fixed result.
struct Recording {
    failure: Option<HandleError>,
    seen: Mutex<Vec<(Uuid, u64)>>,
}

impl Recording {
    fn new(failure: Option<HandleError>) -> Arc<Self> {
        Arc::new(Self {
            failure,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<(Uuid, u64)> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Handler for Recording {
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl std::future::Future<Output = Result<(), HandleError>> + Send {
        self.seen
            .lock()
            .expect("not poisoned")
            .push((delivery.message.order_id(), delivery.delivered));
        let result = match &self.failure {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        };
        std::future::ready(result)
    }
}

struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<bus::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        self.task
            .await
            .expect("the consumer joins")
            .expect("the consumer stops cleanly");
    }
}

fn start(js: &jetstream::Context, handler: Arc<Recording>) -> Running {
    let token = CancellationToken::new();
    let spec = ConsumerSpec::new(ORDER_STREAM, CONSUMER, "order.>").with_retry(TEST_RETRY);
    let task = tokio::spawn(run_consumer(js.clone(), spec, handler, token.clone()));
    Running { token, task }
}

fn raw(subject: &str, msg_id: &str, payload: Vec<u8>) -> OutboxMessage {
    OutboxMessage {
        subject: subject.to_owned(),
        msg_id: msg_id.to_owned(),
        headers: Vec::new(),
        payload,
    }
}

/// Waits until the DLQ holds `n` messages and returns them.
async fn dlq_holds(js: &jetstream::Context, n: u64) -> Vec<jetstream::Message> {
    eventually(WAIT, "the DLQ to fill", || async {
        try_stream_count(js, DLQ_STREAM)
            .await
            .filter(|count| *count >= n)
    })
    .await;
    read_messages(js, DLQ_STREAM, n as usize).await
}

/// Waits until the consumer has nothing pending and nothing unacknowledged.
async fn consumer_settles(js: &jetstream::Context) {
    let stream = js.get_stream(ORDER_STREAM).await.expect("ORDER exists");
    eventually(WAIT, "the consumer to settle", || async {
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_end_in_the_dlq_with_their_reason_and_the_consumer_keeps_going() {
    // Given the design's streams and a running consumer on ORDER
    let (_server, js) = broker().await;
    let handler = Recording::new(None);
    let consumer = start(&js, handler.clone());

    // When garbage, a truncated envelope and an unknown event type are published
    let garbage = vec![0xff; 16];
    let order = Uuid::new_v4();
    let valid = first_publish(&placed(order), "trace", "00-trace-span-01", 1).expect("encodes");
    let truncated = valid.payload[..valid.payload.len() / 2].to_vec();
    let unknown = postcard::to_stdvec(&Envelope {
        version: ENVELOPE_VERSION,
        event_type: "order.teleported".into(),
        order_id: Uuid::new_v4(),
        trace_id: "trace".into(),
        occurred_at_ms: 1,
        body: vec![1, 2, 3],
    })
    .expect("encodes");
    assert!(codec::decode(&unknown).is_err());
    let poison = [
        raw(ORDER_PLACED, "poison-garbage", garbage.clone()),
        raw(ORDER_PLACED, "poison-truncated", truncated.clone()),
        raw("order.teleported", "poison-unknown", unknown.clone()),
    ];
    for message in &poison {
        publish_now(&js, message).await.expect("published");
    }
    // And then a valid order.placed
    publish_now(&js, &valid).await.expect("published");

    // Then the valid message is handled, once
    eventually(WAIT, "the valid order to be handled", || async {
        (!handler.seen().is_empty()).then_some(())
    })
    .await;
    // And the DLQ holds the three poison messages, each with its cause and origin
    let dead = dlq_holds(&js, 3).await;
    consumer_settles(&js).await;
    assert_eq!(handler.seen(), [(order, 1)]);
    assert_eq!(stream_count(&js, DLQ_STREAM).await, 3);
    let expectations = [
        ("poison-garbage", ORDER_PLACED, &garbage, "undecodable"),
        ("poison-truncated", ORDER_PLACED, &truncated, "undecodable"),
        (
            "poison-unknown",
            "order.teleported",
            &unknown,
            "unknown event type \"order.teleported\"",
        ),
    ];
    for (msg_id, subject, payload, cause) in expectations {
        let entry = dead
            .iter()
            .find(|m| header(m, HEADER_DLQ_MSG_ID).as_deref() == Some(msg_id))
            .unwrap_or_else(|| panic!("{msg_id} is in the DLQ"));
        assert_eq!(entry.subject.as_str(), format!("dlq.{CONSUMER}"));
        let reason = header(entry, HEADER_DLQ_REASON).expect("a reason");
        assert!(
            reason.contains(cause),
            "{msg_id}: reason {reason:?} names {cause:?}"
        );
        assert_eq!(header(entry, HEADER_DLQ_SUBJECT).as_deref(), Some(subject));
        assert_eq!(
            header(entry, HEADER_DLQ_CONSUMER).as_deref(),
            Some(CONSUMER)
        );
        assert_eq!(header(entry, HEADER_DLQ_ATTEMPTS).as_deref(), Some("1"));
        assert_eq!(entry.payload.as_ref(), payload.as_slice());
    }
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_keeps_failing_goes_to_the_dlq_after_its_delivery_budget() {
    // Given a consumer whose handler fails transiently every time
    let (_server, js) = broker().await;
    let handler = Recording::new(Some(HandleError::Transient("gateway down".into())));
    let consumer = start(&js, handler.clone());

    // When a valid order.placed is published
    let order = Uuid::new_v4();
    let valid = first_publish(&placed(order), "trace", "00-trace-span-01", 1).expect("encodes");
    publish_now(&js, &valid).await.expect("published");

    // Then once its retry budget is spent (naked with backoff in between) it is dead-lettered
    let max_deliveries = TEST_RETRY.max_deliveries();
    let dead = dlq_holds(&js, 1).await;
    consumer_settles(&js).await;
    let attempts: Vec<(Uuid, u64)> = (1..=max_deliveries).map(|n| (order, n)).collect();
    assert_eq!(handler.seen(), attempts);
    let entry = &dead[0];
    let reason = header(entry, HEADER_DLQ_REASON).expect("a reason");
    assert!(
        reason.contains(&format!("failed {max_deliveries} deliveries")),
        "{reason}"
    );
    assert!(reason.contains("gateway down"), "{reason}");
    assert_eq!(
        header(entry, HEADER_DLQ_ATTEMPTS),
        Some(max_deliveries.to_string())
    );
    assert_eq!(
        header(entry, HEADER_DLQ_SUBJECT).as_deref(),
        Some(ORDER_PLACED)
    );
    assert_eq!(header(entry, HEADER_DLQ_MSG_ID), Some(valid.msg_id.clone()));
    assert_eq!(entry.payload.as_ref(), valid.payload.as_slice());
    consumer.stop().await;
}
