//! Stock's HTTP API: availability, and admin restocking.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
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
    // Each route is served and documented from the same `#[utoipa::path]`.
    let (router, doc) = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(available))
        .routes(utoipa_axum::routes!(restock))
        .split_for_parts();
    router.route("/openapi.json", servicekit::openapi::route("stock", doc))
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
        (status = 400, description = "Bad input, naming the field", body = servicekit::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = servicekit::openapi::ErrorBody),
        (status = 403, description = "Admin routes are disabled", body = servicekit::openapi::ErrorBody)))]
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
