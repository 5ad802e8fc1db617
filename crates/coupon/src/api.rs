//! Coupon's HTTP API: coupon state, and admin issuing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use store::live::{Execution, Live};
use store::record::EventMeta;
use store::service::{check_admin, parse_time_ms, ApiError};

use crate::domain::{Coupon, CouponCommand, CouponEntry};

#[derive(Clone)]
struct ApiState {
    live: Live<Coupon>,
    admin_token: Option<String>,
}

/// Coupon's routes.
pub fn router(live: Live<Coupon>, admin_token: Option<String>) -> Router {
    Router::new()
        .route("/coupons/{coupon_id}", get(coupon))
        .route("/coupons", post(issue))
        .with_state(ApiState { live, admin_token })
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
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let Json(body) = body.map_err(|e| ApiError::bad_field("body", e.body_text()))?;
    let coupon_id = body
        .get("couponId")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::bad_field("couponId", "required string"))?
        .to_owned();
    let user_id = match body.get("userId") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_field("userId", "must be a string or null")),
    };
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
    let execution = Execution {
        meta: EventMeta {
            causation_id: format!("admin:issue {coupon_id}"),
            ..EventMeta::default()
        },
        dedup_key: None,
    };
    let command = CouponCommand::Issue {
        coupon_id: coupon_id.clone(),
        user_id,
        discount,
        expires_at_ms,
    };
    match api
        .live
        .execute(execution, command, |_, _| Ok(Vec::new()))
        .await?
    {
        Ok(_) => {
            let entry = api
                .live
                .read(|s| s.coupon(&coupon_id).map(coupon_json))
                .await?;
            Ok((StatusCode::CREATED, Json(entry.unwrap_or_default())))
        }
        Err(rejection) => Err(ApiError::bad_field(
            rejection.field(),
            rejection.to_string(),
        )),
    }
}
