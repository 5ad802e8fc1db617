//! Point's HTTP API: balances, and admin crediting.

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

use crate::domain::{Point, PointCommand};

#[derive(Clone)]
struct ApiState {
    live: Live<Point>,
    admin_token: Option<String>,
}

/// Point's routes.
pub fn router(live: Live<Point>, admin_token: Option<String>) -> Router {
    Router::new()
        .route("/points/{user_id}", get(balance))
        .route("/points/{user_id}/credit", post(credit))
        .with_state(ApiState { live, admin_token })
}

async fn balance(
    State(api): State<ApiState>,
    ValidPath(user_id): ValidPath<String>,
) -> Result<Json<BalanceView>, ApiError> {
    let (known, balance) = api
        .live
        .read(|s| (s.knows_user(&user_id), s.balance(&user_id)))
        .await?;
    if !known {
        return Err(ApiError::not_found(format!("unknown user {user_id}")));
    }
    Ok(Json(BalanceView { user_id, balance }))
}

/// `POST /points/{userId}/credit` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Credit {
    /// Points to add (the domain refuses 0).
    points: u64,
}

impl RequestBody for Credit {
    const MALFORMED_FIELD: &'static str = "points";
}

/// `GET /points/{userId}` and the credit's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceView {
    user_id: String,
    balance: u64,
}

async fn credit(
    State(api): State<ApiState>,
    headers: HeaderMap,
    ValidPath(user_id): ValidPath<String>,
    body: Result<ValidJson<Credit>, ApiError>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    validate_id("userId", &user_id)?;
    let key = idempotency_key(&headers)?;
    let ValidJson(body) = body?;
    let execution = Execution {
        meta: EventMeta {
            causation_id: format!("admin:credit {user_id}"),
            ..EventMeta::default()
        },
        // A retried credit with the same key is applied once.
        dedup_key: key.as_deref().map(|k| admin_dedup_key("credit", k)),
    };
    let command = PointCommand::Credit {
        user_id: user_id.clone(),
        points: body.points,
    };
    match api
        .live
        .execute(execution, command, |_, _| Ok(Vec::new()))
        .await?
    {
        Ok(executed) => {
            let replayed = admin_replayed(api.live.store(), &executed, &format!("user-{user_id}"))?;
            let balance = api.live.read(|s| s.balance(&user_id)).await?;
            Ok(admin_reply(
                StatusCode::OK,
                BalanceView { user_id, balance },
                replayed,
            ))
        }
        Err(rejection) => Err(ApiError::bad_field(
            rejection.field(),
            rejection.to_string(),
        )),
    }
}
