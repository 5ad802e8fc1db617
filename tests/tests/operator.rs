//! Failures that need an operator reach one, and the operator's retry settles them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::testing::eventually;
use e2e::{order_body, Options, System, ADMIN_TOKEN};
use payment::gateway::SimulatedRules;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_needs_attention_alerts_and_settles_after_an_operator_retry(
) {
    // Given: a gateway whose cancellations fail, and an operator's webhook
    let received = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let webhook = webhook_receiver(received.clone()).await;
    let mut system = System::start(Options {
        pg: SimulatedRules {
            cancel_fails: true,
            ..SimulatedRules::default()
        },
        alert_webhook_url: Some(webhook),
        ..Options::default()
    })
    .await;
    system.restock("apple", 1).await;
    // When: stock rejects, so payment must cancel its approval, and cannot
    let id = system
        .place_id(order_body("alice", &[("apple", 5, 100)], None, 0, 500))
        .await;
    let order = system.settled(&id).await;
    // Then
    assert_eq!(order["status"], "NEEDS_ATTENTION", "{order}");
    assert!(
        order["attentionReason"]
            .as_str()
            .unwrap_or_default()
            .contains("payment cancel_failed"),
        "{order}"
    );
    assert_eq!(
        system.payment_status(&id).await.as_deref(),
        Some("CANCEL_FAILED")
    );
    let js = system.jetstream().await;
    let ops = js.get_stream("OPS").await.expect("OPS stream");
    let alert = ops
        .get_last_raw_message_by_subject("ops.alert.compensation_failed")
        .await
        .expect("an alert was published");
    let body: serde_json::Value = serde_json::from_slice(&alert.payload).expect("json alert");
    assert_eq!(body["orderId"], id.as_str());
    assert_eq!(body["domain"], "payment");
    let hooked = eventually(
        Duration::from_secs(30),
        "the webhook to receive the alert",
        || async {
            let alerts = received.lock().expect("lock").clone();
            alerts
                .into_iter()
                .find(|a| a["kind"] == "compensation_failed")
        },
    )
    .await;
    assert_eq!(hooked["orderId"], id.as_str());

    // When: the operator fixes the gateway and retries
    system.options.pg.cancel_fails = false;
    system.stop_service("payment").await;
    system.start_service("payment").await;
    let unauthorized = system
        .http
        .post(format!(
            "{}/orders/{id}/retry-compensation",
            system.url("order")
        ))
        .send()
        .await
        .expect("reachable");
    assert_eq!(unauthorized.status().as_u16(), 401);
    let retried = system
        .http
        .post(format!(
            "{}/orders/{id}/retry-compensation",
            system.url("order")
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("reachable");
    assert_eq!(retried.status().as_u16(), 202);
    // Then
    let order = eventually(
        Duration::from_secs(30),
        "the order to fail cleanly",
        || async {
            let (_, order) = system.get("order", &format!("/orders/{id}")).await;
            (order["status"] == "FAILED").then_some(order)
        },
    )
    .await;
    assert_eq!(order["outcomes"]["payment"], "COMPENSATED", "{order}");
    assert_eq!(
        system.payment_status(&id).await.as_deref(),
        Some("CANCELLED")
    );
    let types = system.log_types("payment", &id).await;
    assert_eq!(
        types,
        ["ApprovalRequested", "Approved", "CancelFailed", "Cancelled"],
        "{types:?}"
    );
}

/// A local HTTP endpoint that keeps every JSON body POSTed to it; returns its URL.
async fn webhook_receiver(received: Arc<Mutex<Vec<serde_json::Value>>>) -> String {
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let received = received.clone();
            async move {
                received.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/alerts")
}
