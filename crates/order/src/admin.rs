//! Operator routes of the order service: the dead-letter queue (list, inspect, re-drive, discard).
//!
//! Every re-drive and discard is recorded: as a note on the order's timeline
//! (`note.dlq_redrive`, `note.dlq_discard`) when the entry names an order this service knows,
//! and in the log output always. Re-driving a parked data platform delivery records
//! `DeliveryResumed` first, so the forwarder and the supervisor take the order up again.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bus::dlq;
use bus::dlq::DlqEntry;
use contract::DATAPLATFORM_CONSUMER;
use eventlog::clock::now_ms;
use eventlog::live::{Execution, Live};
use serde::Deserialize;
use servicekit::http::{check_admin, ApiError};

use crate::domain::{Order, OrderCommand};
use crate::handler::{outbox_for, own_meta};

/// Timeline note kind of a re-drive.
pub const NOTE_DLQ_REDRIVE: &str = "dlq_redrive";
/// Timeline note kind of a discard.
pub const NOTE_DLQ_DISCARD: &str = "dlq_discard";

/// What the admin routes share.
#[derive(Clone)]
pub struct AdminState {
    /// The order sagas, for timeline notes.
    pub live: Live<Order>,
    /// JetStream, where the DLQ lives.
    pub js: async_nats::jetstream::Context,
    /// Admin bearer token; without it the routes answer 403.
    pub admin_token: Option<String>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/dlq", get(list))
        .route("/admin/dlq/{seq}", get(show))
        .route("/admin/dlq/{seq}/redrive", post(redrive))
        .route("/admin/dlq/{seq}/discard", post(discard))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    State(api): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let limit = query.limit.unwrap_or(dlq::LIST_LIMIT_DEFAULT);
    let entries = dlq::list(&api.js, limit).await?;
    let summary = dlq::summary(&entries);
    Ok(Json(serde_json::json!({
        "count": entries.len(),
        "summary": summary,
        "entries": entries,
    }))
    .into_response())
}

async fn show(
    State(api): State<AdminState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let seq = parse_seq(&seq)?;
    let detail = dlq::inspect(&api.js, seq)
        .await?
        .ok_or_else(|| missing(seq))?;
    Ok(Json(detail).into_response())
}

#[tracing::instrument(skip_all, fields(dlq_seq = %seq))]
async fn redrive(
    State(api): State<AdminState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let seq = parse_seq(&seq)?;
    let detail = dlq::inspect(&api.js, seq)
        .await?
        .ok_or_else(|| missing(seq))?;
    if let Some(why) = dlq::not_redrivable(&detail.entry) {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            format!("DLQ entry {seq} cannot be re-driven: {why}"),
        ));
    }
    // Resume before publishing, so the forwarder never sees the copy while the order is parked.
    let resumed = resume_parked_delivery(&api, &detail.entry).await?;
    // A concurrent re-drive or discard may have taken it since: that is a 404 too.
    let redriven = dlq::redrive(&api.js, seq)
        .await?
        .ok_or_else(|| missing(seq))?;
    let detail = format!(
        "DLQ entry {seq} ({}, {}: {}) re-published on {} as {}",
        redriven.entry.consumer,
        redriven.entry.original_subject,
        redriven.entry.reason,
        redriven.subject,
        redriven.msg_id
    );
    let noted = record(&api, &redriven.entry, NOTE_DLQ_REDRIVE, detail).await?;
    Ok(Json(serde_json::json!({
        "seq": seq,
        "action": "redrive",
        "subject": redriven.subject,
        "msgId": redriven.msg_id,
        "duplicate": redriven.duplicate,
        "orderId": redriven.entry.order_id,
        "noted": noted,
        "deliveryResumed": resumed,
        "entry": redriven.entry,
    }))
    .into_response())
}

#[tracing::instrument(skip_all, fields(dlq_seq = %seq))]
async fn discard(
    State(api): State<AdminState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&headers, api.admin_token.as_deref())?;
    let seq = parse_seq(&seq)?;
    let entry = dlq::discard(&api.js, seq)
        .await?
        .ok_or_else(|| missing(seq))?;
    let detail = format!(
        "DLQ entry {seq} ({}, {}: {}) discarded by an operator",
        entry.consumer, entry.original_subject, entry.reason
    );
    let noted = record(&api, &entry, NOTE_DLQ_DISCARD, detail).await?;
    Ok(Json(serde_json::json!({
        "seq": seq,
        "action": "discard",
        "orderId": entry.order_id,
        "noted": noted,
        "entry": entry,
    }))
    .into_response())
}

/// Records `DeliveryResumed` when the entry is a parked data platform delivery of a known
/// order; returns whether it did.
async fn resume_parked_delivery(api: &AdminState, entry: &DlqEntry) -> Result<bool, ApiError> {
    if entry.consumer != DATAPLATFORM_CONSUMER {
        return Ok(false);
    }
    let Some(order_id) = entry.order_id else {
        return Ok(false);
    };
    let Some(saga) = api
        .live
        .read(|s| {
            s.orders
                .get(&order_id)
                .filter(|o| o.delivery_parked.is_some())
                .cloned()
        })
        .await?
    else {
        return Ok(false);
    };
    let executed = api
        .live
        .execute(
            Execution {
                meta: own_meta(&saga, &format!("admin:{NOTE_DLQ_REDRIVE} {}", entry.seq)),
                dedup_key: None,
            },
            OrderCommand::ResumeDelivery {
                order_id,
                now_ms: now_ms(),
            },
            outbox_for,
        )
        .await
        .map_err(ApiError::internal)?;
    // Refused only when a concurrent re-drive resumed it already.
    Ok(executed.is_ok())
}

/// Records an operator action: a timeline note when the entry's order is known here, a log
/// line always. Returns whether a note was written.
async fn record(
    api: &AdminState,
    entry: &DlqEntry,
    kind: &str,
    detail: String,
) -> Result<bool, ApiError> {
    tracing::info!(
        dlq_seq = entry.seq,
        consumer = %entry.consumer,
        subject = %entry.original_subject,
        order_id = ?entry.order_id,
        kind,
        %detail,
        "DLQ operator action"
    );
    let Some(order_id) = entry.order_id else {
        return Ok(false);
    };
    let Some(saga) = api.live.read(|s| s.orders.get(&order_id).cloned()).await? else {
        return Ok(false);
    };
    let cause = format!("admin:{kind} {}", entry.seq);
    api.live
        .note(own_meta(&saga, &cause), kind, detail)
        .await
        .map_err(ApiError::internal)?;
    Ok(true)
}

fn parse_seq(text: &str) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(seq) if seq > 0 => Ok(seq),
        _ => Err(ApiError::bad_field(
            "seq",
            "must be a DLQ sequence (a positive integer)",
        )),
    }
}

fn missing(seq: u64) -> ApiError {
    ApiError::not_found(format!(
        "no DLQ entry {seq} (never existed, or already re-driven or discarded)"
    ))
}
