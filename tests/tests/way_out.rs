//! Every saga has a way out: a participant that stays away past the re-drives (with the broker
//! having lost its messages) leaves the order NEEDS_ATTENTION with one alert, and an operator's
//! retry settles it; a data platform outage parks the delivery once and a DLQ re-drive
//! delivers it exactly once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use bus::testing::eventually;
use contract::DATAPLATFORM_CONSUMER;
use e2e::{
    alert_webhook, order_body, serve, Options, Received, System, SETTLE, TEST_DATAPLATFORM_RETRY,
};
use order::handler::{DataPlatformSettings, SupervisorPolicy};
use serde_json::Value;

fn alerts_of(received: &Received, kind: &str, order_id: &str) -> Vec<Value> {
    received
        .lock()
        .expect("lock")
        .iter()
        .filter(|a| a["kind"] == kind && a["orderId"] == order_id)
        .cloned()
        .collect()
}

/// The order's entries in the DLQ of the data platform's consumer.
async fn dlq_entries_of(system: &System, order_id: &str) -> Vec<Value> {
    let mut entries = system.dlq_entries().await;
    entries.retain(|e| e["orderId"] == order_id && e["consumer"] == DATAPLATFORM_CONSUMER);
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_down_past_the_redrives_with_lost_messages_needs_attention_once_and_fails_after_an_operator_retry(
) {
    // Given a short deadline, a few quick re-drives, and an operator's webhook
    let (webhook, alerts) = alert_webhook().await;
    let mut system = System::start(Options {
        alert_webhook_url: Some(webhook),
        saga_deadline: Duration::from_secs(2),
        supervisor: SupervisorPolicy {
            redrive_max: 2,
            redrive_backoff_ms_min: 500,
            redrive_backoff_ms_max: 1_000,
            ..SupervisorPolicy::default()
        },
        ..Options::default()
    })
    .await;
    system.restock("apple", 10).await;
    system.credit("alice", 1_000).await;
    system.credit("carol", 1_000).await;
    // ... and the point service down
    system.stop_service("point").await;

    // When an order that needs points is placed
    let needs_points = order_body("alice", &[("apple", 1, 500)], None, 100, 500);
    let id = system.place_id(needs_points).await;

    // Then it fails at the deadline, is re-driven, and ends NEEDS_ATTENTION with a reason
    let order = system.settled(&id).await;
    assert_eq!(order["status"], "NEEDS_ATTENTION", "{order}");
    let reason = order["attentionReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no compensation from point after 2 re-drives"),
        "{order}"
    );
    assert_eq!(order["waitingFor"], serde_json::json!(["point"]), "{order}");
    assert_eq!(order["redrives"], 2, "{order}");
    // ... with one saga_stuck alert, raised with the event
    let raised = eventually(SETTLE, "the saga_stuck alert", || async {
        let raised = alerts_of(&alerts, "saga_stuck", &id);
        (!raised.is_empty()).then_some(raised)
    })
    .await;
    assert_eq!(raised[0]["waitingFor"], serde_json::json!(["point"]));
    let types = system.log_types("order", &id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "RedrivesExhausted").count(),
        1,
        "{types:?}"
    );

    // When the order service restarts, the broker loses every message, and point comes back
    system.stop_service("order").await;
    system.start_service("order").await;
    system.nats.wipe().await;
    system.start_service("point").await;
    // ... (an order through all participants completing proves the system recovered from the
    // wipe; probes placed while consumers were still re-subscribing may fail their deadline)
    eventually(
        SETTLE,
        "a probe order to complete after the wipe",
        || async {
            let probe = system
                .place_id(order_body("carol", &[("apple", 1, 500)], None, 10, 500))
                .await;
            (system.settled(&probe).await["status"] == "COMPLETED").then_some(())
        },
    )
    .await;
    // ... the stuck order is still waiting for the operator: nothing reached point
    let order = system.order(&id).await;
    assert_eq!(order["status"], "NEEDS_ATTENTION", "{order}");

    // When the operator retries the compensation
    let (status, body) = system.retry_compensation(&id).await;
    assert_eq!(status, 202, "{body}");

    // Then point answers and the order fails cleanly
    let order = system.order_becomes(&id, "FAILED").await;
    assert_eq!(order["outcomes"]["point"], "COMPENSATED", "{order}");
    assert_eq!(order["waitingFor"], serde_json::json!([]), "{order}");
    assert_eq!(order["attentionReason"], Value::Null, "{order}");
    // ... point never took the points (it saw only order.failed)
    assert_eq!(system.balance("alice").await, 1_000);
    // ... and the alert was raised once, through the restart and the wipe
    assert_eq!(alerts_of(&alerts, "saga_stuck", &id).len(), 1);
    let types = system.log_types("order", &id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "RedrivesExhausted").count(),
        1,
        "{types:?}"
    );
}

/// How the test's data platform answers.
const PLATFORM_DOWN: u8 = 0;
const PLATFORM_UP: u8 = 1;

/// A data platform played by the test: while down its first call hangs and the others get 503;
/// while up it answers 200 and keeps (Idempotency-Key, orderId) of what it accepted.
struct Platform {
    mode: AtomicU8,
    calls: AtomicU8,
    accepted: Mutex<Vec<(String, String)>>,
}

async fn data_platform(platform: Arc<Platform>) -> String {
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let platform = platform.clone();
                async move {
                    if platform.mode.load(Ordering::SeqCst) == PLATFORM_DOWN {
                        if platform.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            // Hung: never answers (the client's timeout must end the call).
                            std::future::pending::<()>().await;
                        }
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers
                        .get("Idempotency-Key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let order_id = body["orderId"].as_str().unwrap_or_default().to_owned();
                    platform
                        .accepted
                        .lock()
                        .expect("lock")
                        .push((key, order_id));
                    StatusCode::OK
                }
            },
        ),
    );
    serve(app, "/orders").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_platform_outage_parks_the_order_once_and_a_dlq_redrive_delivers_it_exactly_once() {
    // Given a data platform that is down (its first call hangs), short client timeouts, a retry
    // budget of seconds, and a supervisor that re-sends undelivered orders often
    let platform = Arc::new(Platform {
        mode: AtomicU8::new(PLATFORM_DOWN),
        calls: AtomicU8::new(0),
        accepted: Mutex::default(),
    });
    let url = data_platform(platform.clone()).await;
    let (webhook, alerts) = alert_webhook().await;
    let system = System::start(Options {
        alert_webhook_url: Some(webhook),
        supervisor: SupervisorPolicy {
            redrive_backoff_ms_min: 200,
            redrive_backoff_ms_max: 400,
            completed_resend_after_ms: 300,
            ..SupervisorPolicy::default()
        },
        dataplatform_url: Some(url),
        dataplatform: DataPlatformSettings {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            retry: TEST_DATAPLATFORM_RETRY,
        },
        ..Options::default()
    })
    .await;
    system.restock("apple", 10).await;

    // When an order completes during the outage
    let bobs = order_body("bob", &[("apple", 1, 500)], None, 0, 500);
    let id = system.settle(bobs.clone(), "COMPLETED").await;

    // Then after its retries the delivery is parked: one DLQ entry, one alert
    let entry = eventually(SETTLE, "the order's DLQ entry", || async {
        dlq_entries_of(&system, &id).await.into_iter().next()
    })
    .await;
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("data platform"), "{reason}");
    eventually(SETTLE, "the dataplatform_failed alert", || async {
        (!alerts_of(&alerts, "dataplatform_failed", &id).is_empty()).then_some(())
    })
    .await;
    let types = system.log_types("order", &id).await;
    assert!(types.iter().any(|t| t == "DeliveryParked"), "{types:?}");

    // When a second order goes through the same outage (time for many re-send rounds of the
    // first one, which must not happen while it is parked)
    let witness = system.place_id(bobs).await;
    eventually(SETTLE, "the second order's DLQ entry", || async {
        dlq_entries_of(&system, &witness).await.into_iter().next()
    })
    .await;

    // Then the first order still has one DLQ entry, one alert, and no re-send since parking
    assert_eq!(dlq_entries_of(&system, &id).await.len(), 1);
    assert_eq!(alerts_of(&alerts, "dataplatform_failed", &id).len(), 1);
    let types = system.log_types("order", &id).await;
    let parked_at = types
        .iter()
        .position(|t| t == "DeliveryParked")
        .expect("parked");
    let resent_after = types[parked_at..]
        .iter()
        .filter(|t| *t == "note.redrive_sent")
        .count();
    assert_eq!(resent_after, 0, "{types:?}");
    assert_eq!(
        types.iter().filter(|t| *t == "DeliveryParked").count(),
        1,
        "{types:?}"
    );

    // When the platform recovers and an operator re-drives the entry
    platform.mode.store(PLATFORM_UP, Ordering::SeqCst);
    let seq = entry["seq"].as_u64().expect("a seq");
    let (status, redriven) = system
        .post("order", &format!("/admin/dlq/{seq}/redrive"), Value::Null)
        .await;
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["deliveryResumed"], true, "{redriven}");

    // Then the data platform gets the order exactly once, keyed by its id
    eventually(SETTLE, "the order delivered", || async {
        let order = system.order(&id).await;
        (order["dataPlatformDelivered"] == true).then_some(())
    })
    .await;
    let accepted: Vec<(String, String)> = platform
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, order)| *order == id)
        .cloned()
        .collect();
    assert_eq!(accepted, vec![(id.clone(), id.clone())]);
    let types = system.log_types("order", &id).await;
    for once in ["DeliveryParked", "DeliveryResumed", "DataPlatformDelivered"] {
        assert_eq!(
            types.iter().filter(|t| *t == once).count(),
            1,
            "{once}: {types:?}"
        );
    }
    assert!(dlq_entries_of(&system, &id).await.is_empty());
    assert_eq!(alerts_of(&alerts, "dataplatform_failed", &id).len(), 1);
}
