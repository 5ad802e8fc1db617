//! The order service's HTTP API: placing orders, reading them, and their saga timelines.

use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use contract::{OrderLine, OrderPlaced, Participant};
use eventlog::clock::now_ms;
use eventlog::live::{render_record, Executed, Execution, Live};
use eventlog::record::EventMeta;
use serde::{Deserialize, Serialize};
use servicekit::http::{
    idempotency_key, parse_json, AdminGate, AdminOnly, ApiError, Bounded, BoundedVec, Id,
    MaybeAdmin, Object, OrderIdPath, RequestBody, ValidJson, ValidPath,
};
use servicekit::openapi::{AdminReadErrors, AdminWriteErrors, NotFound};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Order, OrderCommand, OrderRejection, OrderSaga, OrderStatus};
use crate::handler::{execute_or_archived, find_saga, outbox_for, own_meta};
use crate::waiters::WAIT_RECHECK;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QTY: u64 = 10_000;
/// Largest amount or unit price, in minor units.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// Largest points deduction.
pub const MAX_POINTS: u64 = 1_000_000_000;
/// Longest id (user, SKU, coupon, idempotency key), in bytes: the one limit every service checks.
pub const MAX_ID_LEN: usize = servicekit::http::MAX_ID_BYTES;
/// Longest `?wait=` accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default and largest `limit` of a listing.
pub const LIST_LIMIT_MAX: usize = 1_000;
/// How long fetching a participant's log for a timeline may take.
pub const TIMELINE_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The order sagas.
    pub live: Live<Order>,
    /// Saga deadline for new orders.
    pub saga_deadline: Duration,
    /// Participants' base URLs for timelines.
    pub participant_urls: Vec<(Participant, String)>,
    /// HTTP client for timelines.
    pub client: reqwest::Client,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// `?wait=` requests, woken by the outcome handler when their order changes.
    pub waiters: crate::waiters::OrderWaiters,
}

impl AdminGate for ApiState {
    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }
}

/// The order service's routes.
pub fn router(state: ApiState) -> Router {
    let (router, _) = api_routes().split_for_parts();
    router
        // Before the layer, which hides the method routers from the app's own 405 fallback.
        .method_not_allowed_fallback(servicekit::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The order service's own routes, each served and documented from the same `#[utoipa::path]`.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard))
        .routes(routes!(console_js))
        .routes(routes!(console_css))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_timeline))
        .routes(routes!(retry_compensation))
        .routes(routes!(trace_timeline))
        .routes(routes!(stats))
}

/// The order service's own paths (admin routes included) in its OpenAPI document: the same
/// `#[utoipa::path]`s [`router`] and [`crate::admin::router`] serve.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    doc.merge(crate::admin::admin_routes().into_openapi());
    doc
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Buyer.
    pub user_id: String,
    /// Lines.
    pub items: Vec<OrderLine>,
    /// Coupon.
    pub coupon_id: Option<String>,
    /// Points to use.
    pub points: u64,
    /// Amount to charge.
    pub amount: u64,
}

/// The `POST /orders` body as the contract has it; bounds and ids are checked as it is
/// deserialized, so an error names the field's path (`items[0].qty`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// Buyer.
    #[schema(value_type = String)]
    pub user_id: Id,
    /// Lines.
    #[schema(value_type = Vec<LineRequest>, min_items = 1, max_items = 100)]
    pub items: BoundedVec<Object<LineRequest>, 1, MAX_LINES>,
    /// Coupon; absent or `null` is none.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub coupon_id: Option<Id>,
    /// Points to use; absent or `null` is 0.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub points: Option<Bounded<0, MAX_POINTS>>,
    /// Amount to charge.
    #[schema(value_type = u64, minimum = 1)]
    pub amount: Bounded<1, MAX_AMOUNT>,
}

impl RequestBody for PlaceOrderRequest {}

/// One line of a [`PlaceOrderRequest`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineRequest {
    /// SKU.
    #[schema(value_type = String)]
    pub sku: Id,
    /// Quantity.
    #[schema(value_type = u64, minimum = 1)]
    pub qty: Bounded<1, MAX_QTY>,
    /// Unit price, in minor units.
    #[schema(value_type = u64)]
    pub price: Bounded<0, MAX_AMOUNT>,
}

impl From<PlaceOrderRequest> for NewOrder {
    fn from(request: PlaceOrderRequest) -> Self {
        Self {
            user_id: request.user_id.into_inner(),
            items: request
                .items
                .0
                .into_iter()
                .map(|Object(line)| OrderLine {
                    sku: line.sku.into_inner(),
                    qty: u32::try_from(line.qty.0).expect("MAX_QTY fits in u32"),
                    price: line.price.0,
                })
                .collect(),
            coupon_id: request.coupon_id.map(Id::into_inner),
            points: request.points.map_or(0, |p| p.0),
            amount: request.amount.0,
        }
    }
}

/// Parses and validates a `POST /orders` body; the error names the offending field.
pub fn parse_order_request(body: &[u8]) -> Result<NewOrder, ApiError> {
    parse_json::<PlaceOrderRequest>(body).map(NewOrder::from)
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

/// A query string that does not deserialize (`?limit=many`) as the API's JSON 400.
fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_field("query", rejection.body_text())
}

/// An order as `GET /orders/{orderId}` and the listing show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView<'a> {
    order_id: Uuid,
    trace_id: &'a str,
    status: &'static str,
    user_id: &'a str,
    items: &'a [OrderLine],
    coupon_id: Option<&'a str>,
    points: u64,
    amount: u64,
    required: &'a [Participant],
    outcomes: &'a std::collections::BTreeMap<Participant, crate::domain::ParticipantProgress>,
    waiting_for: Vec<Participant>,
    failure_reason: Option<&'a str>,
    attention_reason: Option<&'a str>,
    redrives: u32,
    data_platform_delivered: bool,
    placed_at_ms: u64,
    deadline_ms: u64,
    updated_at_ms: u64,
}

fn order_json(saga: &OrderSaga) -> OrderView<'_> {
    OrderView {
        order_id: saga.order.order_id,
        trace_id: &saga.trace_id,
        status: saga.status.as_str(),
        user_id: &saga.order.user_id,
        items: &saga.order.items,
        coupon_id: saga.order.coupon_id.as_deref(),
        points: saga.order.points,
        amount: saga.order.amount,
        required: &saga.required,
        outcomes: &saga.outcomes,
        waiting_for: saga.waiting_for(),
        failure_reason: saga.failure_reason.as_deref(),
        attention_reason: saga.attention_reason.as_deref(),
        redrives: saga.redrives,
        data_platform_delivered: saga.data_platform_delivered,
        placed_at_ms: saga.order.placed_at_ms,
        deadline_ms: saga.order.deadline_ms,
        updated_at_ms: saga.updated_at_ms,
    }
}

/// `POST /orders`: places an order (202), or with `?wait=` answers once it is terminal.
#[utoipa::path(post, path = "/orders", tag = "order",
    params(("wait" = Option<String>, Query, description = "How long to wait for the outcome, e.g. `10s`"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried order is placed once"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue")),
    request_body = PlaceOrderRequest,
    responses(
        (status = 200, description = "The order, terminal (with `?wait=`)", body = Object),
        (status = 202, description = "`{orderId, traceId, status}`", body = Object),
        (status = 400, description = "Bad input, naming the field", body = servicekit::openapi::ErrorBody),
        (status = 409, description = "Conflict", body = servicekit::openapi::ErrorBody)))]
async fn place_order(
    State(api): State<ApiState>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<ValidJson<PlaceOrderRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let wait = match query.wait.as_deref() {
        None => None,
        Some(text) => {
            let wait: Duration = humantime::parse_duration(text)
                .map_err(|e| ApiError::bad_field("wait", format!("{text:?}: {e}")))?;
            Some(wait.min(MAX_WAIT))
        }
    };
    let idempotency_key = idempotency_key(&headers)?;
    let request = NewOrder::from(body?.0);
    let now = now_ms();
    let order_id = Uuid::now_v7();
    // An incoming W3C traceparent is continued: the order's trace is the caller's.
    let trace_id = servicekit::observe::request_trace_id(&headers);
    let order = OrderPlaced {
        order_id,
        user_id: request.user_id,
        items: request.items,
        coupon_id: request.coupon_id,
        points: request.points,
        amount: request.amount,
        placed_at_ms: now,
        deadline_ms: now + api.saga_deadline.as_millis() as u64,
    };
    let meta = EventMeta {
        correlation_id: order_id.to_string(),
        trace_id: trace_id.clone(),
        traceparent: bus::telemetry::current_traceparent(&trace_id),
        causation_id: format!(
            "http:POST /orders{}",
            idempotency_key
                .as_deref()
                .map(|k| format!(" key={k}"))
                .unwrap_or_default()
        ),
    };
    let execution = Execution {
        meta,
        // A key is placed once: its dedup record answers a reuse, even long after its order
        // settled and left memory, and a concurrent reuse waits (Busy) until it is durable.
        dedup_key: idempotency_key
            .as_deref()
            .map(crate::archive::placement_dedup_key),
    };
    let command = OrderCommand::Place {
        order,
        trace_id,
        idempotency_key: idempotency_key.clone(),
    };
    let order_id = place(
        &api.live,
        execution,
        command,
        order_id,
        idempotency_key.as_deref(),
    )
    .await?;
    // The request span (see servicekit::observe::track_http) names the order from here on.
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let deadline = wait.map(|w| Instant::now() + w);
    // Registered before the first read, so a change between the read and the wait still wakes.
    let waiter = wait.map(|_| api.waiters.watch(order_id));
    loop {
        let saga = find_saga(&api.live, order_id)
            .await?
            .ok_or_else(|| ApiError::internal("placed order vanished"))?;
        let terminal = saga.status.is_terminal() || saga.status == OrderStatus::NeedsAttention;
        let waited_out = deadline.is_none_or(|d| Instant::now() >= d);
        if terminal && deadline.is_some() {
            return Ok((StatusCode::OK, Json(summary(&saga))).into_response());
        }
        if waited_out {
            return Ok((StatusCode::ACCEPTED, Json(summary(&saga))).into_response());
        }
        if let (Some(waiter), Some(deadline)) = (&waiter, deadline) {
            let recheck = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(recheck.min(WAIT_RECHECK), waiter.changed()).await;
        }
    }
}

/// How long a placement waits for another request with the same `Idempotency-Key` to be
/// durable before it answers 409.
pub const PLACE_BUSY_WAIT: Duration = Duration::from_secs(30);
/// How often a placement looks again at a key another request is writing.
const PLACE_BUSY_RECHECK: Duration = Duration::from_millis(5);

/// Places an order; with an `Idempotency-Key` placed before, answers the order it placed.
async fn place(
    live: &Live<Order>,
    execution: Execution,
    command: OrderCommand,
    order_id: Uuid,
    idempotency_key: Option<&str>,
) -> Result<Uuid, ApiError> {
    if let Some(key) = idempotency_key {
        // A key of an order placed before placements carried dedup records (its index entry
        // comes from `archive::reindex`); one read, answered once durable.
        if let Some(placed) = crate::archive::order_by_idempotency_key(live.store(), key)? {
            live.read(|_| ()).await?;
            return Ok(placed);
        }
    }
    let gave_up = Instant::now() + PLACE_BUSY_WAIT;
    let executed = loop {
        match live
            .execute(execution.clone(), command.clone(), outbox_for)
            .await
        {
            Err(eventlog::Error::Busy(_)) if Instant::now() < gave_up => {
                tokio::time::sleep(PLACE_BUSY_RECHECK).await;
            }
            other => break other?,
        }
    };
    match executed {
        Ok(Executed::Committed { .. }) => Ok(order_id),
        // The key's dedup record is durable, and its index entry came in the same commit.
        Ok(Executed::Duplicate(_)) => {
            let key =
                idempotency_key.ok_or_else(|| ApiError::internal("a duplicate without key"))?;
            crate::archive::order_by_idempotency_key(live.store(), key)?
                .ok_or_else(|| ApiError::internal("idempotency key without its order"))
        }
        // The same Idempotency-Key answers with the order it placed the first time (orders
        // placed before keys had dedup records are still found in the live state).
        Err(OrderRejection::IdempotencyKeyReused { order_id, .. }) => Ok(order_id),
        Err(other) => Err(ApiError::client(StatusCode::CONFLICT, other.to_string())),
    }
}

/// `POST /orders`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary<'a> {
    order_id: Uuid,
    trace_id: &'a str,
    status: &'static str,
    failure_reason: Option<&'a str>,
}

fn summary(saga: &OrderSaga) -> OrderSummary<'_> {
    OrderSummary {
        order_id: saga.order.order_id,
        trace_id: &saga.trace_id,
        status: saga.status.as_str(),
        failure_reason: saga.failure_reason.as_deref(),
    }
}

/// `GET /orders/{orderId}`: an order's saga state.
#[utoipa::path(get, path = "/orders/{order_id}", tag = "order",
    params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    responses(
        (status = 200, description = "The order", body = Object),
        (status = 400, description = "Bad input, naming the field", body = servicekit::openapi::ErrorBody),
        NotFound))]
async fn get_order(
    State(api): State<ApiState>,
    OrderIdPath(order_id): OrderIdPath,
) -> Result<Response, ApiError> {
    let saga = find_saga(&api.live, order_id).await?;
    match saga {
        Some(saga) => Ok(Json(order_json(&saga)).into_response()),
        None => Err(ApiError::not_found(format!("no order {order_id}"))),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Default `limit` of a listing.
pub const LIST_LIMIT_DEFAULT: usize = 100;

/// Which orders a listing returns: every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Only this buyer.
    pub user_id: Option<String>,
    /// Placed at or after (ms since the Unix epoch).
    pub from_ms: Option<u64>,
    /// Placed before (ms since the Unix epoch).
    pub to_ms: Option<u64>,
}

impl OrderFilter {
    /// Whether an order with these fields passes the filter.
    pub fn matches(&self, status: OrderStatus, user_id: &str, placed_at_ms: u64) -> bool {
        self.status.is_none_or(|s| s == status)
            && self.user_id.as_deref().is_none_or(|u| u == user_id)
            && self.from_ms.is_none_or(|from| placed_at_ms >= from)
            && self.to_ms.is_none_or(|to| placed_at_ms < to)
    }
}

/// Where a page of a newest-first listing ends: the last order it returned.
///
/// Orders are listed by `(placedAtMs, orderId)` descending, so the next page is everything
/// strictly below the cursor; orders placed meanwhile never shift a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last order's placement time.
    pub placed_at_ms: u64,
    /// The last order's id.
    pub order_id: Uuid,
}

impl Cursor {
    /// The opaque text form clients pass back as `?cursor=`.
    pub fn encode(&self) -> String {
        format!("{:x}-{}", self.placed_at_ms, self.order_id.simple())
    }

    /// Parses [`Cursor::encode`]'s output; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('-')?;
        if ms.is_empty() || ms.len() > 16 || id.len() != 32 {
            return None;
        }
        Some(Self {
            placed_at_ms: u64::from_str_radix(ms, 16).ok()?,
            order_id: Uuid::try_parse(id).ok()?,
        })
    }

    /// Whether an order comes after this cursor in the newest-first order.
    pub fn precedes(&self, placed_at_ms: u64, order_id: Uuid) -> bool {
        (placed_at_ms, order_id) < (self.placed_at_ms, self.order_id)
    }
}

/// Parses a time bound: ms since the Unix epoch or RFC 3339.
pub fn parse_time_bound(field: &str, text: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| ApiError::bad_field(field, "ms since the Unix epoch or an RFC 3339 time"))
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.trim().is_empty())
}

fn list_filter(query: &ListQuery) -> Result<(OrderFilter, Option<Cursor>, usize), ApiError> {
    let status = match non_empty(query.status.as_deref()) {
        None => None,
        Some(text) => Some(OrderStatus::parse(text).ok_or_else(|| {
            ApiError::bad_field(
                "status",
                "one of PENDING, COMPLETED, COMPENSATING, FAILED, NEEDS_ATTENTION",
            )
        })?),
    };
    let user_id = non_empty(query.user_id.as_deref()).map(str::to_owned);
    let from_ms = non_empty(query.from.as_deref())
        .map(|t| parse_time_bound("from", t))
        .transpose()?;
    let to_ms = non_empty(query.to.as_deref())
        .map(|t| parse_time_bound("to", t))
        .transpose()?;
    let cursor = match non_empty(query.cursor.as_deref()) {
        None => None,
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ApiError::bad_field("cursor", "not a cursor this service handed out")
        })?),
    };
    let limit = query
        .limit
        .unwrap_or(LIST_LIMIT_DEFAULT)
        .clamp(1, LIST_LIMIT_MAX);
    let filter = OrderFilter {
        status,
        user_id,
        from_ms,
        to_ms,
    };
    Ok((filter, cursor, limit))
}

/// `GET /orders`: newest first, filtered, one page at a time; `nextCursor` is null on the last
/// page. Read from the log's indexes (`crate::archive`), or for PENDING, COMPENSATING and
/// NEEDS_ATTENTION from the live state, which holds every such order: never a scan of history.
#[utoipa::path(get, path = "/orders", tag = "order",
    params(("status" = Option<String>, Query, description = "Only orders in this status"),
        ("userId" = Option<String>, Query, description = "Only this user's orders"),
        ("from" = Option<String>, Query, description = "Placed at or after (RFC 3339 or ms)"),
        ("to" = Option<String>, Query, description = "Placed before (RFC 3339 or ms)"),
        ("cursor" = Option<String>, Query, description = "The previous page's `nextCursor`"),
        ("limit" = Option<usize>, Query, description = "Page size")),
    responses(
        (status = 200, description = "`{orders, nextCursor}`", body = Object),
        (status = 400, description = "Bad input, naming the field", body = servicekit::openapi::ErrorBody)))]
async fn list_orders(
    State(api): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let (filter, cursor, limit) = list_filter(&query)?;
    let before = cursor.map(|c| (c.placed_at_ms, c.order_id));
    let listing = crate::archive::Listing::new(filter.status, filter.user_id.as_deref());
    // One more than a page says whether another page follows.
    let mut positions = match &listing {
        Some(listing) => listing.page(
            api.live.store(),
            before,
            filter.from_ms,
            filter.to_ms,
            limit + 1,
        )?,
        // A status orders leave again: every such order is in the live state.
        None => {
            api.live
                .read(|s| {
                    s.orders
                        .values()
                        .filter(|o| {
                            filter.matches(o.status, &o.order.user_id, o.order.placed_at_ms)
                        })
                        .map(|o| (o.order.placed_at_ms, o.order.order_id))
                        .filter(|p| before.is_none_or(|b| *p < b))
                        .collect::<Vec<_>>()
                })
                .await?
        }
    };
    positions.sort_unstable_by(|a, b| b.cmp(a));
    let more = positions.len() > limit;
    positions.truncate(limit);
    let next = more
        .then(|| positions.last())
        .flatten()
        .map(|(ms, id)| Cursor {
            placed_at_ms: *ms,
            order_id: *id,
        });
    // Lookups only under the lock; settled orders are rebuilt from the log outside it.
    let ids: Vec<Uuid> = positions.iter().map(|(_, id)| *id).collect();
    let live = api
        .live
        .read(|s| {
            ids.iter()
                .map(|id| s.orders.get(id).cloned())
                .collect::<Vec<_>>()
        })
        .await?;
    let mut sagas = Vec::with_capacity(ids.len());
    for (id, saga) in ids.iter().zip(live) {
        match saga {
            Some(saga) => sagas.push(saga),
            None => sagas.extend(crate::archive::archived_saga(api.live.store(), *id)?),
        }
    }
    // Entries and records read from disk may be of commits not yet flushed: wait for them.
    api.live.read(|_| ()).await?;
    let orders = sagas
        .iter()
        .map(|saga| serde_json::to_value(order_json(saga)))
        .collect::<Result<Vec<_>, _>>();
    let orders = orders.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "orders": orders,
        "nextCursor": next.map(|c| c.encode()),
    }))
    .into_response())
}

/// Orders per status.
#[utoipa::path(get, path = "/stats", tag = "order",
    responses((status = 200, description = "`{orders: {STATUS: count}}`", body = Object)))]
async fn stats(State(api): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let counts = api
        .live
        .read(|s| {
            let mut counts = serde_json::Map::new();
            for status in OrderStatus::ALL {
                counts.insert(
                    status.as_str().to_owned(),
                    s.status_counts.get(status).into(),
                );
            }
            counts
        })
        .await?;
    Ok(Json(serde_json::json!({ "orders": counts })))
}

/// `GET /orders/{orderId}/timeline`: every event of the saga across all domains, in order.
#[utoipa::path(get, path = "/orders/{order_id}/timeline", tag = "order",
    params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "The timeline (full payloads for the admin)", body = Object),
        AdminReadErrors))]
async fn order_timeline(
    State(api): State<ApiState>,
    MaybeAdmin(admin): MaybeAdmin,
    OrderIdPath(order_id): OrderIdPath,
) -> Result<Response, ApiError> {
    timeline(&api, order_id, admin).await
}

/// `GET /traces/{traceId}`: the timeline of the order with this trace id.
#[utoipa::path(get, path = "/traces/{trace_id}", tag = "order",
    params(("trace_id" = String, Path, description = "The order's trace id")),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "The timeline (full payloads for the admin)", body = Object),
        AdminReadErrors))]
async fn trace_timeline(
    State(api): State<ApiState>,
    ValidPath(trace_id): ValidPath<String>,
    MaybeAdmin(admin): MaybeAdmin,
) -> Result<Response, ApiError> {
    let live = api
        .live
        .read(|s| s.by_trace.get(&trace_id).copied())
        .await?;
    let order_id = match live {
        Some(order_id) => Some(order_id),
        None => crate::archive::order_by_trace(api.live.store(), &trace_id)?,
    }
    .ok_or_else(|| ApiError::not_found(format!("no order with trace {trace_id}")))?;
    timeline(&api, order_id, admin).await
}

/// Payload fields only an admin may read: a PG authorization is what cancels a charge.
pub const SECRET_FIELDS: [&str; 1] = ["authorization"];

/// Replaces every [`SECRET_FIELDS`] value in a rendered record, at any depth.
fn redact_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) && !inner.is_null() {
                    *inner = serde_json::Value::String("<redacted>".into());
                } else {
                    redact_secrets(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// Every step of the saga across all five domains, from each domain's own log, in time order.
/// Participants' logs are admin routes and are fetched with the admin token; their secrets are
/// shown only when the reader is an admin too.
async fn timeline(api: &ApiState, order_id: Uuid, admin: bool) -> Result<Response, ApiError> {
    let saga = find_saga(&api.live, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id}")))?;
    let mut steps: Vec<serde_json::Value> = api
        .live
        .store()
        .read_correlated(&order_id.to_string())?
        .iter()
        .map(|r| render_record::<Order>("order", r))
        .collect();
    let mut unreachable = Vec::new();
    let fetches = api.participant_urls.iter().map(|(participant, base)| {
        let url = format!("{}/log/{order_id}", base.trim_end_matches('/'));
        let client = api.client.clone();
        let admin_token = api.admin_token.clone();
        async move {
            let result = async {
                // A participant's log is an admin route: it holds full records.
                let mut request = client.get(&url).timeout(TIMELINE_FETCH_TIMEOUT);
                if let Some(token) = &admin_token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await?.error_for_status()?;
                response.json::<Vec<serde_json::Value>>().await
            }
            .await;
            (*participant, result)
        }
    });
    for (participant, result) in futures::future::join_all(fetches).await {
        match result {
            Ok(records) => steps.extend(records),
            Err(err) => unreachable
                .push(serde_json::json!({"domain": participant.name(), "error": err.to_string()})),
        }
    }
    if !admin {
        steps.iter_mut().for_each(redact_secrets);
    }
    steps.sort_by_key(|s| {
        (
            s.get("recordedAtMs").and_then(|v| v.as_u64()).unwrap_or(0),
            s.get("domain")
                .and_then(|v| v.as_str())
                .map(domain_rank)
                .unwrap_or(9),
            s.get("globalSeq").and_then(|v| v.as_u64()).unwrap_or(0),
        )
    });
    Ok(Json(serde_json::json!({
        "orderId": order_id,
        "traceId": saga.trace_id,
        "status": saga.status.as_str(),
        "steps": steps,
        "unreachable": unreachable,
    }))
    .into_response())
}

fn domain_rank(domain: &str) -> u8 {
    match domain {
        "order" => 0,
        "payment" => 1,
        "stock" => 2,
        "coupon" => 3,
        "point" => 4,
        _ => 5,
    }
}

/// `POST /orders/{orderId}/retry-compensation` (admin): compensates a stuck order again.
#[utoipa::path(post, path = "/orders/{order_id}/retry-compensation", tag = "admin",
    params(("order_id" = String, Path, description = "The order's id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 202, description = "`{orderId, status: COMPENSATING}`", body = Object),
        AdminWriteErrors,
        NotFound,
        (status = 409, description = "Conflict", body = servicekit::openapi::ErrorBody)))]
async fn retry_compensation(
    State(api): State<ApiState>,
    _: AdminOnly,
    OrderIdPath(order_id): OrderIdPath,
) -> Result<Response, ApiError> {
    let saga = find_saga(&api.live, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id}")))?;
    let executed = execute_or_archived(
        &api.live,
        Execution {
            meta: own_meta(&saga, "admin:retry-compensation"),
            dedup_key: None,
        },
        OrderCommand::RetryCompensation {
            order_id,
            now_ms: now_ms(),
        },
    )
    .await?;
    match executed {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"orderId": order_id, "status": "COMPENSATING"})),
        )
            .into_response()),
        Err(rejection) => Err(ApiError::client(
            StatusCode::CONFLICT,
            rejection.to_string(),
        )),
    }
}

/// `GET /`: the operator console.
#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The console's page", body = String, content_type = "text/html")))]
async fn dashboard() -> Html<&'static str> {
    Html(include_str!("console/index.html"))
}

/// `GET /console.js`: the console's script.
#[utoipa::path(get, path = "/console.js", tag = "console",
    responses((status = 200, description = "The console's script", body = String, content_type = "text/javascript")))]
async fn console_js() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("console/console.js"),
    )
}

/// `GET /console.css`: the console's style sheet.
#[utoipa::path(get, path = "/console.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", body = String, content_type = "text/css")))]
async fn console_css() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console/console.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> serde_json::Value {
        serde_json::json!({"userId": "u1", "items": [{"sku": "sku-1", "qty": 2, "price": 500}], "couponId": null, "points": 0, "amount": 1000})
    }

    #[test]
    fn a_valid_request_parses() {
        let parsed = parse_order_request(valid().to_string().as_bytes()).expect("valid");
        assert_eq!(parsed.user_id, "u1");
        assert_eq!(parsed.items[0].qty, 2);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            ("userId", serde_json::json!({"userId": 5})),
            ("items", serde_json::json!({"items": []})),
            (
                "items[0].qty",
                serde_json::json!({"items": [{"sku": "a", "qty": 0, "price": 1}]}),
            ),
            (
                "items[0].qty",
                serde_json::json!({"items": [{"sku": "a", "qty": -3, "price": 1}]}),
            ),
            (
                "items[0].sku",
                serde_json::json!({"items": [{"qty": 1, "price": 1}]}),
            ),
            ("amount", serde_json::json!({"amount": 0})),
            ("amount", serde_json::json!({"amount": "ten"})),
            ("points", serde_json::json!({"points": 1.5})),
            ("couponId", serde_json::json!({"couponId": ""})),
            ("note", serde_json::json!({"note": "an unknown field"})),
            (
                "items[0].colour",
                serde_json::json!({"items": [{"sku": "a", "qty": 1, "price": 1, "colour": "red"}]}),
            ),
            ("items[0]", serde_json::json!({"items": [["a", 1, 1]]})),
            ("items", serde_json::json!({"items": {"sku": "a"}})),
        ];
        for (field, patch) in cases {
            let mut body = valid();
            for (k, v) in patch.as_object().expect("object") {
                body[k] = v.clone();
            }
            let err = parse_order_request(body.to_string().as_bytes()).expect_err(field);
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn too_many_lines_are_refused() {
        let mut body = valid();
        body["items"] = serde_json::Value::Array(vec![
            serde_json::json!({"sku": "a", "qty": 1, "price": 1});
            MAX_LINES + 1
        ]);
        let err = parse_order_request(body.to_string().as_bytes()).expect_err("too many");
        assert_eq!(err.field.as_deref(), Some("items"));
    }

    #[test]
    fn a_cursor_survives_its_text_form_and_garbage_is_refused() {
        let cursor = Cursor {
            placed_at_ms: 1_764_000_000_123,
            order_id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "-",
            "zz-00",
            "1",
            "1-nothex",
            &format!("-{}", cursor.order_id.simple()),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_lets_through_only_older_orders() {
        let id = Uuid::from_u128(5);
        let cursor = Cursor {
            placed_at_ms: 100,
            order_id: id,
        };
        assert!(cursor.precedes(99, Uuid::from_u128(9)));
        assert!(cursor.precedes(100, Uuid::from_u128(4)));
        assert!(
            !cursor.precedes(100, id),
            "the cursor's own order is on the page before"
        );
        assert!(!cursor.precedes(100, Uuid::from_u128(6)));
        assert!(!cursor.precedes(101, Uuid::from_u128(1)));
    }

    #[test]
    fn a_filter_needs_every_criterion_it_names() {
        let any = OrderFilter::default();
        assert!(any.matches(OrderStatus::Pending, "u", 5));
        let filter = OrderFilter {
            status: Some(OrderStatus::Failed),
            user_id: Some("alice".into()),
            from_ms: Some(10),
            to_ms: Some(20),
        };
        assert!(filter.matches(OrderStatus::Failed, "alice", 10));
        assert!(filter.matches(OrderStatus::Failed, "alice", 19));
        assert!(
            !filter.matches(OrderStatus::Failed, "alice", 20),
            "to is exclusive"
        );
        assert!(!filter.matches(OrderStatus::Failed, "alice", 9));
        assert!(!filter.matches(OrderStatus::Completed, "alice", 15));
        assert!(!filter.matches(OrderStatus::Failed, "bob", 15));
    }

    #[test]
    fn list_parameters_are_checked_and_blank_ones_ignored() {
        let query = |status: &str, from: &str, cursor: &str| ListQuery {
            status: Some(status.into()),
            user_id: Some(" ".into()),
            from: Some(from.into()),
            to: None,
            cursor: Some(cursor.into()),
            limit: Some(0),
        };
        let (filter, cursor, limit) = list_filter(&query("", "", "")).expect("blank is no filter");
        assert_eq!(filter, OrderFilter::default());
        assert_eq!((cursor, limit), (None, 1));
        let (filter, _, _) =
            list_filter(&query("FAILED", "2026-01-01T00:00:00Z", "")).expect("valid");
        assert_eq!(filter.status, Some(OrderStatus::Failed));
        assert_eq!(filter.from_ms, Some(1_767_225_600_000));
        for (field, q) in [
            ("status", query("LOST", "", "")),
            ("from", query("", "yesterday", "")),
            ("cursor", query("", "", "abc")),
        ] {
            let err = list_filter(&q).expect_err(field);
            assert_eq!(err.field.as_deref(), Some(field));
        }
    }

    proptest! {
        #[test]
        fn cursors_round_trip(ms in any::<u64>(), id in any::<u128>()) {
            let cursor = Cursor { placed_at_ms: ms, order_id: Uuid::from_u128(id) };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }

        #[test]
        fn the_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_order_request(&bytes);
        }

        #[test]
        fn accepted_requests_respect_every_bound(qty in 0u64..20_000, price in 0u64..10, amount in 0u64..5, lines in 0usize..120) {
            let items: Vec<_> = (0..lines).map(|i| serde_json::json!({"sku": format!("s{i}"), "qty": qty, "price": price})).collect();
            let body = serde_json::json!({"userId": "u", "items": items, "amount": amount});
            if let Ok(order) = parse_order_request(body.to_string().as_bytes()) {
                prop_assert!(!order.items.is_empty() && order.items.len() <= MAX_LINES);
                prop_assert!(order.items.iter().all(|l| l.qty >= 1 && u64::from(l.qty) <= MAX_QTY));
                prop_assert!(order.amount >= 1);
            }
        }
    }
}
#[cfg(test)]
mod openapi_tests {
    /// Every admin operation of the order service's document needs the bearer scheme; the
    /// routes served are checked against it end to end (`tests/tests/openapi.rs`).
    #[test]
    fn admin_operations_declare_the_bearer_scheme() {
        let doc = servicekit::openapi::document("order", super::openapi());
        let json = serde_json::to_value(&doc).expect("a JSON document");
        assert!(json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
        let paths = json["paths"].as_object().expect("paths");
        for path in [
            "/orders",
            "/admin/dlq/{seq}/redrive",
            "/healthz",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("a path item") {
                if path.starts_with("/admin") || path.contains("retry-compensation") {
                    assert_eq!(
                        operation["security"],
                        serde_json::json!([{ "admin": [] }]),
                        "{method} {path}"
                    );
                }
            }
        }
    }
}
