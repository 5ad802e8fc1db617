//! Bad HTTP input: every service answers 4xx with a JSON error naming the field, and writes
//! nothing. Real nats-server, five real services.

use e2e::{order_body, send_json, System, ADMIN_TOKEN};
use serde_json::{json, Value};

/// POST a raw body (any bytes) with the admin token; status and JSON body (Null if not JSON).
async fn post_raw(system: &System, service: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let request = system
        .http
        .post(format!("{}{path}", system.url(service)))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json");
    send_json(request.body(body))
        .await
        .expect("service reachable")
}

/// The head of a service's log (0 = nothing was ever written).
async fn log_head(system: &System, service: &str) -> u64 {
    let (status, body) = system.get(service, "/readyz").await;
    assert_eq!(status, 200, "{service} ready: {body}");
    body["head"].as_u64().expect("a log head")
}

/// The service and path a request goes to.
type Target<'a> = (&'a str, &'a str);

fn line(sku: Value, qty: Value, price: Value) -> Value {
    json!({"sku": sku, "qty": qty, "price": price})
}

fn order(items: Value, amount: Value) -> Value {
    json!({"userId": "alice", "items": items, "couponId": null, "points": 0, "amount": amount})
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn good() -> Value {
    order(
        json!([line(json!("apple"), json!(1), json!(100))]),
        json!(100),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_order_requests_get_a_4xx_naming_the_field_and_nothing_is_written() {
    // Given
    let system = System::start_default().await;
    let many_lines: Vec<Value> = (0..101)
        .map(|i| line(json!(format!("sku-{i}")), json!(1), json!(1)))
        .collect();
    let one =
        |qty: Value, price: Value| order(json!([line(json!("apple"), qty, price)]), json!(100));
    let json_cases: Vec<(&str, Value, &str)> = vec![
        ("not an object", json!([1, 2, 3]), "body"),
        ("no userId", with(good(), "userId", Value::Null), "userId"),
        (
            "a numeric userId",
            with(good(), "userId", json!(5)),
            "userId",
        ),
        (
            "an empty userId",
            with(good(), "userId", json!("  ")),
            "userId",
        ),
        (
            "a userId too long",
            with(good(), "userId", json!("u".repeat(65))),
            "userId",
        ),
        ("no items", with(good(), "items", Value::Null), "items"),
        (
            "items as a string",
            with(good(), "items", json!("apple")),
            "items",
        ),
        ("no lines", with(good(), "items", json!([])), "items"),
        (
            "more than 100 lines",
            with(good(), "items", json!(many_lines)),
            "items",
        ),
        (
            "a line without sku",
            order(json!([{"qty": 1, "price": 1}]), json!(1)),
            "items[0].sku",
        ),
        (
            "a numeric sku",
            order(json!([line(json!(7), json!(1), json!(1))]), json!(1)),
            "items[0].sku",
        ),
        ("a string qty", one(json!("2"), json!(100)), "items[0].qty"),
        ("a zero qty", one(json!(0), json!(100)), "items[0].qty"),
        ("a negative qty", one(json!(-1), json!(100)), "items[0].qty"),
        (
            "a fractional qty",
            one(json!(1.5), json!(100)),
            "items[0].qty",
        ),
        ("a huge qty", one(json!(10_001), json!(100)), "items[0].qty"),
        (
            "a qty beyond u64",
            one(json!(1e30), json!(100)),
            "items[0].qty",
        ),
        (
            "a negative price",
            one(json!(1), json!(-100)),
            "items[0].price",
        ),
        (
            "a huge price",
            one(json!(1), json!(1_000_000_000_001_u64)),
            "items[0].price",
        ),
        (
            "a string amount",
            with(good(), "amount", json!("100")),
            "amount",
        ),
        ("a zero amount", with(good(), "amount", json!(0)), "amount"),
        (
            "a negative amount",
            with(good(), "amount", json!(-5)),
            "amount",
        ),
        (
            "a huge amount",
            with(good(), "amount", json!(u64::MAX)),
            "amount",
        ),
        ("no amount", with(good(), "amount", Value::Null), "amount"),
        (
            "negative points",
            with(good(), "points", json!(-1)),
            "points",
        ),
        (
            "huge points",
            with(good(), "points", json!(1_000_000_001)),
            "points",
        ),
        (
            "a numeric couponId",
            with(good(), "couponId", json!(7)),
            "couponId",
        ),
        (
            "a userId of 64 four-byte characters (256 bytes)",
            with(good(), "userId", json!("😀".repeat(64))),
            "userId",
        ),
        (
            "a userId with NUL",
            with(good(), "userId", json!("al\u{0}ice")),
            "userId",
        ),
        (
            "a sku with NUL",
            order(
                json!([line(json!("ap\u{0}ple"), json!(1), json!(1))]),
                json!(1),
            ),
            "items[0].sku",
        ),
        (
            "a sku of 17 four-byte characters (68 bytes)",
            order(
                json!([line(json!("😀".repeat(17)), json!(1), json!(1))]),
                json!(1),
            ),
            "items[0].sku",
        ),
        (
            "a couponId with a line break",
            with(good(), "couponId", json!("C1\nC2")),
            "couponId",
        ),
    ];
    let mut raw_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed JSON",
            b"{\"userId\": \"alice\", \"items\": [".to_vec(),
            "body",
        ),
        ("not JSON at all", b"hello".to_vec(), "body"),
        ("an empty body", Vec::new(), "body"),
    ];
    for (what, body, field) in json_cases {
        raw_cases.push((what, serde_json::to_vec(&body).expect("serialises"), field));
    }

    for (what, body, field) in raw_cases {
        // When
        let (status, reply) = post_raw(&system, "order", "/orders", body).await;
        // Then
        assert_eq!(status, 400, "{what}: {reply}");
        assert!(reply["error"].is_string(), "{what}: {reply}");
        assert_eq!(reply["field"], field, "{what}: {reply}");
    }

    // When a request's query is bad
    let (status, reply) = post_raw(
        &system,
        "order",
        "/orders?wait=soon",
        serde_json::to_vec(&good()).expect("serialises"),
    )
    .await;
    // Then
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["field"], "wait", "{reply}");

    // ... and nothing was written
    let (status, orders) = system.get("order", "/orders").await;
    assert_eq!(status, 200, "{orders}");
    assert_eq!(orders["orders"], json!([]), "{orders}");
    assert_eq!(
        log_head(&system, "order").await,
        0,
        "the order log is empty"
    );
    let (status, reply) = system.get("order", "/orders?status=DONE").await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["field"], "status", "{reply}");
    let (status, reply) = system.get("order", "/orders/not-a-uuid").await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["field"], "orderId", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_order_body_gets_a_413_json_error_naming_the_body_and_nothing_is_written() {
    // Given
    let system = System::start_default().await;
    let oversized = with(good(), "padding", json!("x".repeat(70 * 1024)));
    // When the body is larger than the service accepts (64 KiB)
    let (status, reply) = post_raw(
        &system,
        "order",
        "/orders",
        serde_json::to_vec(&oversized).expect("serialises"),
    )
    .await;
    // Then
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].is_string(),
        "an oversized body gets a JSON error: {reply}"
    );
    assert_eq!(reply["field"], "body", "{reply}");
    let (_, orders) = system.get("order", "/orders").await;
    assert_eq!(orders["orders"], json!([]), "{orders}");
    assert_eq!(
        log_head(&system, "order").await,
        0,
        "the order log is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_requests_to_participants_get_a_400_naming_the_field_and_unknown_ids_a_404() {
    // Given
    let system = System::start_default().await;
    let emoji = "%F0%9F%98%80".repeat(17);
    let emoji_sku = format!("/stock/{emoji}/restock");
    let emoji_user = format!("/points/{emoji}/credit");
    let emoji_coupon = serde_json::to_vec(&json!({"couponId": "😀".repeat(64), "discount": 1}))
        .expect("serialises");
    let restock = ("stock", "/stock/apple/restock");
    let credit = ("point", "/points/alice/credit");
    let issue = ("coupon", "/coupons");
    let cases: [(&str, Target<'_>, &[u8], &str); 18] = [
        ("a zero restock", restock, br#"{"qty": 0}"#, "qty"),
        ("a negative restock", restock, br#"{"qty": -3}"#, "qty"),
        ("a string restock", restock, br#"{"qty": "5"}"#, "qty"),
        ("a restock without qty", restock, br#"{}"#, "qty"),
        ("a malformed restock", restock, br#"{"qty": "#, "qty"),
        ("a zero credit", credit, br#"{"points": 0}"#, "points"),
        ("a negative credit", credit, br#"{"points": -1}"#, "points"),
        ("a string credit", credit, br#"{"points": "9"}"#, "points"),
        (
            "a coupon without couponId",
            issue,
            br#"{"userId": "alice", "discount": 100, "expiresAt": null}"#,
            "couponId",
        ),
        (
            "a coupon with a numeric couponId",
            issue,
            br#"{"couponId": 7, "userId": null, "discount": 100}"#,
            "couponId",
        ),
        (
            "a coupon without discount",
            issue,
            br#"{"couponId": "C9", "userId": null}"#,
            "discount",
        ),
        (
            "a restock of a SKU with NUL",
            ("stock", "/stock/ap%00ple/restock"),
            br#"{"qty": 1}"#,
            "sku",
        ),
        (
            "a restock of a SKU of 17 four-byte characters",
            ("stock", &emoji_sku),
            br#"{"qty": 1}"#,
            "sku",
        ),
        (
            "a credit of a user with NUL",
            ("point", "/points/al%00ice/credit"),
            br#"{"points": 1}"#,
            "userId",
        ),
        (
            "a credit of a user of 17 four-byte characters",
            ("point", &emoji_user),
            br#"{"points": 1}"#,
            "userId",
        ),
        (
            "a coupon id of 64 four-byte characters",
            issue,
            &emoji_coupon,
            "couponId",
        ),
        (
            "a coupon for a user with NUL",
            issue,
            br#"{"couponId": "C9", "userId": "a\u0000b", "discount": 1}"#,
            "userId",
        ),
        (
            "a coupon with a bad expiry",
            issue,
            br#"{"couponId": "C9", "userId": null, "discount": 100, "expiresAt": "someday"}"#,
            "expiresAt",
        ),
    ];
    for (what, (service, path), body, field) in cases {
        // When
        let (status, reply) = post_raw(&system, service, path, body.to_vec()).await;
        // Then
        assert_eq!(status, 400, "{what}: {reply}");
        assert!(reply["error"].is_string(), "{what}: {reply}");
        assert_eq!(reply["field"], field, "{what}: {reply}");
    }

    // When unknown ids are looked up, and when a path parameter is not UTF-8
    for (service, path, wanted, field) in [
        ("stock", "/stock/no-such-sku", 404, None),
        ("point", "/points/no-such-user", 404, None),
        ("coupon", "/coupons/no-such-coupon", 404, None),
        (
            "payment",
            "/payments/4f9e3c1a-0000-4000-8000-000000000000",
            404,
            None,
        ),
        ("stock", "/stock/%FF", 400, Some("path")),
        ("point", "/points/%FF", 400, Some("path")),
        ("coupon", "/coupons/%FF", 400, Some("path")),
        ("payment", "/payments/%FF", 400, Some("path")),
        ("order", "/orders/%FF", 400, Some("path")),
    ] {
        let (status, reply) = system.get(service, path).await;
        // Then unknown ids are a JSON 404, and a bad path the API's JSON 400 naming the path
        assert_eq!(status, wanted, "{service} {path}: {reply}");
        assert!(reply["error"].is_string(), "{service} {path}: {reply}");
        if let Some(field) = field {
            assert_eq!(reply["field"], field, "{service} {path}: {reply}");
        }
    }

    // ... and nothing was written anywhere
    for service in ["stock", "point", "coupon", "payment", "order"] {
        assert_eq!(
            log_head(&system, service).await,
            0,
            "{service} wrote nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_an_unknown_sku_or_coupon_is_accepted_and_then_fails_in_the_saga() {
    // Given
    let system = System::start_default().await;
    system.restock("apple", 5).await;
    system.credit("alice", 100).await;
    let cases = [
        (
            "an unknown sku",
            order_body("alice", &[("no-such-sku", 1, 100)], None, 0, 100),
            "stock insufficient",
        ),
        (
            "an unknown coupon",
            order_body(
                "alice",
                &[("apple", 1, 100)],
                Some("NO-SUCH-COUPON"),
                10,
                100,
            ),
            "coupon rejected",
        ),
    ];
    for (what, body, reason) in cases {
        // When
        let (status, reply) = system.place(body).await;
        // Then it is accepted ...
        assert_eq!(status, 202, "{what}: {reply}");
        let id = reply["orderId"].as_str().expect("an orderId").to_owned();
        // ... and the saga fails it, undoing everything
        let order = system.settled(&id).await;
        assert_eq!(order["status"], "FAILED", "{what}: {order}");
        let failure = order["failureReason"].as_str().unwrap_or_default();
        assert!(failure.starts_with(reason), "{what}: {failure}");
        assert_eq!(system.available("apple").await, 5, "{what}: stock restored");
        assert_eq!(
            system.balance("alice").await,
            100,
            "{what}: points refunded"
        );
    }
    let (status, reply) = system.get("stock", "/stock/no-such-sku").await;
    assert_eq!(status, 404, "an order does not create a SKU: {reply}");
    let (status, reply) = system.get("coupon", "/coupons/NO-SUCH-COUPON").await;
    assert_eq!(status, 404, "an order does not create a coupon: {reply}");
}
