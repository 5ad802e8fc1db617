//! Point's HTTP API: balances, and admin crediting.

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

use crate::domain::{Point, PointCommand, PointRejection, PointState};

/// `GET /points/{userId}`: a user's balance.
#[utoipa::path(get, path = "/points/{user_id}", tag = "point",
    params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The balance", body = BalanceView), NotFound))]
async fn balance(item: PathItem<Point>) -> Result<Json<BalanceView>, ApiError> {
    let balance_of = |s: &PointState, user_id: &str| {
        s.knows_user(user_id).then(|| BalanceView {
            user_id: user_id.to_owned(),
            balance: s.balance(user_id),
        })
    };
    item.view("user", balance_of).await
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
    responses((status = 200, description = "The balance after the credit", body = BalanceView), AdminWriteErrors))]
async fn credit(
    ValidPath(user_id): ValidPath<String>,
    admin: Admin<Point>,
    body: Result<ValidJson<Credit>, ApiError>,
) -> Result<Response, ApiError> {
    validate_id("userId", &user_id)?;
    let ValidJson(Credit { points }) = body?;
    let command = PointCommand::Credit {
        user_id: user_id.clone(),
        points,
    };
    let write = AdminWrite {
        causation: format!("admin:credit {user_id}"),
        route: "credit",
        stream: format!("user-{user_id}"),
    };
    let balance_of = move |s: &PointState| BalanceView {
        balance: s.balance(&user_id),
        user_id,
    };
    let written = admin.write(write, command, PointRejection::field).await?;
    written.reply(StatusCode::OK, balance_of).await
}

impl SimpleParticipant for Point {
    fn routes() -> Router<DomainApi<Point>> {
        servicekit::openapi::serve("point", [routes!(balance), routes!(credit)])
    }
}
