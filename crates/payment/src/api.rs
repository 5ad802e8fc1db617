//! Payment's HTTP API: a payment's state. The PG authorization (what a cancel needs) and the
//! gateway's reason are shown only with the admin token.

use axum::extract::State;
use axum::{Json, Router};
use eventlog::live::Live;
use servicekit::http::{AdminGate, ApiError, MaybeAdmin, OrderIdPath};
use servicekit::openapi::AdminReadErrors;
use utoipa_axum::routes;

use crate::domain::Payment;

#[derive(Clone)]
struct ApiState {
    live: Live<Payment>,
    admin_token: Option<String>,
}

impl AdminGate for ApiState {
    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }
}

/// Payment's routes.
pub fn router(live: Live<Payment>, admin_token: Option<String>) -> Router {
    servicekit::openapi::serve("payment", [routes!(payment)])
        .with_state(ApiState { live, admin_token })
}

/// `GET /payments/{orderId}`: a payment's state (with the PG authorization for the admin).
#[utoipa::path(get, path = "/payments/{order_id}", tag = "payment",
    params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "`{orderId, status, amount}` (plus `authorization`, `reason` for the admin)", body = Object),
        AdminReadErrors))]
async fn payment(
    State(api): State<ApiState>,
    // After the id: a bad id is a 400 even with a wrong token.
    OrderIdPath(order_id): OrderIdPath,
    MaybeAdmin(admin): MaybeAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    // A settled or old payment is no longer in memory: read_key answers it from the log.
    api.live
        .read_key(&order_id.to_string(), |s| {
            s.payment(order_id).map(|p| {
                let mut body = serde_json::json!({
                    "orderId": p.order_id,
                    "status": p.status.as_str(),
                    "amount": p.amount,
                });
                if admin {
                    body["authorization"] = serde_json::json!(p.authorization);
                    body["reason"] = serde_json::json!(p.reason);
                }
                body
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))
}
