//! Point's HTTP API: balances, and admin crediting.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use servicekit::http::{
    admin_reply, check_admin, idempotency_key, validate_id, AdminWrite, ApiError, DomainApi,
};

use crate::domain::{Point, PointCommand, PointRejection};

type ApiState = DomainApi<Point>;

/// Point's routes, over its live state and admin token.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/points/{user_id}", get(balance))
        .route("/points/{user_id}/credit", post(credit))
}

async fn balance(
    State(api): State<ApiState>,
    Path(user_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (known, balance) = api
        .live
        .read(|s| (s.knows_user(&user_id), s.balance(&user_id)))
        .await?;
    if !known {
        return Err(ApiError::not_found(format!("unknown user {user_id}")));
    }
    Ok(Json(
        serde_json::json!({ "userId": user_id, "balance": balance }),
    ))
}

#[derive(Debug, Deserialize)]
struct Credit {
    points: u64,
}

async fn credit(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<Credit>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    validate_id("userId", &user_id)?;
    let key = idempotency_key(&headers)?;
    let Json(body) = body.map_err(|e| ApiError::bad_field("points", e.body_text()))?;
    let command = PointCommand::Credit {
        user_id: user_id.clone(),
        points: body.points,
    };
    let write = AdminWrite {
        causation: format!("admin:credit {user_id}"),
        route: "credit",
        stream: format!("user-{user_id}"),
    };
    let replayed = api
        .admin_execute(key.as_deref(), write, command, PointRejection::field)
        .await?;
    let balance = api.live.read(|s| s.balance(&user_id)).await?;
    let body = serde_json::json!({ "userId": user_id, "balance": balance });
    Ok(admin_reply(StatusCode::OK, body, replayed))
}
