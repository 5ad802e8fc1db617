//! AUDIT end to end: a real run of the five services, stopped, then audited offline.

use audit::checks::{CHECK_DATAPLATFORM, CHECK_STOCK};
use audit::{AuditInput, AuditReport};
use contract::{OrderLine, OrderPlaced};
use e2e::{order_body, System};
use eventlog::live::{Execution, Live};
use eventlog::{EventStore, StoreConfig};
use stock::domain::{Stock, StockCommand};

async fn seeded() -> System {
    let system = System::start_default().await;
    system.restock("apple", 10).await;
    system.restock("pear", 5).await;
    system.issue_coupon("C1", Some("alice")).await;
    system.issue_coupon("C2", None).await;
    system.credit("alice", 500).await;
    system.credit("bob", 60).await;
    system
}

/// A seeded system that completed one order and delivered it to the data platform, stopped so
/// it can be audited; and the order's id.
async fn stopped_after_one_order(body: serde_json::Value) -> (System, String) {
    let mut system = seeded().await;
    let id = system.settle(body, "COMPLETED").await;
    system.delivered(&id).await;
    system.stop_all().await;
    (system, id)
}

/// Asserts that the report has one violation, of `check`, and that its detail names `id`.
fn assert_only_violation(report: &AuditReport, check: &str, id: &str) {
    let found: Vec<(&str, bool)> = report
        .violations
        .iter()
        .map(|v| (v.check, v.detail.contains(id)))
        .collect();
    assert_eq!(found, [(check, true)], "{}", report.render());
}

fn audit_of(system: &System) -> AuditReport {
    let input = AuditInput {
        data_root: system.root.path().to_path_buf(),
    };
    audit::audit(&input, eventlog::clock::now_ms()).expect("the audit runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_completed_and_failed_orders_audits_clean_with_matching_counts() {
    // Given
    let mut system = seeded().await;
    let mut completed = Vec::new();
    for body in [
        order_body("alice", &[("apple", 2, 400)], Some("C1"), 100, 800),
        order_body("bob", &[("pear", 1, 100), ("apple", 1, 100)], None, 0, 200),
        order_body(
            "bob",
            &[("apple", 1, 100), ("apple", 2, 100)],
            None,
            50,
            300,
        ),
    ] {
        completed.push(system.settle(body, "COMPLETED").await);
    }
    let failures = [
        // payment declined (above the simulated PG's limit), after stock, coupon and points did their part
        order_body("alice", &[("apple", 1, 100)], Some("C2"), 50, 2_000_000),
        // stock insufficient
        order_body("alice", &[("pear", 100, 100)], None, 10, 100),
        // coupon already used by the first order
        order_body("alice", &[("apple", 1, 100)], Some("C1"), 10, 100),
        // coupon unknown
        order_body("alice", &[("apple", 1, 100)], Some("NOPE"), 0, 100),
        // points insufficient
        order_body("bob", &[("apple", 1, 100)], Some("C2"), 9_999, 100),
    ];
    for body in failures {
        system.settle(body, "FAILED").await;
    }
    for id in &completed {
        system.delivered(id).await;
    }
    system.stop_all().await;
    // When
    let report = audit_of(&system);
    // Then
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!(report.orders.total, 8);
    assert_eq!(report.orders.completed, 3);
    assert_eq!(report.orders.failed, 5);
    assert_eq!(
        report.orders.needs_attention + report.orders.pending + report.orders.compensating,
        0
    );
    let domains: Vec<&str> = report.logs.iter().map(|l| l.domain).collect();
    assert_eq!(domains, ["order", "payment", "stock", "coupon", "point"]);
    let empty: Vec<&str> = report
        .logs
        .iter()
        .filter(|l| l.records == 0)
        .map(|l| l.domain)
        .collect();
    assert!(empty.is_empty(), "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_stock_log_is_reported_as_not_ok() {
    // Given
    let (system, _) =
        stopped_after_one_order(order_body("alice", &[("apple", 1, 100)], None, 0, 100)).await;
    {
        let stock =
            EventStore::open(StoreConfig::new(system.data_dir("stock"))).expect("stock log opens");
        // The first record (a restock); the last one must stay intact for the store to open.
        stock
            .corrupt_record_for_test(1, 12)
            .expect("a record to corrupt");
    }
    // When
    let report = audit_of(&system);
    // Then
    assert!(!report.is_clean(), "{}", report.render());
    let bad: Vec<&str> = report.bad_logs().map(|l| l.domain).collect();
    assert_eq!(bad, ["stock"], "{}", report.render());
    assert_eq!(report.orders.completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_data_platform_received_twice_is_a_violation() {
    // Given
    let (system, id) = stopped_after_one_order(order_body(
        "alice",
        &[("apple", 1, 100)],
        Some("C1"),
        10,
        100,
    ))
    .await;
    let before = audit_of(&system);
    assert!(before.is_clean(), "{}", before.render());
    let file = system.dataplatform_file();
    let text = std::fs::read_to_string(&file).expect("the data platform file");
    std::fs::write(&file, format!("{text}{text}")).expect("the file is writable");
    // When
    let report = audit_of(&system);
    // Then
    assert!(!report.is_clean(), "{}", report.render());
    assert!(report.logs.iter().all(|l| l.ok), "{}", report.render());
    assert_only_violation(&report, CHECK_DATAPLATFORM, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_order_missing_from_the_data_platform_is_a_violation() {
    // Given
    let (system, id) =
        stopped_after_one_order(order_body("bob", &[("pear", 2, 100)], None, 0, 200)).await;
    std::fs::write(system.dataplatform_file(), "").expect("the file is writable");
    // When
    let report = audit_of(&system);
    // Then
    assert_only_violation(&report, CHECK_DATAPLATFORM, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_for_an_order_the_order_log_does_not_know_is_a_stock_violation() {
    // Given
    let (system, _) =
        stopped_after_one_order(order_body("alice", &[("apple", 3, 100)], None, 0, 300)).await;
    let stranger = uuid::Uuid::now_v7();
    {
        let store =
            EventStore::open(StoreConfig::new(system.data_dir("stock"))).expect("stock log opens");
        let stock = Live::<Stock>::open(store).expect("stock state rebuilds");
        // A restock written straight to the log is consistent: the audit counts it.
        let restock = StockCommand::Restock {
            sku: "apple".into(),
            qty: 4,
        };
        let executed = stock
            .execute(Execution::default(), restock, |_, _| Ok(Vec::new()))
            .await;
        assert!(matches!(executed, Ok(Ok(_))), "{executed:?}");
        let placed = OrderPlaced {
            order_id: stranger,
            user_id: "mallory".into(),
            items: vec![OrderLine {
                sku: "apple".into(),
                qty: 2,
                price: 1,
            }],
            coupon_id: None,
            points: 0,
            amount: 2,
            placed_at_ms: 1,
            deadline_ms: 2,
        };
        let executed = stock
            .execute(
                Execution::default(),
                StockCommand::HandlePlaced { placed },
                |_, _| Ok(Vec::new()),
            )
            .await;
        assert!(matches!(executed, Ok(Ok(_))), "{executed:?}");
    }
    // When
    let report = audit_of(&system);
    // Then
    assert!(report.logs.iter().all(|l| l.ok), "{}", report.render());
    assert_only_violation(&report, CHECK_STOCK, &stranger.to_string());
}
