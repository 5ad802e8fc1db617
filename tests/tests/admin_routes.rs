//! Admin routes end to end (real nats-server, five real services): admin writes are idempotent
//! on `Idempotency-Key`, and records that hold secrets (PG authorizations) are shown only with
//! the admin token.

use e2e::{order_body, System, ADMIN_TOKEN, SERVICES};
use serde_json::{json, Value};

/// POST JSON with the admin token and an optional `Idempotency-Key`: status, whether the answer
/// was replayed from an earlier write, and the body.
async fn admin_post(
    system: &System,
    service: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, bool, Value) {
    let mut request = system
        .http
        .post(format!("{}{path}", system.url(service)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("service reachable");
    let status = response.status().as_u16();
    let replayed = response.headers().get("Idempotent-Replayed").is_some();
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// GET with an optional bearer token: status and the raw body text.
async fn get_as(system: &System, service: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = system.http.get(format!("{}{path}", system.url(service)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("service reachable");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Credits alice 50 points with an `Idempotency-Key`.
async fn credit_alice(system: &System, key: &str) -> (u16, bool, Value) {
    let body = json!({"points": 50});
    admin_post(system, "point", "/points/alice/credit", Some(key), body).await
}

/// GET without a token, with a wrong one, and with the admin token: each status and body.
async fn get_three_ways(system: &System, service: &str, path: &str) -> [(u16, String); 3] {
    [
        get_as(system, service, path, None).await,
        get_as(system, service, path, Some("not-the-token")).await,
        get_as(system, service, path, Some(ADMIN_TOKEN)).await,
    ]
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_or_restock_retried_with_the_same_idempotency_key_is_applied_once() {
    // Given
    let system = System::start_default().await;
    system.credit("alice", 100).await;
    system.restock("apple", 5).await;

    // When the same credit is sent twice with one key, then with a different key
    for (key, replayed, balance) in [
        ("credit-1", false, 150),
        ("credit-1", true, 150),
        ("credit-2", false, 200),
    ] {
        let (status, was_replayed, body) = credit_alice(&system, key).await;
        // Then each key is applied once, and a retry answers the same result, marked as replayed
        assert_eq!((status, was_replayed), (200, replayed), "{key}: {body}");
        assert_eq!(
            body,
            json!({"userId": "alice", "balance": balance}),
            "{key}"
        );
        assert_eq!(system.balance("alice").await, balance, "{key}");
    }

    // When a restock is retried with one key, then sent with another
    for (key, replayed, available) in [
        ("restock-1", false, 8),
        ("restock-1", true, 8),
        ("restock-2", false, 11),
    ] {
        let (status, was_replayed, body) = admin_post(
            &system,
            "stock",
            "/stock/apple/restock",
            Some(key),
            json!({"qty": 3}),
        )
        .await;
        // Then each key is applied once
        assert_eq!((status, was_replayed), (200, replayed), "{key}: {body}");
        assert_eq!(body["available"], available, "{key}: {body}");
    }
    assert_eq!(system.available("apple").await, 11);

    // When a coupon issue is retried with its key
    let coupon = json!({"couponId": "C-idem", "userId": null, "discount": 10});
    let issued = admin_post(
        &system,
        "coupon",
        "/coupons",
        Some("issue-1"),
        coupon.clone(),
    )
    .await;
    let again = admin_post(&system, "coupon", "/coupons", Some("issue-1"), coupon).await;
    // Then the retry answers with the coupon the first one issued
    assert_eq!((issued.0, issued.1), (201, false), "{}", issued.2);
    assert_eq!((again.0, again.1), (201, true), "{}", again.2);
    assert_eq!(again.2, issued.2);

    // When a key is reused for another user
    let (status, _, body) = admin_post(
        &system,
        "point",
        "/points/bob/credit",
        Some("credit-1"),
        json!({"points": 50}),
    )
    .await;
    // Then it is refused naming the header, and bob got nothing
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    assert_eq!(system.get("point", "/points/bob").await.0, 404);

    // When the key itself is not a valid id
    let (status, _, body) = credit_alice(&system, &"k".repeat(65)).await;
    // Then it is a 400 naming the header, and nothing was applied
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    assert_eq!(system.balance("alice").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_pg_authorizations_are_shown_only_with_the_admin_token_and_the_timeline_still_works(
) {
    // Given a completed order (so payment holds a PG authorization)
    let system = System::start_default().await;
    system.restock("apple", 5).await;
    let id = system
        .place_id(order_body("alice", &[("apple", 1, 500)], None, 0, 500))
        .await;
    assert_eq!(system.settled(&id).await["status"], "COMPLETED");

    // When a service's log of the order is asked for without, with a wrong, and with the token
    for service in SERVICES {
        let [(anonymous, body), (wrong, _), (admin, records)] =
            get_three_ways(&system, service, &format!("/log/{id}")).await;
        // Then only the admin gets it
        assert_eq!(anonymous, 401, "{service}: {body}");
        assert!(json_of(&body)["error"].is_string(), "{service}: {body}");
        assert_eq!(wrong, 401, "{service}");
        assert_eq!(admin, 200, "{service}: {records}");
        // (coupon and point took no part in this order: their logs of it are empty)
        let involved = !matches!(service, "coupon" | "point");
        assert!(
            json_of(&records)
                .as_array()
                .is_some_and(|r| r.is_empty() != involved),
            "{service}: {records}"
        );
    }

    // When the payment is read without and with the token
    let [(status, public), (wrong_status, _), (admin_status, full)] =
        get_three_ways(&system, "payment", &format!("/payments/{id}")).await;
    // Then the public view is {orderId, status, amount} and only the admin sees the authorization
    assert_eq!(status, 200, "{public}");
    let public = json_of(&public);
    assert_eq!(
        public,
        json!({"orderId": id, "status": "APPROVED", "amount": 500}),
        "the public view"
    );
    assert_eq!(admin_status, 200, "{full}");
    assert_eq!(wrong_status, 401);
    let authorization = json_of(&full)["authorization"]
        .as_str()
        .expect("the admin sees the authorization")
        .to_owned();
    assert!(!authorization.is_empty());

    // When the order's timeline is read without the token
    let (status, timeline) =
        get_as(&system, "order", &format!("/orders/{id}/timeline"), None).await;
    // Then every domain's steps are there (fetched with the token), but not the authorization
    assert_eq!(status, 200, "{timeline}");
    let parsed = json_of(&timeline);
    assert_eq!(parsed["unreachable"], json!([]), "{timeline}");
    for domain in ["order", "payment", "stock"] {
        assert!(
            parsed["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|step| step["domain"] == domain)),
            "{domain} steps on the timeline: {timeline}"
        );
    }
    assert!(
        !timeline.contains(&authorization),
        "the public timeline leaks the PG authorization: {timeline}"
    );
    // ... while the admin's timeline shows it
    let (status, admin_timeline) = get_as(
        &system,
        "order",
        &format!("/orders/{id}/timeline"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{admin_timeline}");
    assert!(admin_timeline.contains(&authorization), "{admin_timeline}");
}
