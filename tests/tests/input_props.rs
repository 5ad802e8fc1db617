//! Arbitrary ids through every HTTP write of the real system (real nats-server, five real
//! services): each request gets a 2xx or a 4xx JSON error naming a field (never a 5xx, never a
//! dropped connection), an id that was accepted can be read back, and every service still
//! answers `/readyz` afterwards, with every saga the writes started settled.

use e2e::{System, ADMIN_TOKEN, SERVICES};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// Cases per endpoint: every case goes through every write once.
const CASES: u32 = 64;

/// Characters ids are made of, with their weights (any other `char` is drawn with weight 4).
const ID_PIECES: [(u32, char); 16] = [
    (8, 'a'),
    (2, ' '),
    (1, '\0'),
    (1, '\n'),
    (1, '\r'),
    (1, '\u{7f}'),
    (1, '\u{85}'),
    (1, '/'),
    (1, '%'),
    (1, '<'),
    (1, '"'),
    (2, 'é'),
    (2, '€'),
    (3, '😀'),
    (1, '\u{10FFFF}'),
    (1, '\u{FEFF}'),
];

/// Ids mixing ASCII, 2-, 3- and 4-byte characters, NUL and other controls, markup and
/// separators, at lengths around the 64-byte limit; and arbitrary unicode strings.
fn any_id() -> impl Strategy<Value = String> {
    let piece = proptest::strategy::Union::new_weighted(
        ID_PIECES
            .iter()
            .map(|&(weight, c)| (weight, Just(c).boxed()))
            .chain([(4, any::<char>().boxed())])
            .collect(),
    );
    prop_oneof![
        3 => proptest::collection::vec(piece, 0..72).prop_map(|c| c.into_iter().collect()),
        1 => any::<String>(),
        1 => "[a-z0-9-]{1,16}",
    ]
}

/// Percent-encodes every byte but the unreserved ones, so any id fits in one path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One write: what it was, status and body.
struct Reply {
    what: String,
    status: u16,
    body: Value,
}

async fn send(what: String, request: reqwest::RequestBuilder) -> Result<Reply, TestCaseError> {
    let response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: no answer (dropped?): {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: body cut off: {e}")))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply { what, status, body })
}

/// A 2xx, or a 4xx whose JSON body names the field; anything else fails the case.
fn judged(reply: &Reply) -> Result<bool, TestCaseError> {
    let Reply { what, status, body } = reply;
    if (200..300).contains(status) {
        return Ok(true);
    }
    prop_assert!(
        (400..500).contains(status),
        "{what}: got {status} (only 2xx or 4xx allowed): {body}"
    );
    prop_assert!(body["error"].is_string(), "{what}: {status} {body}");
    prop_assert!(
        body["field"].as_str().is_some_and(|f| !f.is_empty()),
        "{what}: {status} names no field: {body}"
    );
    Ok(false)
}

/// An `Idempotency-Key` header carrying the id's bytes, when HTTP can carry them at all.
fn key_header(id: &str) -> Option<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_bytes(id.as_bytes()).ok()
}

fn order(user: &str, sku: &str, coupon: Option<&str>) -> Value {
    json!({
        "userId": user,
        "items": [{"sku": sku, "qty": 1, "price": 100}],
        "couponId": coupon,
        "points": 10,
        "amount": 100,
    })
}

/// Sends one id through every write; returns the orders placed.
async fn every_write(system: &System, id: &str) -> Result<Vec<String>, TestCaseError> {
    let http = &system.http;
    let order_url = format!("{}/orders", system.url("order"));
    let mut orders = Vec::new();
    let mut replies = Vec::new();
    for (what, body) in [
        ("userId", order(id, "apple", None)),
        ("sku", order("alice", id, None)),
        ("couponId", order("alice", "apple", Some(id))),
    ] {
        replies.push(
            send(
                format!("POST /orders {what}={id:?}"),
                http.post(&order_url).json(&body),
            )
            .await?,
        );
    }
    if let Some(key) = key_header(id) {
        replies.push(
            send(
                format!("POST /orders Idempotency-Key={id:?}"),
                http.post(&order_url)
                    .header("Idempotency-Key", key)
                    .json(&order("alice", "apple", None)),
            )
            .await?,
        );
    }
    for reply in &replies {
        if judged(reply)? {
            orders.push(
                reply.body["orderId"]
                    .as_str()
                    .ok_or_else(|| TestCaseError::fail(format!("{}: no orderId", reply.what)))?
                    .to_owned(),
            );
        }
    }

    // Restock and credit: the SKU or the user in the path; an accepted one can be read back.
    let seg = segment(id);
    for (service, write, read, field, body) in [
        (
            "stock",
            format!("/stock/{seg}/restock"),
            format!("/stock/{seg}"),
            "sku",
            json!({"qty": 1}),
        ),
        (
            "point",
            format!("/points/{seg}/credit"),
            format!("/points/{seg}"),
            "userId",
            json!({"points": 1}),
        ),
    ] {
        let url = format!("{}{write}", system.url(service));
        let request = http.post(url).bearer_auth(ADMIN_TOKEN).json(&body);
        let reply = send(format!("POST {write} ({field} {id:?})"), request).await?;
        if judged(&reply)? {
            let (status, body) = system.get(service, &read).await;
            prop_assert_eq!(status, 200, "{} {:?} is not readable: {}", field, id, body);
            prop_assert_eq!(body[field].as_str(), Some(id));
        }
    }

    // Issue: the coupon id, then the user id, in the body (a repeated id is a 4xx naming it).
    let coupons = format!("{}/coupons", system.url("coupon"));
    let fresh = uuid::Uuid::new_v4().to_string();
    for (what, body) in [
        (
            "couponId",
            json!({"couponId": id, "userId": null, "discount": 10}),
        ),
        (
            "userId",
            json!({"couponId": fresh, "userId": id, "discount": 10}),
        ),
    ] {
        let reply = send(
            format!("POST /coupons {what}={id:?}"),
            http.post(&coupons).bearer_auth(ADMIN_TOKEN).json(&body),
        )
        .await?;
        judged(&reply)?;
    }

    // Admin writes with the id as their Idempotency-Key.
    if let Some(key) = key_header(id) {
        let sku = uuid::Uuid::new_v4().to_string();
        for (what, request) in [
            (
                "restock",
                http.post(format!("{}/stock/{sku}/restock", system.url("stock")))
                    .json(&json!({"qty": 1})),
            ),
            (
                "credit",
                http.post(format!("{}/points/{sku}/credit", system.url("point")))
                    .json(&json!({"points": 1})),
            ),
            (
                "issue",
                http.post(&coupons)
                    .json(&json!({"couponId": sku, "userId": null, "discount": 10})),
            ),
        ] {
            let reply = send(
                format!("{what} with Idempotency-Key={id:?}"),
                request
                    .bearer_auth(ADMIN_TOKEN)
                    .header("Idempotency-Key", key.clone()),
            )
            .await?;
            judged(&reply)?;
        }
    }

    // Every service still answers.
    for service in SERVICES {
        let (status, body) = system.get(service, "/readyz").await;
        prop_assert_eq!(
            status,
            200,
            "{} not ready after {:?}: {}",
            service,
            id,
            body
        );
    }
    Ok(orders)
}

#[test]
fn arbitrary_ids_through_every_http_write_get_a_2xx_or_a_4xx_naming_a_field_and_no_service_stops() {
    // Given the whole system
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let system = runtime.block_on(System::start_default());
    let placed = std::cell::RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });

    // When edge-case ids, then arbitrary ones, go through every write
    let edges = [
        String::new(),
        "\0".to_owned(),
        "a\0b".to_owned(),
        "😀".repeat(16),
        "😀".repeat(17),
        "😀".repeat(64),
        "a".repeat(64),
        "a".repeat(65),
        " padded ".to_owned(),
        "a/b".to_owned(),
        // A client normalises `/stock/./restock` to `/stock/restock`: a route, not this method.
        ".".to_owned(),
        "..".to_owned(),
        "<img src=x onerror=alert(1)>".to_owned(),
    ];
    for id in &edges {
        let orders = runtime
            .block_on(every_write(&system, id))
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
        placed.borrow_mut().extend(orders);
    }
    let result = runner.run(&any_id(), |id| {
        let orders = runtime.block_on(every_write(&system, &id))?;
        placed.borrow_mut().extend(orders);
        Ok(())
    });

    // Then every request was answered as it should be
    if let Err(err) = result {
        panic!("{err}");
    }
    // ... every saga those writes started settled (no participant stopped on an id)
    let placed = placed.into_inner();
    runtime.block_on(async {
        for order_id in &placed {
            system.settled(order_id).await;
        }
        // ... and every service is still ready
        for service in SERVICES {
            let (status, body) = system.get(service, "/readyz").await;
            assert_eq!(status, 200, "{service} is not ready at the end: {body}");
        }
    });
}
