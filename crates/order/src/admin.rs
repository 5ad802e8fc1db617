//! Operator routes of the order service: the dead-letter queue (list, inspect, re-drive, discard),
//! the ops alerts feed (`GET /admin/alerts`) and the system's health (`GET /admin/health`).
//!
//! Every re-drive and discard is recorded: as a note on the order's timeline
//! (`note.dlq_redrive`, `note.dlq_discard`) when the entry names an order this service knows,
//! and in the log output always. Re-driving a parked data platform delivery records
//! `DeliveryResumed` first, so the forwarder and the supervisor take the order up again.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use axum::{Json, Router};
use bus::dlq;
use bus::dlq::DlqEntry;
use contract::{Participant, DATAPLATFORM_CONSUMER, OPS_STREAM};
use eventlog::clock::now_ms;
use eventlog::live::{Execution, Live};
use serde::Deserialize;
use servicekit::http::{AdminGate, AdminOnly, ApiError};
use servicekit::openapi::{AdminWriteErrors, NotFound};

use crate::domain::{Order, OrderCommand};
use crate::handler::{execute_or_archived, find_saga, own_meta};

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
    /// Participants' base URLs, for health.
    pub participant_urls: Vec<(Participant, String)>,
    /// HTTP client for health.
    pub client: reqwest::Client,
}

impl AdminGate for AdminState {
    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    router.with_state(state)
}

/// The admin routes, each served and documented from the same `#[utoipa::path]`.
pub(crate) fn admin_routes() -> utoipa_axum::router::OpenApiRouter<AdminState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(show))
        .routes(utoipa_axum::routes!(redrive))
        .routes(utoipa_axum::routes!(discard))
        .routes(utoipa_axum::routes!(alerts))
        .routes(utoipa_axum::routes!(health))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// `GET /admin/dlq`: the dead-letter queue.
#[utoipa::path(get, path = "/admin/dlq", tag = "admin", params(("limit" = Option<usize>, Query, description = "At most this many")), security(("admin" = [])),
    responses((status = 200, description = "`{count, summary, entries}`", body = Object),
        AdminWriteErrors))]
async fn list(
    State(api): State<AdminState>,
    _: AdminOnly,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
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

/// `GET /admin/dlq/{seq}`: one DLQ entry.
// A read, but with an admin write's errors: no token is a 401 here, not a lesser view.
#[utoipa::path(get, path = "/admin/dlq/{seq}", tag = "admin", params(("seq" = u64, Path, description = "The DLQ entry's stream sequence")), security(("admin" = [])),
    responses((status = 200, description = "The entry", body = Object), AdminWriteErrors, NotFound))]
async fn show(
    State(api): State<AdminState>,
    _: AdminOnly,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    let seq = parse_seq(&seq)?;
    let detail = inspect(&api, seq).await?;
    Ok(Json(detail).into_response())
}

#[tracing::instrument(skip_all, fields(dlq_seq = %seq))]
#[utoipa::path(post, path = "/admin/dlq/{seq}/redrive", tag = "admin", params(("seq" = u64, Path, description = "The DLQ entry's stream sequence")), security(("admin" = [])),
    responses((status = 200, description = "Re-driven", body = Object), AdminWriteErrors, NotFound))]
async fn redrive(
    State(api): State<AdminState>,
    _: AdminOnly,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    let seq = parse_seq(&seq)?;
    let detail = inspect(&api, seq).await?;
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
/// `POST /admin/dlq/{seq}/discard`: drops a DLQ entry, recording it.
#[utoipa::path(post, path = "/admin/dlq/{seq}/discard", tag = "admin", params(("seq" = u64, Path, description = "The DLQ entry's stream sequence")), security(("admin" = [])),
    responses((status = 200, description = "Discarded", body = Object), AdminWriteErrors, NotFound))]
async fn discard(
    State(api): State<AdminState>,
    _: AdminOnly,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
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
    let Some(saga) = find_saga(&api.live, order_id)
        .await?
        .filter(|o| o.delivery_parked.is_some())
    else {
        return Ok(false);
    };
    let executed = execute_or_archived(
        &api.live,
        Execution {
            meta: own_meta(&saga, &format!("admin:{NOTE_DLQ_REDRIVE} {}", entry.seq)),
            dedup_key: None,
        },
        OrderCommand::ResumeDelivery {
            order_id,
            now_ms: now_ms(),
        },
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
    let Some(saga) = find_saga(&api.live, order_id).await? else {
        return Ok(false);
    };
    let cause = format!("admin:{kind} {}", entry.seq);
    api.live
        .note(own_meta(&saga, &cause), kind, detail)
        .await
        .map_err(ApiError::internal)?;
    Ok(true)
}

/// DLQ entry `seq` with its message, or a 404 naming it.
async fn inspect(api: &AdminState, seq: u64) -> Result<dlq::DlqDetail, ApiError> {
    dlq::inspect(&api.js, seq)
        .await?
        .ok_or_else(|| missing(seq))
}

/// The DLQ sequence a route on one entry names. Parsed in the route's body, after [`AdminOnly`]:
/// the 401/403 come before a 400 for a bad sequence.
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

/// Alerts a feed returns when the caller names no limit.
pub const ALERTS_LIMIT_DEFAULT: usize = 100;
/// Most alerts one feed returns.
pub const ALERTS_LIMIT_MAX: usize = 1_000;
/// How long fetching one participant's health may take.
pub const HEALTH_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /admin/alerts?limit=`: the newest `ops.alert.>` messages of the OPS stream, newest first,
/// read straight from JetStream by sequence.
#[utoipa::path(get, path = "/admin/alerts", tag = "admin", params(("limit" = Option<usize>, Query, description = "At most this many")), security(("admin" = [])),
    responses((status = 200, description = "The newest alerts, newest first", body = Object),
        AdminWriteErrors))]
async fn alerts(
    State(api): State<AdminState>,
    _: AdminOnly,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = query
        .limit
        .unwrap_or(ALERTS_LIMIT_DEFAULT)
        .clamp(1, ALERTS_LIMIT_MAX);
    let stream = api
        .js
        .get_stream(OPS_STREAM)
        .await
        .map_err(|e| ApiError::internal(format!("get the OPS stream: {e}")))?;
    let info = stream
        .get_info()
        .await
        .map_err(|e| ApiError::internal(format!("OPS stream info: {e}")))?;
    let first = info.state.first_sequence.max(1);
    let mut seq = info.state.last_sequence;
    let mut alerts = Vec::new();
    // The stream holds only alerts today; the bound keeps a stream of other ops.* messages
    // from turning one request into a full scan.
    let mut reads_left = limit.saturating_mul(4);
    while seq >= first && seq > 0 && alerts.len() < limit && reads_left > 0 {
        reads_left -= 1;
        match stream.get_raw_message(seq).await {
            Ok(message) if message.subject.starts_with("ops.alert.") => {
                let body = serde_json::from_slice::<serde_json::Value>(&message.payload)
                    .unwrap_or_else(|_| {
                        serde_json::Value::String(
                            String::from_utf8_lossy(&message.payload).into_owned(),
                        )
                    });
                alerts.push(serde_json::json!({
                    "seq": message.sequence,
                    "subject": message.subject.as_str(),
                    "kind": message.subject.as_str().trim_start_matches("ops.alert."),
                    "timeMs": (message.time.unix_timestamp_nanos() / 1_000_000) as u64,
                    "body": body,
                }));
            }
            // Not an alert, or deleted: skip it.
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) => {}
            Err(err) => return Err(ApiError::internal(format!("read OPS {seq}: {err}"))),
        }
        seq -= 1;
    }
    Ok(Json(serde_json::json!({ "alerts": alerts })).into_response())
}

/// `GET /admin/health`: every service's readiness, log head and outbox backlog (their
/// `/readyz` and `/status`, fetched here), and every durable consumer's lag.
#[utoipa::path(get, path = "/admin/health", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "Every service's readiness and every consumer's lag", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = servicekit::openapi::ErrorBody),
        (status = 403, description = "Admin routes are disabled", body = servicekit::openapi::ErrorBody)))]
async fn health(State(api): State<AdminState>, _: AdminOnly) -> Result<Response, ApiError> {
    let store = api.live.store();
    let nats_up = api.js.client().connection_state() == async_nats::connection::State::Connected;
    let store_up = !api.live.fatal().is_cancelled();
    let mut services = vec![serde_json::json!({
        "name": "order",
        "url": null,
        "ready": nats_up && store_up,
        "readyz": {"nats": nats_up, "store": store_up, "head": store.head()},
        "status": {"domain": "order", "logHead": store.head(), "outboxBacklog": store.outbox_len()},
        "error": null,
    })];
    let fetches = api.participant_urls.iter().map(|(participant, base)| {
        let base = base.trim_end_matches('/').to_owned();
        let client = api.client.clone();
        async move {
            let get = |path: &str| {
                let request = client
                    .get(format!("{base}{path}"))
                    .timeout(HEALTH_FETCH_TIMEOUT);
                async move {
                    let response = request.send().await?;
                    let ok = response.status().is_success();
                    let body = response.json::<serde_json::Value>().await?;
                    Ok::<_, reqwest::Error>((ok, body))
                }
            };
            let (readyz, status) = futures::join!(get("/readyz"), get("/status"));
            let error = readyz.as_ref().err().map(|e| e.to_string());
            let (ready, readyz) = match readyz {
                Ok((ok, body)) => (ok, body),
                Err(_) => (false, serde_json::Value::Null),
            };
            serde_json::json!({
                "name": participant.name(),
                "url": base,
                "ready": ready,
                "readyz": readyz,
                "status": status.ok().map(|(_, body)| body),
                "error": error,
            })
        }
    });
    services.extend(futures::future::join_all(fetches).await);
    let mut consumers = Vec::new();
    for (stream_name, durable) in bus::telemetry::saga_consumers() {
        let info = async {
            let stream = api
                .js
                .get_stream(stream_name)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .consumer_info(durable)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        consumers.push(match info {
            Ok(info) => serde_json::json!({
                "stream": stream_name,
                "durable": durable,
                "numPending": info.num_pending,
                "numAckPending": info.num_ack_pending,
                "numRedelivered": info.num_redelivered,
                "error": null,
            }),
            Err(error) => serde_json::json!({
                "stream": stream_name,
                "durable": durable,
                "numPending": null,
                "numAckPending": null,
                "numRedelivered": null,
                "error": error,
            }),
        });
    }
    Ok(Json(serde_json::json!({ "services": services, "consumers": consumers })).into_response())
}
