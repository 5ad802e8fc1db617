//! Failures that need an operator reach one, and the operator's retry settles them.

use std::time::Duration;

use bus::testing::eventually;
use e2e::{alert_webhook, order_body, Options, System};
use payment::gateway::SimulatedRules;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_needs_attention_alerts_and_settles_after_an_operator_retry(
) {
    // Given: a gateway whose cancellations fail, and an operator's webhook
    let (webhook, received) = alert_webhook().await;
    let mut system = System::start(Options {
        alert_webhook_url: Some(webhook),
        pg: SimulatedRules {
            cancel_fails: true,
            ..SimulatedRules::default()
        },
        ..Options::default()
    })
    .await;
    system.restock("apple", 1).await;
    // When: stock rejects, so payment must cancel its approval, and cannot
    let too_many = order_body("alice", &[("apple", 5, 100)], None, 0, 500);
    let id = system.settle(too_many, "NEEDS_ATTENTION").await;
    // Then
    let order = system.order(&id).await;
    assert!(
        order["attentionReason"]
            .as_str()
            .unwrap_or_default()
            .contains("payment cancel_failed"),
        "{order}"
    );
    let payment = system.payment_status(&id).await;
    assert_eq!(payment.as_deref(), Some("CANCEL_FAILED"));
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
    let (status, body) = system.retry_compensation(&id).await;
    assert_eq!(status, 202, "{body}");
    // Then
    let order = system.order_becomes(&id, "FAILED").await;
    assert_eq!(order["outcomes"]["payment"], "COMPENSATED", "{order}");
    let payment = system.payment_status(&id).await;
    assert_eq!(payment.as_deref(), Some("CANCELLED"));
    let types = system.log_types("payment", &id).await;
    assert_eq!(
        types,
        ["ApprovalRequested", "Approved", "CancelFailed", "Cancelled"],
        "{types:?}"
    );
}
