//! End-to-end saga throughput: nats-server plus the five real services in one process, orders
//! placed over HTTP by concurrent clients, timed until every order is terminal.
//!
//! `cargo bench -p e2e --bench saga` (env SAGA_BENCH_ORDERS, SAGA_BENCH_CLIENTS).

use std::time::{Duration, Instant};

use e2e::{order_body, System};
use futures::StreamExt;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let orders = env_or("SAGA_BENCH_ORDERS", 5_000);
    let clients = env_or("SAGA_BENCH_CLIENTS", 64);
    let system = System::start_default().await;
    system.restock("apple", 1_000_000_000).await;
    for user in 0..100 {
        system.credit(&format!("user-{user}"), 1_000_000).await;
    }
    let started = Instant::now();
    let placed = futures::stream::iter(0..orders)
        .map(|i| {
            let system = &system;
            async move {
                // Every participant acts: payment, stock, points (and coupons are per-use only).
                let body = order_body(
                    &format!("user-{}", i % 100),
                    &[("apple", 1, 100)],
                    None,
                    1,
                    100,
                );
                system.place(body).await.0
            }
        })
        .buffer_unordered(clients)
        .filter(|status| std::future::ready(*status == 202))
        .count()
        .await;
    let placing = started.elapsed();
    loop {
        let (_, stats) = system.get("order", "/stats").await;
        let done = stats["orders"]["COMPLETED"].as_u64().unwrap_or(0)
            + stats["orders"]["FAILED"].as_u64().unwrap_or(0);
        if done as usize >= placed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "orders did not settle: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    let (_, stats) = system.get("order", "/stats").await;
    println!("saga benchmark: {placed} orders, {clients} concurrent HTTP clients, 3 participants each (payment, stock, point)");
    println!(
        "  placed in        {:>8.2} s  ({:>7.0} orders/s accepted)",
        placing.as_secs_f64(),
        placed as f64 / placing.as_secs_f64()
    );
    println!(
        "  all terminal in  {:>8.2} s  ({:>7.0} orders/s end to end)",
        total.as_secs_f64(),
        placed as f64 / total.as_secs_f64()
    );
    println!("  statuses: {}", stats["orders"]);
    if std::env::var("SAGA_BENCH_TRACE").is_ok() {
        let metrics = system
            .http
            .get(format!("{}/metrics", system.url("order")))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        for line in metrics.lines().filter(|l| {
            l.starts_with("store_")
                && (l.contains("quantile=\"0.5\"")
                    || l.contains("quantile=\"0.99\"")
                    || l.contains("_sum")
                    || l.contains("_count"))
        }) {
            println!("  {line}");
        }
        // One order from the middle of the run, step by step, to see where its time went.
        let (_, listing) = system
            .get("order", &format!("/orders?limit={}", placed / 2))
            .await;
        if let Some(id) = listing["orders"]
            .as_array()
            .and_then(|o| o.last())
            .and_then(|o| o["orderId"].as_str())
        {
            let (_, timeline) = system.get("order", &format!("/orders/{id}/timeline")).await;
            let steps = timeline["steps"].as_array().cloned().unwrap_or_default();
            let start = steps
                .first()
                .and_then(|s| s["recordedAtMs"].as_u64())
                .unwrap_or(0);
            for step in steps {
                let at = step["recordedAtMs"].as_u64().unwrap_or(0);
                println!(
                    "  +{:>5} ms  {:<8} {}",
                    at.saturating_sub(start),
                    step["domain"].as_str().unwrap_or(""),
                    step["type"].as_str().unwrap_or("")
                );
            }
        }
    }
}
