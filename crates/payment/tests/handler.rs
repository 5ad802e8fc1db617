//! Payment's saga handler over a real log (no broker): deliveries go straight to the shared
//! participant handler, and what it queued for publishing is read back from the outbox.

use bus::consumer::{Delivery, HandleError, Handler};
use contract::fixtures::{self, line};
use contract::{codec, OrderFailed, OrderPlaced, Participant, SagaMessage};
use eventlog::live::Live;
use eventlog::{EventStore, OutboxMessage, StoreConfig};
use payment::domain::{Payment, PaymentStatus};
use payment::gateway::{Gateway, HttpGateway, PgTimeouts, SimulatedGateway, SimulatedRules};
use payment::handler::PaymentParticipant;
use servicekit::participant::ParticipantHandler;
use uuid::Uuid;

fn placed(order_id: Uuid) -> SagaMessage {
    SagaMessage::Placed(OrderPlaced {
        items: vec![line("sku-1", 1, 700)],
        amount: 700,
        placed_at_ms: 1,
        deadline_ms: 2,
        ..fixtures::placed(order_id)
    })
}

fn failed(order_id: Uuid) -> SagaMessage {
    SagaMessage::Failed(OrderFailed {
        order_id,
        reason: "saga deadline passed".into(),
        required: vec![Participant::Payment, Participant::Stock],
    })
}

/// A delivery of `message` under the message id `msg_id`.
fn delivery(message: SagaMessage, msg_id: &str) -> Delivery {
    let trace_id = format!("trace-{}", message.order_id().simple());
    let bytes = codec::encode(&message, &trace_id, 1).expect("encodes");
    let (envelope, message) = codec::decode(&bytes).expect("decodes");
    Delivery {
        subject: message.subject(),
        envelope,
        message,
        msg_id: msg_id.to_owned(),
        traceparent: None,
        delivered: 1,
    }
}

fn simulated(cancel_fails: bool) -> PaymentParticipant {
    let rules = SimulatedRules {
        cancel_fails,
        ..SimulatedRules::default()
    };
    PaymentParticipant {
        gateway: Gateway::Simulated(SimulatedGateway { rules }),
    }
}

/// Hands `message` to `handler` under `msg_id`, which must handle it.
async fn handled(handler: &impl Handler, message: SagaMessage, msg_id: &str) {
    let result = handler.handle(delivery(message, msg_id)).await;
    assert!(result.is_ok(), "{msg_id}: {result:?}");
}

/// Where the order's payment stands, read durably as a reader of the order sees it: a settled or
/// old payment is no longer in memory, and `read_key` brings it back from the log.
async fn status(live: &Live<Payment>, order_id: Uuid) -> Option<PaymentStatus> {
    live.read_key(&order_id.to_string(), |s| s.status(order_id))
        .await
        .expect("a durable read")
}

/// The one `payment.cancelled` of an order, published under its own id or a re-publish's.
fn cancelled(order_id: Uuid, republished_for: Option<&str>) -> [(String, String); 1] {
    let id = contract::message_id(order_id, "payment.cancelled");
    let id = match republished_for {
        Some(cause) => format!("{id}~{cause}"),
        None => id,
    };
    [("payment.cancelled".to_owned(), id)]
}

/// A PG nobody listens on: every call fails to connect.
fn unreachable_pg() -> PaymentParticipant {
    let port = bus::testing::free_port();
    PaymentParticipant {
        gateway: Gateway::Http(
            HttpGateway::new(format!("http://127.0.0.1:{port}"), PgTimeouts::default())
                .expect("a client"),
        ),
    }
}

/// Takes everything queued for publishing (as the relay would after the server's ack).
fn drain(store: &EventStore) -> Vec<OutboxMessage> {
    let batch = store.outbox_batch(0, u64::MAX, 10_000).expect("outbox");
    let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
    store.outbox_remove(&seqs).expect("outbox removal");
    batch.into_iter().map(|(_, m)| m).collect()
}

fn subjects_and_ids(messages: &[OutboxMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| (m.subject.clone(), m.msg_id.clone()))
        .collect()
}

fn open(dir: &tempfile::TempDir) -> (EventStore, Live<Payment>) {
    let store = EventStore::open(StoreConfig::new(dir.path())).expect("the store opens");
    let live = Live::<Payment>::open(store.clone()).expect("the state rebuilds");
    (store, live)
}

#[tokio::test]
async fn a_charge_request_without_an_answer_is_cancelled_when_the_order_fails() {
    // Given: payment recorded the attempt but the PG did not answer
    let dir = tempfile::tempdir().expect("a temp dir");
    let (store, live) = open(&dir);
    let order_id = Uuid::new_v4();
    let no_answer = ParticipantHandler::new(live.clone(), unreachable_pg());
    let result = no_answer
        .handle(delivery(placed(order_id), "placed-1"))
        .await;
    assert!(
        matches!(result, Err(HandleError::Transient(_))),
        "{result:?}"
    );
    assert_eq!(
        status(&live, order_id).await,
        Some(PaymentStatus::Requested)
    );
    assert!(drain(&store).is_empty(), "nothing published for a request");

    // When: the order fails
    let handler = ParticipantHandler::new(live.clone(), simulated(false));
    handled(&handler, failed(order_id), "failed-1").await;

    // Then: the PG was asked to cancel and payment.cancelled is published
    assert_eq!(
        status(&live, order_id).await,
        Some(PaymentStatus::Cancelled)
    );
    assert_eq!(subjects_and_ids(&drain(&store)), cancelled(order_id, None));

    // When: the redelivered order.placed arrives late
    handled(&handler, placed(order_id), "placed-1").await;

    // Then: it is ignored, nothing is published, the state is unchanged
    assert_eq!(
        status(&live, order_id).await,
        Some(PaymentStatus::Cancelled)
    );
    assert!(
        drain(&store).is_empty(),
        "a late placement publishes nothing"
    );
    let rebuilt = Live::<Payment>::open(store.clone()).expect("the state rebuilds");
    let state = rebuilt.read(|s| s.clone()).await.expect("a durable read");
    assert!(state == live.read(|s| s.clone()).await.expect("a durable read"));
    // Settled: only the log keeps the payment, and a read of the order brings it back.
    assert_eq!(state.status(order_id), None);
    let status = rebuilt
        .read_key(&order_id.to_string(), |s| s.status(order_id))
        .await
        .expect("a durable read");
    assert_eq!(status, Some(PaymentStatus::Cancelled));
}

#[tokio::test]
async fn a_re_drive_after_a_retried_cancellation_re_publishes_the_recorded_cancellation() {
    // Given: an approved order whose cancellation failed, then succeeded on an operator's retry
    let dir = tempfile::tempdir().expect("a temp dir");
    let (store, live) = open(&dir);
    let order_id = Uuid::new_v4();
    let failing = ParticipantHandler::new(live.clone(), simulated(true));
    handled(&failing, placed(order_id), "placed-1").await;
    handled(&failing, failed(order_id), "failed-1").await;
    let first: Vec<String> = drain(&store).into_iter().map(|m| m.subject).collect();
    assert!(
        first.contains(&"payment.cancel_failed".to_owned()),
        "{first:?}"
    );
    let working = ParticipantHandler::new(live.clone(), simulated(false));
    handled(&working, failed(order_id), "operator-retry-1").await;
    let retried = drain(&store);
    assert_eq!(
        subjects_and_ids(&retried),
        cancelled(order_id, Some("operator-retry-1"))
    );

    // When: order.failed is re-driven (the broker lost that payment.cancelled)
    handled(&working, failed(order_id), "redrive-2").await;

    // Then: the recorded cancellation is published again under an id of the re-drive
    let republished = drain(&store);
    assert_eq!(
        subjects_and_ids(&republished),
        cancelled(order_id, Some("redrive-2"))
    );
    let (_, message) = codec::decode(&republished[0].payload).expect("decodes");
    assert_eq!(
        message,
        SagaMessage::Participant(
            payment::domain::outcome(&payment::domain::PaymentEvent::Cancelled { order_id })
                .expect("publishes")
        )
    );
    // And a redelivery of that re-drive is answered the same way, not decided again.
    handled(&working, failed(order_id), "redrive-2").await;
    let again: Vec<String> = drain(&store).into_iter().map(|m| m.subject).collect();
    assert_eq!(again, ["payment.cancelled"]);
    assert_eq!(
        status(&live, order_id).await,
        Some(PaymentStatus::Cancelled)
    );
}
