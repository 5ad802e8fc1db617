//! Stock's HTTP API: availability, and admin restocking.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use servicekit::http::{
    admin_reply, check_admin, idempotency_key, validate_id, AdminWrite, ApiError, DomainApi,
    RequestBody, ValidJson, ValidPath,
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
    ValidPath(sku): ValidPath<String>,
) -> Result<Json<StockView>, ApiError> {
    match api.live.read(|s| s.available(&sku)).await? {
        Some(available) => Ok(Json(StockView { sku, available })),
        None => Err(ApiError::not_found(format!("unknown sku {sku}"))),
    }
}

/// `POST /stock/{sku}/restock` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Restock {
    /// Units to add (the domain refuses 0).
    qty: u64,
}

impl RequestBody for Restock {
    const MALFORMED_FIELD: &'static str = "qty";
}

/// `GET /stock/{sku}` and the restock's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StockView {
    sku: String,
    available: u64,
}

async fn restock(
    State(api): State<ApiState>,
    headers: HeaderMap,
    ValidPath(sku): ValidPath<String>,
    body: Result<ValidJson<Restock>, ApiError>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    validate_id("sku", &sku)?;
    let key = idempotency_key(&headers)?;
    let ValidJson(body) = body?;
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
        StockView { sku, available },
        replayed,
    ))
}
