//! Payment's HTTP API: a payment's state.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use store::live::Live;
use store::service::ApiError;
use uuid::Uuid;

use crate::domain::Payment;

/// Payment's routes.
pub fn router(live: Live<Payment>) -> Router {
    Router::new()
        .route("/payments/{order_id}", get(payment))
        .with_state(live)
}

async fn payment(
    State(live): State<Live<Payment>>,
    Path(order_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let order_id: Uuid = order_id
        .parse()
        .map_err(|_| ApiError::bad_field("orderId", "not a UUID"))?;
    live.read(|s| {
        s.payment(order_id).map(|p| {
            serde_json::json!({
                "orderId": p.order_id,
                "status": p.status.as_str(),
                "amount": p.amount,
                "authorization": p.authorization,
                "reason": p.reason,
            })
        })
    })
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))
}
