//! Point's HTTP API: balances, and admin crediting.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use servicekit::http::{
    admin_reply, check_admin, idempotency_key, validate_id, AdminWrite, ApiError, DomainApi,
    RequestBody, ValidJson, ValidPath,
};

use crate::domain::{Point, PointCommand, PointRejection};

type ApiState = DomainApi<Point>;

/// Point's routes, over its live state and admin token.
pub fn routes() -> Router<ApiState> {
    // Each route is served and documented from the same `#[utoipa::path]`.
    let (router, doc) = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(balance))
        .routes(utoipa_axum::routes!(credit))
        .split_for_parts();
    router.route("/openapi.json", servicekit::openapi::route("point", doc))
}

/// `GET /points/{userId}`: a user's balance.
#[utoipa::path(get, path = "/points/{user_id}", tag = "point",
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The balance", body = BalanceView),
        (status = 404, description = "Unknown user", body = servicekit::openapi::ErrorBody)))]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Credit {
    /// Points to add (the domain refuses 0).
    points: u64,
}

impl RequestBody for Credit {
    const MALFORMED_FIELD: &'static str = "points";
}

/// `GET /points/{userId}` and the credit's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct BalanceView {
    user_id: String,
    balance: u64,
}

/// `POST /points/{userId}/credit` (admin): adds points, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/points/{user_id}/credit", tag = "point",
    params(("user_id" = String, Path, description = "The user's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Applies a retried write once")),
    request_body = Credit,
    security(("admin" = [])),
    responses(
        (status = 200, description = "The balance after the credit", body = BalanceView),
        (status = 400, description = "Bad input, naming the field", body = servicekit::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = servicekit::openapi::ErrorBody),
        (status = 403, description = "Admin routes are disabled", body = servicekit::openapi::ErrorBody)))]
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
    Ok(admin_reply(
        StatusCode::OK,
        BalanceView { user_id, balance },
        replayed,
    ))
}
