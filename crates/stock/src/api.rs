//! Stock's HTTP API: availability, and admin restocking.

use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use servicekit::http::{
    validate_id, Admin, AdminWrite, ApiError, DomainApi, PathItem, RequestBody, ValidJson,
    ValidPath,
};
use servicekit::openapi::{AdminWriteErrors, NotFound};
use servicekit::participant::SimpleParticipant;
use utoipa_axum::routes;

use crate::domain::{Stock, StockCommand, StockRejection, StockState};

/// `GET /stock/{sku}`: units available.
#[utoipa::path(get, path = "/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "The SKU")),
    responses((status = 200, description = "Units available", body = StockView), NotFound))]
async fn available(item: PathItem<Stock>) -> Result<Json<StockView>, ApiError> {
    item.view("sku", |s, sku| {
        let available = s.available(sku)?;
        Some(StockView {
            sku: sku.to_owned(),
            available,
        })
    })
    .await
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
    responses((status = 200, description = "Units available after the restock", body = StockView), AdminWriteErrors))]
async fn restock(
    ValidPath(sku): ValidPath<String>,
    admin: Admin<Stock>,
    body: Result<ValidJson<Restock>, ApiError>,
) -> Result<Response, ApiError> {
    validate_id("sku", &sku)?;
    let ValidJson(body) = body?;
    let command = StockCommand::Restock {
        sku: sku.clone(),
        qty: body.qty,
    };
    let write = AdminWrite {
        causation: format!("admin:restock {sku}"),
        route: "restock",
        stream: format!("sku-{sku}"),
    };
    let answer = move |s: &StockState| StockView {
        available: s.available(&sku).unwrap_or(0),
        sku,
    };
    let written = admin.write(write, command, StockRejection::field).await?;
    written.reply(StatusCode::OK, answer).await
}

impl SimpleParticipant for Stock {
    fn routes() -> Router<DomainApi<Stock>> {
        servicekit::openapi::serve("stock", [routes!(available), routes!(restock)])
    }
}
