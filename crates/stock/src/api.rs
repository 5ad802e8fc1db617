//! Stock's HTTP API: availability, and admin restocking.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use servicekit::http::{
    validate_id, Admin, AdminWrite, ApiError, DomainApi, RequestBody, ValidJson, ValidPath,
};
use servicekit::openapi::AdminWriteErrors;
use servicekit::participant::SimpleParticipant;
use utoipa_axum::routes;

use crate::domain::{Stock, StockCommand, StockRejection, StockState};

type ApiState = DomainApi<Stock>;

impl SimpleParticipant for Stock {
    fn routes() -> Router<ApiState> {
        servicekit::openapi::serve("stock", [routes!(available), routes!(restock)])
    }
}

/// `GET /stock/{sku}`: units available.
#[utoipa::path(get, path = "/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, description = "Units available", body = StockView),
        (status = 404, description = "Unknown SKU", body = servicekit::openapi::ErrorBody)))]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Restock {
    /// Units to add (the domain refuses 0).
    qty: u64,
}

impl RequestBody for Restock {
    const MALFORMED_FIELD: &'static str = "qty";
}

/// `GET /stock/{sku}` and the restock's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct StockView {
    sku: String,
    available: u64,
}

/// `POST /stock/{sku}/restock` (admin): adds units, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/stock/{sku}/restock", tag = "stock",
    params(("sku" = String, Path, description = "The SKU"),
        ("Idempotency-Key" = Option<String>, Header, description = "Applies a retried write once")),
    request_body = Restock,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Units available after the restock", body = StockView),
        AdminWriteErrors))]
async fn restock(
    ValidPath(sku): ValidPath<String>,
    admin: Admin<Stock>,
    body: Result<ValidJson<Restock>, ApiError>,
) -> Result<Response, ApiError> {
    validate_id("sku", &sku)?;
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
    let answer = move |s: &StockState| StockView {
        available: s.available(&sku).unwrap_or(0),
        sku,
    };
    admin
        .write(
            write,
            command,
            StockRejection::field,
            StatusCode::OK,
            answer,
        )
        .await
}
