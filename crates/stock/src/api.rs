//! Stock's HTTP API: availability, and admin restocking.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use eventlog::live::{Execution, Live};
use eventlog::record::EventMeta;
use serde::{Deserialize, Serialize};
use servicekit::http::{
    admin_dedup_key, admin_replayed, admin_reply, check_admin, idempotency_key, validate_id,
    ApiError, RequestBody, ValidJson, ValidPath,
};

use crate::domain::{Stock, StockCommand};

#[derive(Clone)]
struct ApiState {
    live: Live<Stock>,
    admin_token: Option<String>,
}

/// Stock's routes.
pub fn router(live: Live<Stock>, admin_token: Option<String>) -> Router {
    Router::new()
        .route("/stock/{sku}", get(available))
        .route("/stock/{sku}/restock", post(restock))
        .with_state(ApiState { live, admin_token })
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
    let execution = Execution {
        meta: EventMeta {
            causation_id: format!("admin:restock {sku}"),
            ..EventMeta::default()
        },
        // A retried restock with the same key is applied once.
        dedup_key: key.as_deref().map(|k| admin_dedup_key("restock", k)),
    };
    let command = StockCommand::Restock {
        sku: sku.clone(),
        qty: body.qty,
    };
    match api
        .live
        .execute(execution, command, |_, _| Ok(Vec::new()))
        .await?
    {
        Ok(executed) => {
            let replayed = admin_replayed(api.live.store(), &executed, &format!("sku-{sku}"))?;
            let available = api.live.read(|s| s.available(&sku)).await?.unwrap_or(0);
            Ok(admin_reply(
                StatusCode::OK,
                StockView { sku, available },
                replayed,
            ))
        }
        Err(rejection) => Err(ApiError::bad_field(
            rejection.field(),
            rejection.to_string(),
        )),
    }
}
