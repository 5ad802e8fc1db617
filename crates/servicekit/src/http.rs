//! The HTTP shell: common routes, the API error type, id validation, admin auth, rate limit.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use eventlog::domain::Domain;
use eventlog::event_store::{EventStore, ReplayBound};
use eventlog::live;
use eventlog::live::Live;

/// A token bucket in front of the HTTP API: a burst of one second's worth, refilled continuously.
#[derive(Clone)]
pub struct RateLimit {
    per_sec: f64,
    bucket: std::sync::Arc<std::sync::Mutex<(f64, std::time::Instant)>>,
}

impl RateLimit {
    /// A limit of `per_sec` requests per second.
    pub fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            bucket: std::sync::Arc::new(std::sync::Mutex::new((
                per_sec,
                std::time::Instant::now(),
            ))),
        }
    }

    fn admit(&self) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * self.per_sec;
        bucket.0 = (bucket.0 + refill).min(self.per_sec);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Middleware answering 429 once the rate limit is exceeded.
pub async fn rate_limited(
    State(limit): State<RateLimit>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if limit.admit() {
        next.run(request).await
    } else {
        ApiError::client(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; retry shortly",
        )
        .into_response()
    }
}

/// What the common routes need.
#[derive(Clone)]
pub struct CommonState {
    /// Domain name.
    pub domain: &'static str,
    /// The service's log.
    pub store: EventStore,
    /// The NATS client, for readiness.
    pub nats: async_nats::Client,
    /// Cancelled when the service stops trusting its state.
    pub fatal: CancellationToken,
    /// Renders a record's payload.
    pub render: fn(&'static str, &eventlog::record::Record) -> serde_json::Value,
    /// Admin bearer token: `/log/{orderId}` shows full records (PG authorizations among them),
    /// so it is an admin route.
    pub admin_token: Option<String>,
}

/// `/healthz`, `/readyz`, `/status` and `/log/{orderId}` (this domain's records of an order;
/// admin token required).
pub fn common_routes<D: Domain>(
    live: &Live<D>,
    domain: &'static str,
    nats: async_nats::Client,
    admin_token: Option<String>,
) -> Router {
    let state = CommonState {
        domain,
        store: live.store().clone(),
        nats,
        fatal: live.fatal(),
        render: live::render_record::<D>,
        admin_token,
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/log/{order_id}", get(order_log))
        .with_state(state)
}

async fn readyz(State(state): State<CommonState>) -> Response {
    let nats_up = state.nats.connection_state() == async_nats::connection::State::Connected;
    let store_up = !state.fatal.is_cancelled();
    let body =
        serde_json::json!({ "nats": nats_up, "store": store_up, "head": state.store.head() });
    let status = if nats_up && store_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /status`: `{domain, logHead, outboxBacklog}` for the operator console's health page.
async fn status(State(state): State<CommonState>) -> Response {
    Json(serde_json::json!({
        "domain": state.domain,
        "logHead": state.store.head(),
        "outboxBacklog": state.store.outbox_len(),
    }))
    .into_response()
}

async fn order_log(
    State(state): State<CommonState>,
    headers: axum::http::HeaderMap,
    UrlPath(order_id): UrlPath<String>,
) -> Response {
    if let Err(err) = check_admin(&headers, state.admin_token.as_deref()) {
        return err.into_response();
    }
    match state.store.read_correlated(&order_id) {
        Ok(records) => Json(
            records
                .iter()
                .map(|r| (state.render)(state.domain, r))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "reading the order's log failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({"error": "internal error"})),
            )
                .into_response()
        }
    }
}

/// A JSON API error: 4xx bodies name the problem and field; 5xx bodies are opaque.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong.
    pub message: String,
    /// Which field, if any.
    pub field: Option<String>,
}

impl ApiError {
    /// 400 naming a field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: None,
        }
    }
    /// A 4xx with a status of choice.
    pub fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }
    /// 500; the cause is logged here, once, and not shown to the client.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
            field: None,
        }
    }
}

impl From<eventlog::Error> for ApiError {
    fn from(err: eventlog::Error) -> Self {
        match err {
            // Over HTTP only an admin write's Idempotency-Key is a dedup key: the same key is
            // still being written by another request.
            eventlog::Error::Busy(_) => Self {
                status: StatusCode::CONFLICT,
                message: "a request with this key is already in progress; retry shortly".into(),
                field: Some(IDEMPOTENCY_KEY_HEADER.into()),
            },
            other => Self::internal(other),
        }
    }
}

impl From<bus::Error> for ApiError {
    fn from(err: bus::Error) -> Self {
        match err {
            bus::Error::Log(err) => err.into(),
            other => Self::internal(other),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(err: crate::Error) -> Self {
        match err {
            crate::Error::Log(err) => err.into(),
            crate::Error::Bus(err) => err.into(),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(field) => serde_json::json!({ "error": self.message, "field": field }),
            None => serde_json::json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Longest id a client may give (user, SKU, coupon, idempotency key), in bytes of UTF-8.
///
/// Bytes, not characters: the log's stream ids (`sku-<sku>`, `user-<id>`, `coupon-<id>`) are
/// limited in bytes ([`eventlog::event_store::STREAM_ID_MAX_LEN`]), and 64 four-byte characters
/// would not fit. Every id this accepts, with its longest prefix, is a valid stream id.
pub const MAX_ID_BYTES: usize = 64;

/// The one check of a client-supplied id (body field, path parameter or header): 1 to
/// [`MAX_ID_BYTES`] bytes, no control character (NUL, line breaks, DEL, C1), no leading or
/// trailing whitespace, and not `.` or `..` (a URL path segment cannot carry those, so the id
/// could never be read back by `GET /stock/{sku}` and the like). Any other printable text is
/// allowed and must be escaped on output. The error is a 400 naming `field`; a caller checks
/// before it writes anything.
pub fn validate_id<'a>(field: &str, id: &'a str) -> std::result::Result<&'a str, ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_field(field, "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad_field(
            field,
            format!(
                "is {} bytes of UTF-8; at most {MAX_ID_BYTES} allowed",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::bad_field(
            field,
            "must not contain control characters",
        ));
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err(ApiError::bad_field(
            field,
            "must not start or end with whitespace",
        ));
    }
    if id == "." || id == ".." {
        return Err(ApiError::bad_field(
            field,
            "must not be `.` or `..` (not addressable in a URL path)",
        ));
    }
    Ok(id)
}

/// An id from a JSON body: absent or `null` is `None`; anything but a valid id string is a 400
/// naming `field`.
pub fn id_field(
    value: Option<&serde_json::Value>,
    field: &str,
) -> std::result::Result<Option<String>, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => validate_id(field, s).map(|s| Some(s.to_owned())),
        Some(_) => Err(ApiError::bad_field(field, "must be a string")),
    }
}

/// Name of the header that makes a write idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The `Idempotency-Key` header, validated like any id; `None` when absent.
pub fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> std::result::Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_field(IDEMPOTENCY_KEY_HEADER, "must be printable ASCII"))?;
    validate_id(IDEMPOTENCY_KEY_HEADER, text).map(|k| Some(k.to_owned()))
}

/// The dedup key of an admin write: `admin/<route>/<key>`. A retried write with the same key is
/// answered as a duplicate and writes nothing; the key is scoped to the route only, so reusing
/// it for another target of the same route is also answered as a duplicate (as with any
/// idempotency key, one key names one request).
pub fn admin_dedup_key(route: &str, key: &str) -> String {
    format!("admin/{route}/{key}")
}

/// Response header set on a write that was answered from an earlier one with the same key.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// Whether an admin write was answered from an earlier one with the same `Idempotency-Key`
/// (`Ok(true)`) or applied now (`Ok(false)`). A key the earlier write used for another target
/// (its event is not on `stream`) is a 409 naming the header: that request was never applied.
pub fn admin_replayed<E>(
    store: &EventStore,
    executed: &live::Executed<E>,
    stream: &str,
) -> std::result::Result<bool, ApiError> {
    let live::Executed::Duplicate(earlier) = executed else {
        return Ok(false);
    };
    let bound = ReplayBound {
        upto_seq: Some(earlier.global_seq),
        upto_time_ms: None,
    };
    let first = store.read_all(earlier.global_seq, bound).next();
    match first {
        Some(Ok(record)) if record.stream == stream => Ok(true),
        Some(Err(err)) => Err(ApiError::internal(err)),
        _ => Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "this key was already used for another request".into(),
            field: Some(IDEMPOTENCY_KEY_HEADER.into()),
        }),
    }
}

/// An admin write's answer: `status` and `body`, marked [`IDEMPOTENT_REPLAYED_HEADER`] when an
/// earlier write with the same `Idempotency-Key` had already been applied.
pub fn admin_reply(status: StatusCode, body: serde_json::Value, replayed: bool) -> Response {
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED_HEADER,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// The answer to a request no route matches: a JSON 404 naming the path, like every other error.
pub async fn route_not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such route".into(),
        field: Some("path".into()),
    }
}

/// Checks `Authorization: Bearer <token>` for admin routes. Without a configured token admin
/// routes are off (403).
pub fn check_admin(
    headers: &axum::http::HeaderMap,
    token: Option<&str>,
) -> std::result::Result<(), ApiError> {
    let Some(expected) = token else {
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "admin routes are disabled: set ADMIN_TOKEN",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::client(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves a router until `shutdown`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventlog::record::{Commit, NewEvent, StreamAppend};
    use eventlog::{EventStore, StoreConfig};
    use proptest::prelude::*;

    /// Ids mixing ASCII, 2-, 3- and 4-byte characters, NUL and other controls, at lengths
    /// around the limit.
    fn any_id() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => Just('a'),
            2 => Just(' '),
            1 => Just('\0'),
            1 => Just('\n'),
            1 => Just('\u{7f}'),
            2 => Just('é'),
            2 => Just('€'),
            2 => Just('😀'),
            1 => Just('\u{10FFFF}'),
            4 => any::<char>(),
        ];
        proptest::collection::vec(piece, 0..70).prop_map(|chars| chars.into_iter().collect())
    }

    #[test]
    fn admin_routes_are_off_without_a_token_and_need_the_right_bearer_with_one() {
        let mut headers = axum::http::HeaderMap::new();
        let status = |r: std::result::Result<(), ApiError>| r.err().map(|e| e.status);
        assert_eq!(
            status(check_admin(&headers, None)),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(check_admin(&headers, Some("t"))),
            Some(StatusCode::UNAUTHORIZED)
        );
        headers.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer wrong"),
        );
        assert_eq!(
            status(check_admin(&headers, Some("t"))),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(check_admin(&headers, None)),
            Some(StatusCode::FORBIDDEN)
        );
        headers.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer t"),
        );
        assert_eq!(status(check_admin(&headers, Some("t"))), None);
    }

    #[test]
    fn an_id_of_64_four_byte_characters_is_refused_naming_the_field() {
        let id = "😀".repeat(MAX_ID_BYTES);
        let err = validate_id("sku", &id).expect_err("256 bytes");
        assert_eq!(err.field.as_deref(), Some("sku"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(validate_id("sku", &"😀".repeat(MAX_ID_BYTES / 4)).is_ok());
    }

    #[test]
    fn control_characters_empty_ids_and_surrounding_whitespace_are_refused() {
        for id in [
            "", "a\0b", "a\nb", "\u{85}", "a\u{7f}", " a", "a ", "\t", ".", "..",
        ] {
            let err = validate_id("userId", id).expect_err(id);
            assert_eq!(err.field.as_deref(), Some("userId"), "{id:?}");
        }
        assert!(validate_id("userId", "<img src=x onerror=alert(1)>").is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every id the edge accepts can be stored under every stream id built from it.
        #[test]
        fn every_accepted_id_can_be_stored(id in any_id()) {
            if validate_id("id", &id).is_err() {
                return Ok(());
            }
            let dir = tempfile::tempdir().expect("a temporary directory");
            let store = EventStore::open(StoreConfig::new(dir.path())).expect("a store");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            for prefix in ["sku-", "user-", "coupon-"] {
                let commit = Commit {
                    appends: vec![StreamAppend {
                        stream: format!("{prefix}{id}"),
                        expected_version: 0,
                        events: vec![NewEvent {
                            event_type: "test".into(),
                            schema_version: 1,
                            payload: vec![1],
                        }],
                    }],
                    dedup_key: Some(admin_dedup_key("test", &format!("{prefix}{id}"))),
                    ..Commit::default()
                };
                let outcome = runtime.block_on(store.commit(commit));
                prop_assert!(outcome.is_ok(), "{prefix}{id:?}: {outcome:?}");
            }
        }
    }
}
