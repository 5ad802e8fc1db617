//! Coupon's HTTP API: coupon state, and admin issuing.

use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use servicekit::http::{
    Admin, AdminWrite, ApiError, DomainApi, Id, PathItem, RequestBody, ValidJson,
};
use servicekit::offline::parse_time_ms;
use servicekit::openapi::{AdminWriteErrors, NotFound};
use servicekit::participant::SimpleParticipant;
use utoipa_axum::routes;

use crate::domain::{
    Coupon, CouponCommand, CouponEntry, CouponRejection, CouponState, CouponStatus,
};

/// `GET /coupons/{couponId}` and the issue's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CouponView {
    coupon_id: String,
    user_id: Option<String>,
    discount: u64,
    /// `AVAILABLE` or `USED`.
    #[schema(value_type = String)]
    status: CouponStatus,
    used_by: Option<uuid::Uuid>,
    expires_at_ms: Option<u64>,
}

fn coupon_json(entry: &CouponEntry) -> CouponView {
    CouponView {
        coupon_id: entry.coupon_id.clone(),
        user_id: entry.user_id.clone(),
        discount: entry.discount,
        status: entry.status(),
        used_by: entry.used_by,
        expires_at_ms: entry.expires_at_ms,
    }
}

/// `POST /coupons` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueCoupon {
    #[schema(value_type = String)]
    coupon_id: Id,
    /// The only user who may use it; absent or `null` = anyone.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    user_id: Option<Id>,
    discount: u64,
    /// Absent or `null` = never.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    expires_at: Option<TimeMs>,
}

impl RequestBody for IssueCoupon {}

/// A time in a body: ms since the Unix epoch, or an RFC 3339 string.
#[derive(Debug, Clone, Copy)]
struct TimeMs(u64);

impl<'de> Deserialize<'de> for TimeMs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TimeMs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 string, ms since epoch, or null")
            }
            fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<TimeMs, E> {
                Ok(TimeMs(ms))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TimeMs, E> {
                parse_time_ms(text).map(TimeMs).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `GET /coupons/{couponId}`: a coupon's state.
#[utoipa::path(get, path = "/coupons/{coupon_id}", tag = "coupon",
    params(("coupon_id" = String, Path, description = "The coupon's id")),
    responses((status = 200, description = "The coupon", body = CouponView), NotFound))]
async fn coupon(item: PathItem<Coupon>) -> Result<Json<CouponView>, ApiError> {
    item.view("coupon", |s, id| s.coupon(id).map(coupon_json))
        .await
}

/// `POST /coupons` (admin): issues a coupon, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/coupons", tag = "coupon",
    params(("Idempotency-Key" = Option<String>, Header, description = "Applies a retried write once")),
    request_body = IssueCoupon,
    security(("admin" = [])),
    responses((status = 201, description = "The issued coupon", body = CouponView), AdminWriteErrors))]
async fn issue(
    admin: Admin<Coupon>,
    body: Result<ValidJson<IssueCoupon>, ApiError>,
) -> Result<Response, ApiError> {
    let ValidJson(body) = body?;
    let coupon_id = body.coupon_id.into_inner();
    let write = AdminWrite {
        causation: format!("admin:issue {coupon_id}"),
        // A retried issue with the same key is answered with the coupon it issued.
        route: "coupons",
        stream: format!("coupon-{coupon_id}"),
    };
    let command = CouponCommand::Issue {
        coupon_id: coupon_id.clone(),
        user_id: body.user_id.map(Id::into_inner),
        discount: body.discount,
        expires_at_ms: body.expires_at.map(|t| t.0),
    };
    let issued = move |s: &CouponState| s.coupon(&coupon_id).map(coupon_json);
    let written = admin.write(write, command, CouponRejection::field).await?;
    written.reply(StatusCode::CREATED, issued).await
}

impl SimpleParticipant for Coupon {
    fn routes() -> Router<DomainApi<Coupon>> {
        servicekit::openapi::serve("coupon", [routes!(coupon), routes!(issue)])
    }
}
