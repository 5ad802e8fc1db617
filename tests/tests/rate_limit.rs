//! The per-client HTTP rate limit end to end (real nats-server, five real services started with
//! a small `HTTP_RATE_LIMIT`): a burst beyond the limit gets 429 with `Retry-After` and the
//! API's JSON error, the probes keep answering, another client is not limited, and the limited
//! client is let through again once it waited.

use std::time::Duration;

use e2e::{Options, System};

/// Requests per second per client in this test (also the burst).
const LIMIT: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_limit_gets_429_with_retry_after_while_the_probes_keep_answering() {
    // Given every service limited to LIMIT requests per second per client
    let system = System::start(Options {
        rate_limit: LIMIT,
        ..Options::default()
    })
    .await;
    let url = format!("{}/stock/apple", system.url("stock"));

    // When one client sends a burst of four times the limit
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..LIMIT * 4 {
        let response = system.http.get(&url).send().await.expect("stock answers");
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 && limited.is_none() {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            limited = Some((retry_after, body));
        }
    }

    // Then the first requests get their ordinary answer (404: no such SKU) and the rest a 429
    assert!(
        statuses.iter().take(LIMIT as usize).all(|s| *s == 404),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let (retry_after, body) = limited.expect("a 429");
    let retry_after = retry_after.expect("a Retry-After header of whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert!(body["error"].is_string(), "the API's JSON error: {body}");

    // ... while the probes keep answering that client
    for _ in 0..LIMIT * 4 {
        for probe in ["/healthz", "/readyz"] {
            let response = system
                .http
                .get(format!("{}{probe}", system.url("stock")))
                .send()
                .await
                .expect("stock answers");
            assert_eq!(response.status().as_u16(), 200, "{probe}");
        }
    }
    let response = system.http.get(&url).send().await.expect("stock answers");
    assert_eq!(response.status().as_u16(), 429, "still limited");

    // ... another client (another source address) is not limited
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("a client");
    let response = other.get(&url).send().await.expect("stock answers");
    assert_eq!(
        response.status().as_u16(),
        404,
        "another client is let through"
    );

    // ... and the limited client is let through again after waiting as told
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let response = system.http.get(&url).send().await.expect("stock answers");
    assert_eq!(response.status().as_u16(), 404, "let through after waiting");
}
