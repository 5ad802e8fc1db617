//! Stock's HTTP API: availability, and admin restocking.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use servicekit::http::{
    admin_reply, check_admin, idempotency_key, validate_id, AdminWrite, ApiError, DomainApi,
};

use crate::domain::{Stock, StockCommand, StockRejection};

type ApiState = DomainApi<Stock>;

/// Stock's routes, over its live state and admin token.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/stock/{sku}", get(available))
        .route("/stock/{sku}/restock", post(restock))
}

async fn available(
    State(api): State<ApiState>,
    Path(sku): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match api.live.read(|s| s.available(&sku)).await? {
        Some(available) => Ok(Json(
            serde_json::json!({ "sku": sku, "available": available }),
        )),
        None => Err(ApiError::not_found(format!("unknown sku {sku}"))),
    }
}

#[derive(Debug, Deserialize)]
struct Restock {
    qty: u64,
}

async fn restock(
    State(api): State<ApiState>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    body: Result<Json<Restock>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    validate_id("sku", &sku)?;
    let key = idempotency_key(&headers)?;
    let Json(body) = body.map_err(|e| ApiError::bad_field("qty", e.body_text()))?;
    let write = AdminWrite {
        causation: format!("admin:restock {sku}"),
        route: "restock",
        stream: format!("sku-{sku}"),
    };
    let command = StockCommand::Restock {
        sku: sku.clone(),
        qty: body.qty,
    };
    let replayed = api
        .admin_execute(key.as_deref(), write, command, StockRejection::field)
        .await?;
    let available = api.live.read(|s| s.available(&sku)).await?.unwrap_or(0);
    Ok(admin_reply(
        StatusCode::OK,
        serde_json::json!({ "sku": sku, "available": available }),
        replayed,
    ))
}
