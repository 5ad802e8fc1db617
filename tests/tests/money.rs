//! Money never leaks: with payment pointed at a real HTTP PG (played by the test), every order
//! ends with exactly one live charge of its amount at the PG if it is COMPLETED, and none if it
//! is FAILED, whether the PG answers late, hangs, or payment is killed in the middle of a call.
//!
//! The services run as processes (`cargo build --bins` first) so payment can be SIGKILLed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus::testing::eventually;
use e2e::pg::{Behaviour, FakePg};
use e2e::procs::{Api, ProcOptions, ProcSystem};
use e2e::{order_body, AdminWrite, Options, System};
use futures::StreamExt;
use serde_json::Value;

/// One test at a time: each runs five services and a broker on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Payment's `PG_TIMEOUT` in these tests.
const PG_TIMEOUT: Duration = Duration::from_millis(800);
/// The order service's saga deadline in these tests.
const SAGA_DEADLINE: Duration = Duration::from_secs(3);
/// How long an order may take to settle (a killed payment's unacked messages come back only
/// after the consumer's ack wait).
const SETTLE: Duration = Duration::from_secs(150);
/// How long a placement may be retried while the order service is busy.
const PLACE_WITHIN: Duration = Duration::from_secs(30);

fn options(pg: &FakePg) -> ProcOptions {
    ProcOptions {
        saga_deadline: SAGA_DEADLINE,
        pg_url: Some(pg.url()),
        pg_timeout: Some(PG_TIMEOUT),
        ..ProcOptions::default()
    }
}

/// The system started with 100 apples in stock, and its HTTP handle.
async fn with_apples(options: ProcOptions) -> (ProcSystem, Api) {
    let system = ProcSystem::start(options).await;
    let api = system.api();
    api.seed(AdminWrite::restock("apple", 100)).await;
    (system, api)
}

/// Places an order (retrying with one Idempotency-Key until it is accepted); returns its id.
async fn place(api: &Api, body: &Value, key: &str) -> String {
    eventually(
        PLACE_WITHIN,
        &format!("order {key} to be accepted"),
        || async {
            match api.place(body, key).await {
                Ok((202, reply)) => reply["orderId"].as_str().map(str::to_owned),
                _ => None,
            }
        },
    )
    .await
}

/// Waits until an order is COMPLETED, FAILED or NEEDS_ATTENTION; returns it.
async fn settled(api: &Api, order_id: &str) -> Value {
    eventually(SETTLE, &format!("order {order_id} to settle"), || async {
        api.order(order_id).await.filter(|order| {
            matches!(
                order["status"].as_str(),
                Some("COMPLETED" | "FAILED" | "NEEDS_ATTENTION")
            )
        })
    })
    .await
}

/// Waits until an order's status is one of `statuses`.
async fn status_becomes(api: &Api, order_id: &str, statuses: &[&str]) -> Value {
    eventually(
        SETTLE,
        &format!("order {order_id} to be {statuses:?}"),
        || async {
            api.order(order_id)
                .await
                .filter(|order| statuses.contains(&order["status"].as_str().unwrap_or_default()))
        },
    )
    .await
}

/// Waits until payment has handled every message on ORDER (the redeliveries a kill or a timeout
/// left behind included), so nothing can still reach the PG after the ledger is checked.
async fn payment_drained(system: &ProcSystem) {
    let client = async_nats::connect(system.nats.url())
        .await
        .expect("nats reachable");
    let js = async_nats::jetstream::new(client);
    for durable in ["payment", "payment-failed"] {
        eventually(
            SETTLE,
            &format!("{durable} to handle every message"),
            || async {
                let stream = js.get_stream("ORDER").await.ok()?;
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(durable).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            },
        )
        .await;
    }
}

/// The money invariant for every order: a live charge of its amount iff COMPLETED, none iff
/// FAILED, never a second charge; and no live charge at all for an order that is not COMPLETED.
fn assert_ledger(pg: &FakePg, orders: &BTreeMap<String, Value>) {
    let mut broken = Vec::new();
    for (id, order) in orders {
        let amount = order["amount"].as_u64().expect("an amount");
        let live = pg.live_charge(id);
        let made = pg.charges_made(id);
        let ok = match order["status"].as_str() {
            Some("COMPLETED") => live == Some(amount) && made == 1,
            Some("FAILED") => live.is_none() && made <= 1,
            _ => false,
        };
        if !ok {
            broken.push(format!(
                "order {id} is {} for {amount}: live charge {live:?}, charges made {made}, \
                 approvals asked {}, cancels asked {}",
                order["status"],
                pg.approval_calls(id),
                pg.cancel_calls(id)
            ));
        }
    }
    for id in pg.live_orders() {
        let completed = orders
            .get(&id)
            .is_some_and(|order| order["status"] == "COMPLETED");
        if !completed {
            broken.push(format!(
                "the PG holds a live charge for order {id}, which is not COMPLETED"
            ));
        }
    }
    assert!(pg.bad_requests().is_empty(), "{:?}", pg.bad_requests());
    assert!(broken.is_empty(), "money leaked:\n{}", broken.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_answered_after_payments_timeout_is_cancelled_when_the_order_fails() {
    let _serial = SERIAL.lock().await;
    // Given: a PG that charges sam's orders but answers only after payment gave up
    let pg = FakePg::start().await;
    pg.set_behaviour("sam", Behaviour::AnswerAfter(PG_TIMEOUT * 4));
    let (system, api) = with_apples(options(&pg)).await;

    // When: sam orders, and so does alice (whose charge is answered at once)
    let sams = order_body("sam", &[("apple", 1, 700)], None, 0, 700);
    let slow = place(&api, &sams, "a-sam").await;
    let alices = order_body("alice", &[("apple", 2, 300)], None, 0, 600);
    let prompt = place(&api, &alices, "a-alice").await;

    // Then: sam's order fails on its deadline and the PG's charge is cancelled
    let slow_order = settled(&api, &slow).await;
    assert_eq!(slow_order["status"], "FAILED", "{slow_order}");
    assert_eq!(pg.charges_made(&slow), 1, "the PG did charge sam");
    assert!(
        pg.cancel_calls(&slow) >= 1,
        "payment asked the PG to cancel"
    );
    let payment = api.get("payment", &format!("/payments/{slow}")).await;
    assert!(
        matches!(&payment, Ok((200, p)) if p["status"] == "CANCELLED"),
        "{payment:?}"
    );
    let types = api.log_types("payment", &slow).await;
    let events: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| !t.starts_with("note."))
        .take(2)
        .collect();
    assert_eq!(events, ["ApprovalRequested", "Cancelled"], "{types:?}");
    let prompt_order = settled(&api, &prompt).await;
    assert_eq!(prompt_order["status"], "COMPLETED", "{prompt_order}");
    let orders = BTreeMap::from([(slow, slow_order), (prompt, prompt_order)]);
    assert_ledger(&pg, &orders);
    // And once payment has handled the retried order.placed too, still nothing was charged again
    payment_drained(&system).await;
    assert_ledger(&pg, &orders);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_killed_during_its_pg_call_cancels_the_charge_after_the_deadline_and_never_charges_again(
) {
    let _serial = SERIAL.lock().await;
    // Given: a PG that charges hana's orders and then never answers
    let pg = FakePg::start().await;
    pg.set_behaviour("hana", Behaviour::Hang);
    let (mut system, api) = with_apples(ProcOptions {
        // Payment must still be waiting for the PG when it is killed.
        pg_timeout: Some(Duration::from_secs(60)),
        ..options(&pg)
    })
    .await;
    let hanas = order_body("hana", &[("apple", 1, 900)], None, 0, 900);
    let id = place(&api, &hanas, "b-hana").await;
    eventually(SETTLE, "payment's PG call to reach the PG", || async {
        (pg.charges_made(&id) == 1).then_some(())
    })
    .await;

    // When: payment is SIGKILLed in the middle of that call, and comes back after the deadline
    assert!(system.kill("payment"), "payment was running");
    let compensating = status_becomes(&api, &id, &["COMPENSATING", "NEEDS_ATTENTION"]).await;
    assert_eq!(pg.live_charge(&id), Some(900), "{compensating}");
    system.start_service("payment").await;

    // Then: the order fails and the charge is cancelled at the PG
    let order = status_becomes(&api, &id, &["FAILED"]).await;
    assert_eq!(pg.live_charge(&id), None);
    // And the redelivered order.placed is ignored without asking the PG again
    let types = eventually(
        SETTLE,
        "payment to see the redelivered order.placed",
        || async {
            let types = api.log_types("payment", &id).await;
            types
                .iter()
                .any(|t| t == "PlacementIgnored")
                .then_some(types)
        },
    )
    .await;
    // (Timeline notes, e.g. re-driven order.failed answered as duplicates, are left out.)
    let events: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| !t.starts_with("note."))
        .collect();
    assert_eq!(
        events,
        ["ApprovalRequested", "Cancelled", "PlacementIgnored"],
        "{types:?}"
    );
    assert_eq!(
        pg.approval_calls(&id),
        1,
        "the PG was asked to charge again"
    );
    assert_eq!(pg.charges_made(&id), 1);
    payment_drained(&system).await;
    assert_ledger(&pg, &BTreeMap::from([(id, order)]));
}

/// One order of the mixed load.
struct Plan {
    key: String,
    body: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_jitter_point_rejections_and_payment_kills_every_order_settles_with_its_money_right()
{
    let _serial = SERIAL.lock().await;
    // Given: a PG whose latency jitters, about one call in nine past payment's timeout; users
    // with points, and one in ten without
    const ORDERS: usize = 90;
    const USERS: usize = 10;
    const POINTS: u64 = 10;
    const KILLS: usize = 3;
    // Placements are spread over the load so the kills land while payment is busy.
    const PLACE_EVERY: Duration = Duration::from_millis(80);
    let pg = FakePg::start().await;
    pg.set_seed(7);
    pg.set_default_behaviour(Behaviour::Jitter(PG_TIMEOUT + PG_TIMEOUT / 8));
    let mut system = ProcSystem::start(ProcOptions {
        // Long enough for a retried PG call, far shorter than the ack wait a kill costs.
        saga_deadline: Duration::from_secs(8),
        ..options(&pg)
    })
    .await;
    let api = system.api();
    api.seed(AdminWrite::restock("apple", 10_000)).await;
    api.seed(AdminWrite::restock("pear", 10_000)).await;
    // user-0 has no points: its orders are rejected by point.
    for user in 1..USERS {
        api.seed(AdminWrite::credit(&format!("user-{user}"), 100_000))
            .await;
    }
    let plans: Vec<Plan> = (0..ORDERS)
        .map(|i| {
            let user = format!("user-{}", i % USERS);
            let sku = if i % 2 == 0 { "apple" } else { "pear" };
            let qty = 1 + (i as u64 % 3);
            let price = 100 + 10 * i as u64;
            Plan {
                key: format!("c-{i}"),
                body: order_body(&user, &[(sku, qty, price)], None, POINTS, qty * price),
            }
        })
        .collect();

    // When: the orders are placed while payment is SIGKILLed and restarted a few times
    let load = {
        let api = api.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            futures::stream::iter(plans.into_iter().enumerate())
                .map(|(i, plan)| {
                    let api = api.clone();
                    async move {
                        tokio::time::sleep_until(start + PLACE_EVERY * i as u32).await;
                        place(&api, &plan.body, &plan.key).await
                    }
                })
                .buffered(8)
                .collect::<Vec<String>>()
                .await
        })
    };
    let started = Instant::now();
    for kill in 0..KILLS {
        // Strike once the PG has been asked for a further share of the orders, i.e. mid-load.
        let target = ORDERS * (kill + 1) / (KILLS + 1);
        let deadline = Instant::now() + PLACE_WITHIN;
        while pg.orders_asked().len() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(system.kill("payment"), "payment was running (kill {kill})");
        system.start_service("payment").await;
    }
    let ids = match load.await {
        Ok(ids) => ids,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    println!(
        "money mix: {} orders placed with {KILLS} payment kills in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Then: every order settles COMPLETED or FAILED, and the PG's ledger matches
    let mut orders = BTreeMap::new();
    for id in &ids {
        let order = settled(&api, id).await;
        orders.insert(id.clone(), order);
    }
    let count = |status: &str| orders.values().filter(|o| o["status"] == status).count();
    let (completed, failed) = (count("COMPLETED"), count("FAILED"));
    let charged_then_cancelled = orders
        .keys()
        .filter(|id| pg.charge(id).is_some_and(|c| c.voided))
        .count();
    println!(
        "money mix: {completed} COMPLETED, {failed} FAILED ({charged_then_cancelled} charged, then cancelled)"
    );
    let unsettled: Vec<&Value> = orders
        .values()
        .filter(|o| !matches!(o["status"].as_str(), Some("COMPLETED" | "FAILED")))
        .collect();
    assert!(unsettled.is_empty(), "orders not settled: {unsettled:?}");
    assert_eq!(completed + failed, ORDERS);
    assert!(completed > 0, "some orders complete");
    let poor_failed = orders
        .values()
        .filter(|o| o["userId"] == "user-0")
        .all(|o| o["status"] == "FAILED");
    assert!(poor_failed, "a user without points cannot pay with points");
    assert_ledger(&pg, &orders);
    // And still once the order.placed messages a kill left unacknowledged came back
    payment_drained(&system).await;
    assert_ledger(&pg, &orders);
    // ... with no message given up on: an order.failed that came while payment was asking the
    // PG for the same order's charge waited for the answer, and then cancelled it
    assert_eq!(system.dead_letters().await.expect("the DLQ depth"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_drive_after_an_operators_successful_retry_re_publishes_the_recorded_cancellation() {
    let _serial = SERIAL.lock().await;
    // Given: the HTTP PG refuses cancellations, so payment's compensation fails for good
    let pg = FakePg::start().await;
    pg.set_cancels_fail(true);
    let system = System::start(Options {
        pg_timeouts: payment::gateway::PgTimeouts {
            connect: Duration::from_secs(2),
            request: PG_TIMEOUT,
        },
        pg_url: Some(pg.url()),
        ..Options::default()
    })
    .await;
    system.restock("apple", 1).await;
    let too_many = order_body("alice", &[("apple", 5, 100)], None, 0, 500);
    let id = system.settle(too_many, "NEEDS_ATTENTION").await;
    assert_eq!(pg.live_charge(&id), Some(500));

    // When: the PG is fixed and the operator retries the compensation
    pg.set_cancels_fail(false);
    let (status, body) = system.retry_compensation(&id).await;
    assert_eq!(status, 202, "{body}");
    let failed = system.order_becomes(&id, "FAILED").await;
    assert_eq!(pg.live_charge(&id), None);

    // And: order.failed is re-driven once more (as if payment.cancelled had been lost)
    let order_id: uuid::Uuid = id.parse().expect("a uuid");
    let redrive = contract::SagaMessage::Failed(contract::OrderFailed {
        order_id,
        reason: "re-drive".into(),
        required: vec![contract::Participant::Payment, contract::Participant::Stock],
    });
    let trace_id = failed["traceId"].as_str().unwrap_or("trace").to_owned();
    let redrive_id = format!("{id}.order.failed~test-redrive");
    let message = contract::message::outbox_message(
        &redrive,
        redrive_id.clone(),
        &trace_id,
        &contract::traceparent(&trace_id),
        eventlog::clock::now_ms(),
    )
    .expect("encodes");
    let js = system.jetstream().await;
    bus::outbox::publish_now(&js, &message)
        .await
        .expect("published");

    // Then: payment re-publishes its recorded payment.cancelled under an id of that re-drive
    let expected_id = format!("{id}.payment.cancelled~{redrive_id}");
    let stream = js.get_stream("PAYMENT").await.expect("PAYMENT stream");
    eventually(SETTLE, "payment.cancelled to be re-published", || async {
        let last = stream
            .get_last_raw_message_by_subject("payment.cancelled")
            .await
            .ok()?;
        let msg_id = last
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned());
        (msg_id.as_deref() == Some(expected_id.as_str())).then_some(())
    })
    .await;
    let types = system.log_types("payment", &id).await;
    assert!(
        types.iter().any(|t| t == "note.settled_republished"),
        "{types:?}"
    );
    let order = system.order(&id).await;
    assert_eq!(order["status"], "FAILED", "{order}");
    assert_ledger(&pg, &BTreeMap::from([(id, order)]));
}
