//! The choreographed saga end to end: real nats-server, five real services.

use std::time::Duration;

use bus::outbox::publish_now;
use bus::testing::eventually;
use contract::message::first_publish;
use contract::{OrderFailed, OrderLine, OrderPlaced, SagaMessage};
use e2e::{order_body, Options, System};
use serde_json::json;

async fn seeded() -> System {
    System::start_seeded(Options::declining_above(100_000)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_every_participant_completes_and_reaches_the_data_platform_once() {
    // Given
    let system = seeded().await;
    // When
    let id = system.complete_alice_order().await;
    // Then
    let payment = system.payment_status(&id).await;
    assert_eq!(payment.as_deref(), Some("APPROVED"));
    system.delivered(&id).await;
    assert_eq!(system.dataplatform_lines(&id), 1, "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_fails_the_order_and_every_other_participant_compensates() {
    // Given
    let system = seeded().await;
    system.issue_coupon("USED1", Some("alice")).await;
    let used_order = order_body("alice", &[("apple", 1, 100)], Some("USED1"), 0, 100);
    let used = system.settle(used_order, "COMPLETED").await;
    let stock_before = system.available("apple").await;
    let points_before = system.balance("alice").await;

    let cases = [
        (
            "payment declined",
            order_body("alice", &[("apple", 1, 100)], Some("C1"), 50, 200_000),
        ),
        (
            "stock insufficient",
            order_body("alice", &[("apple", 50, 100)], Some("C1"), 50, 5_000),
        ),
        (
            "coupon rejected",
            order_body("alice", &[("apple", 1, 100)], Some("USED1"), 50, 100),
        ),
        (
            "coupon rejected",
            order_body("alice", &[("apple", 1, 100)], Some("NOPE"), 50, 100),
        ),
        (
            "point rejected",
            order_body("alice", &[("apple", 1, 100)], Some("C1"), 9_999, 100),
        ),
    ];
    for (expected_reason, body) in cases {
        // When
        let id = system.place_id(body).await;
        let order = system.settled(&id).await;
        // Then
        assert_eq!(order["status"], "FAILED", "{expected_reason}: {order}");
        let reason = order["failureReason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(expected_reason),
            "{reason} should start with {expected_reason}"
        );
        assert_eq!(
            system.available("apple").await,
            stock_before,
            "{expected_reason}: stock restored"
        );
        assert_eq!(
            system.balance("alice").await,
            points_before,
            "{expected_reason}: points refunded"
        );
        assert_eq!(
            system.coupon("C1").await["status"],
            "AVAILABLE",
            "{expected_reason}: coupon released"
        );
        let payment = system.payment_status(&id).await;
        assert!(
            matches!(payment.as_deref(), Some("CANCELLED" | "DECLINED")),
            "{expected_reason}: payment {payment:?}"
        );
        for participant in ["payment", "stock", "coupon", "point"] {
            assert_eq!(
                order["outcomes"][participant], "COMPENSATED",
                "{expected_reason}: {order}"
            );
        }
    }
    assert_eq!(
        system.coupon("USED1").await["usedBy"].as_str(),
        Some(used.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_coupon_or_points_leaves_those_services_out() {
    // Given
    let system = seeded().await;
    // When
    let id = system
        .settle(
            order_body("bob", &[("apple", 1, 500)], None, 0, 500),
            "COMPLETED",
        )
        .await;
    // Then
    let order = system.order(&id).await;
    assert_eq!(order["required"], json!(["payment", "stock"]));
    assert!(system.log_types("coupon", &id).await.is_empty());
    assert!(system.log_types("point", &id).await.is_empty());
    assert_eq!(system.log_types("stock", &id).await, vec!["Reserved"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_down_during_placement_fails_the_order_at_the_deadline_and_settles_when_back()
{
    // Given
    let mut system = System::start(Options {
        saga_deadline: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    system.restock("apple", 10).await;
    system.credit("alice", 100).await;
    system.stop_service("stock").await;
    // When
    let id = system
        .place_id(order_body("alice", &[("apple", 3, 100)], None, 40, 300))
        .await;
    let deadline = "the deadline to fail the order";
    let order = eventually(Duration::from_secs(30), deadline, || async {
        let order = system.order(&id).await;
        (order["status"] == "COMPENSATING").then_some(order)
    })
    .await;
    assert!(
        order["failureReason"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline"),
        "{order}"
    );
    system.start_service("stock").await;
    let order = system.settled(&id).await;
    // Then
    assert_eq!(order["status"], "FAILED", "{order}");
    assert_eq!(system.available("apple").await, 10);
    assert_eq!(system.balance("alice").await, 100);
    let payment = system.payment_status(&id).await;
    assert_eq!(payment.as_deref(), Some("CANCELLED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_failed_before_order_placed_leaves_a_tombstone_and_the_late_placement_is_ignored() {
    // Given
    let system = seeded().await;
    let js = system.jetstream().await;
    let order_id = uuid::Uuid::new_v4();
    let placed = OrderPlaced {
        order_id,
        user_id: "alice".into(),
        items: vec![OrderLine {
            sku: "apple".into(),
            qty: 2,
            price: 100,
        }],
        coupon_id: None,
        points: 0,
        amount: 200,
        placed_at_ms: 0,
        deadline_ms: 0,
    };
    let failed = OrderFailed {
        order_id,
        reason: "injected".into(),
        required: placed.required_participants(),
    };
    let trace = contract::new_trace_id();
    let tp = contract::traceparent(&trace);
    // When
    let message = first_publish(&SagaMessage::Failed(failed), &trace, &tp, 1).expect("encodes");
    publish_now(&js, &message).await.expect("published");
    let id = order_id.to_string();
    eventually(Duration::from_secs(30), "the stock tombstone", || async {
        (system.log_types("stock", &id).await == ["Tombstoned"]).then_some(())
    })
    .await;
    let message = first_publish(&SagaMessage::Placed(placed), &trace, &tp, 2).expect("encodes");
    publish_now(&js, &message).await.expect("published");
    // Then
    for service in ["stock", "payment"] {
        let what = format!("{service} to ignore the late placement");
        eventually(Duration::from_secs(30), &what, || async {
            (system.log_types(service, &id).await == ["Tombstoned", "PlacementIgnored"])
                .then_some(())
        })
        .await;
    }
    let payment = system.payment_status(&id).await;
    assert_eq!(payment.as_deref(), Some("TOMBSTONED"));
    assert_eq!(system.available("apple").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_and_republished_events_change_nothing() {
    // Given
    let system = seeded().await;
    let bought = order_body("alice", &[("apple", 2, 100)], Some("C1"), 50, 200);
    let id = system.settle(bought, "COMPLETED").await;
    let before = system.order(&id).await;
    // When: the same order.placed is published again under fresh message ids, twice
    let placed: OrderPlaced = OrderPlaced {
        order_id: id.parse().expect("uuid"),
        user_id: "alice".into(),
        items: vec![OrderLine {
            sku: "apple".into(),
            qty: 2,
            price: 100,
        }],
        coupon_id: Some("C1".into()),
        points: 50,
        amount: 200,
        placed_at_ms: before["placedAtMs"].as_u64().unwrap_or(0),
        deadline_ms: before["deadlineMs"].as_u64().unwrap_or(0),
    };
    let js = system.jetstream().await;
    let trace = before["traceId"].as_str().unwrap_or_default().to_owned();
    for copy in 0..2 {
        let mut message = first_publish(
            &SagaMessage::Placed(placed.clone()),
            &trace,
            &contract::traceparent(&trace),
            1,
        )
        .expect("encodes");
        message.msg_id = format!("{}~test-copy-{copy}", message.msg_id);
        publish_now(&js, &message).await.expect("published");
    }
    // Then: every participant notes the duplicates and re-publishes its recorded outcome
    // ... and the order ignores the 4 participants' re-published outcomes, twice each
    let ignoring = [
        ("payment", 2),
        ("stock", 2),
        ("coupon", 2),
        ("point", 2),
        ("order", 8),
    ];
    for (service, at_least) in ignoring {
        let what = format!("{service} to note {at_least} duplicates");
        eventually(Duration::from_secs(30), &what, || async {
            let notes = system
                .log_types(service, &id)
                .await
                .iter()
                .filter(|t| *t == "note.duplicate_ignored")
                .count();
            (notes >= at_least).then_some(())
        })
        .await;
    }
    let after = system.order(&id).await;
    assert_eq!(after["status"], "COMPLETED");
    assert_eq!(after["outcomes"], before["outcomes"]);
    assert_eq!(system.available("apple").await, 8);
    assert_eq!(system.balance("alice").await, 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_order_and_wait_returns_the_terminal_status() {
    // Given
    let system = seeded().await;
    let body = order_body("alice", &[("apple", 1, 100)], None, 0, 100);
    let post = |key: &'static str| {
        let request = system
            .http
            .post(format!("{}/orders?wait=20s", system.url("order")))
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let response = request.send().await.expect("reachable");
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    // When
    let (first_status, first) = post("key-1").await;
    let (second_status, second) = post("key-1").await;
    let (_, other) = post("key-2").await;
    // Then
    assert_eq!(first_status, 200, "{first}");
    assert_eq!(first["status"], "COMPLETED");
    assert_eq!(second_status, 200);
    assert_eq!(second["orderId"], first["orderId"]);
    assert_ne!(other["orderId"], first["orderId"]);
    assert_eq!(system.available("apple").await, 8, "two orders, not three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_by_order_id_and_by_trace_id_lists_every_step_in_order() {
    // Given
    let system = seeded().await;
    let too_many = order_body("alice", &[("apple", 50, 100)], Some("C1"), 10, 5_000);
    let id = system.settle(too_many, "FAILED").await;
    // When
    let (status, timeline) = system.get("order", &format!("/orders/{id}/timeline")).await;
    let trace = timeline["traceId"].as_str().expect("trace id").to_owned();
    let (_, by_trace) = system.get("order", &format!("/traces/{trace}")).await;
    // Then
    assert_eq!(status, 200);
    assert_eq!(by_trace["steps"], timeline["steps"]);
    let steps: Vec<(String, String)> = timeline["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["domain"].as_str().unwrap_or_default().to_owned(),
                s["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let position = |domain: &str, kind: &str| {
        steps
            .iter()
            .position(|(d, t)| d == domain && t == kind)
            .unwrap_or_else(|| panic!("{domain} {kind} missing from {steps:?}"))
    };
    assert_eq!(position("order", "Placed"), 0);
    assert!(position("stock", "Insufficient") < position("order", "Failed"));
    assert!(position("order", "Failed") < position("payment", "Cancelled"));
    assert!(position("order", "Failed") < position("coupon", "Released"));
    assert!(position("order", "Failed") < position("point", "Refunded"));
    assert!(position("point", "Refunded") < position("order", "Compensated"));
    assert_eq!(
        steps.last().map(|(d, t)| (d.as_str(), t.as_str())),
        Some(("order", "Compensated"))
    );
    for step in timeline["steps"].as_array().expect("steps") {
        assert_eq!(step["traceId"], trace.as_str(), "{step}");
        assert!(step["recordedAtMs"].as_u64().is_some());
        assert!(step["causation"].as_str().is_some());
    }
    let placed = &timeline["steps"][0];
    assert_eq!(placed["messageIds"][0], format!("{id}.order.placed"));
    assert!(timeline["unreachable"].as_array().expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_verify_and_export_round_trip_on_a_service_data_dir() {
    // Given
    let mut system = seeded().await;
    let id = system
        .place_id(order_body("alice", &[("apple", 3, 100)], None, 0, 300))
        .await;
    assert_eq!(system.settled(&id).await["status"], "COMPLETED");
    system.stop_all().await;
    let dir = system.data_dir("stock");
    let out = system.root.path().join("stock.jsonl");
    // When
    let render = |s: &stock::domain::StockState| json!({ "available": s.available });
    let verify = servicekit::offline::run_offline::<stock::domain::Stock>(
        "stock",
        &dir,
        &servicekit::offline::Offline::Verify,
        render,
    );
    let export = servicekit::offline::run_offline::<stock::domain::Stock>(
        "stock",
        &dir,
        &servicekit::offline::Offline::Export {
            out: Some(out.clone()),
        },
        render,
    );
    let (state, folded) = eventlog::live::rebuild::<stock::domain::Stock>(
        &eventlog::EventStore::open(eventlog::StoreConfig::new(&dir)).expect("opens"),
        eventlog::ReplayBound {
            upto_seq: Some(1),
            upto_time_ms: None,
        },
    )
    .expect("replays");
    // Then
    assert_eq!(verify, Ok(0));
    assert_eq!(export, Ok(0));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .expect("export written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "restock and reservation: {lines:?}");
    assert_eq!(lines[0]["type"], "Restocked");
    assert_eq!(lines[1]["type"], "Reserved");
    assert_eq!(lines[1]["orderId"], id.as_str());
    assert_eq!(folded, 1, "replay up to seq 1 folds only the restock");
    assert_eq!(state.available("apple"), Some(10));
}
