//! Coupon's HTTP API: coupon state, and admin issuing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use servicekit::http::{
    admin_reply, check_admin, id_field, idempotency_key, AdminWrite, ApiError, DomainApi,
};
use servicekit::offline::parse_time_ms;

use crate::domain::{Coupon, CouponCommand, CouponEntry, CouponRejection};

type ApiState = DomainApi<Coupon>;

/// Coupon's routes, over its live state and admin token.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/coupons/{coupon_id}", get(coupon))
        .route("/coupons", post(issue))
}

fn coupon_json(entry: &CouponEntry) -> serde_json::Value {
    serde_json::json!({
        "couponId": entry.coupon_id,
        "userId": entry.user_id,
        "discount": entry.discount,
        "status": entry.status(),
        "usedBy": entry.used_by,
        "expiresAtMs": entry.expires_at_ms,
    })
}

async fn coupon(
    State(api): State<ApiState>,
    Path(coupon_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.live
        .read(|s| s.coupon(&coupon_id).map(coupon_json))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown coupon {coupon_id}")))
}

async fn issue(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let key = idempotency_key(&headers)?;
    let Json(body) = body.map_err(|e| ApiError::bad_field("body", e.body_text()))?;
    let coupon_id = id_field(body.get("couponId"), "couponId")?
        .ok_or_else(|| ApiError::bad_field("couponId", "required string"))?;
    let user_id = id_field(body.get("userId"), "userId")?;
    let discount = body
        .get("discount")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| ApiError::bad_field("discount", "required non-negative integer"))?;
    let expires_at_ms = match body.get("expiresAt") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| ApiError::bad_field("expiresAt", "ms since epoch"))?,
        ),
        Some(serde_json::Value::String(s)) => {
            Some(parse_time_ms(s).map_err(|e| ApiError::bad_field("expiresAt", e))?)
        }
        Some(_) => {
            return Err(ApiError::bad_field(
                "expiresAt",
                "RFC 3339 string, ms since epoch, or null",
            ))
        }
    };
    let write = AdminWrite {
        causation: format!("admin:issue {coupon_id}"),
        // A retried issue with the same key is answered with the coupon it issued.
        route: "coupons",
        stream: format!("coupon-{coupon_id}"),
    };
    let command = CouponCommand::Issue {
        coupon_id: coupon_id.clone(),
        user_id,
        discount,
        expires_at_ms,
    };
    let replayed = api
        .admin_execute(key.as_deref(), write, command, CouponRejection::field)
        .await?;
    let entry = api
        .live
        .read(|s| s.coupon(&coupon_id).map(coupon_json))
        .await?;
    Ok(admin_reply(
        StatusCode::CREATED,
        entry.unwrap_or_default(),
        replayed,
    ))
}
