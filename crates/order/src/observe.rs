//! The order service's metrics: orders by status (read from the counts the state keeps, per
//! scrape), saga duration (placed -> COMPLETED or FAILED), re-drives and operator retries.

use eventlog::live::Live;

use crate::domain::{Order, OrderEvent, OrderStatus, Orders};

/// Records what committed events say about sagas: `saga_duration_seconds{outcome="completed"}`
/// when an order completes (failed ones: [`record_failed`]), `saga_redrives_total`, `saga_compensation_retries_total`,
/// `saga_orders_placed_total`, `saga_attention_needed_total`. Called with the state after the
/// events applied, as the outbox is planned.
pub fn record(state: &Orders, events: &[OrderEvent]) {
    for event in events {
        let Some(saga) = state.orders.get(&event.order_id()) else {
            continue;
        };
        let seconds = |at_ms: u64| at_ms.saturating_sub(saga.order.placed_at_ms) as f64 / 1_000.0;
        match event {
            OrderEvent::Placed { .. } => metrics::counter!("saga_orders_placed_total").increment(1),
            OrderEvent::Completed { at_ms, .. } => {
                metrics::histogram!("saga_duration_seconds", "outcome" => "completed")
                    .record(seconds(*at_ms));
            }
            OrderEvent::FailureRedriven { .. } => {
                metrics::counter!("saga_redrives_total").increment(1);
            }
            OrderEvent::CompensationRetried { .. } => {
                metrics::counter!("saga_compensation_retries_total").increment(1);
            }
            OrderEvent::AttentionNeeded { .. } | OrderEvent::RedrivesExhausted { .. } => {
                metrics::counter!("saga_attention_needed_total").increment(1);
            }
            _ => {}
        }
    }
}

/// Records `saga_duration_seconds{outcome="failed"}` for a `Compensated` among committed
/// events. Apart from [`record`] because `Compensated` settles the order: the state no longer
/// holds its saga once the event applied, so the caller passes the placement time.
pub fn record_failed(placed_at_ms: u64, events: &[OrderEvent]) {
    for event in events {
        if let OrderEvent::Compensated { at_ms, .. } = event {
            metrics::histogram!("saga_duration_seconds", "outcome" => "failed")
                .record(at_ms.saturating_sub(placed_at_ms) as f64 / 1_000.0);
        }
    }
}

/// Adds the scrape hook setting `saga_orders{status}` from the state's counts (no scan of orders).
pub fn orders_by_status(hooks: &servicekit::observe::ScrapeHooks, live: Live<Order>) {
    hooks.add(move || {
        let live = live.clone();
        Box::pin(async move {
            // Durable counts only, like every other read; a writer that stopped leaves the
            // gauges as they were (the service is stopping anyway).
            let Ok(counts) = live.read(|state| state.status_counts).await else {
                return;
            };
            for status in OrderStatus::ALL {
                metrics::gauge!("saga_orders", "status" => status.as_str())
                    .set(counts.get(status) as f64);
            }
        })
    });
}
