//! The HTTP shell: common routes, the API error type, the one JSON body extractor
//! ([`ValidJson`]) with typed ids and bounds, admin auth, the per-client rate limit.

use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use eventlog::domain::Domain;
use eventlog::event_store::{EventStore, ReplayBound};
use eventlog::live;
use eventlog::live::Live;

/// The per-client rate limiter in front of the HTTP API: `per_sec` requests per second per peer
/// IP, with a burst of one second's worth. Needs the server to be served with
/// `into_make_service_with_connect_info::<SocketAddr>()` (see [`serve_http`]).
pub type RateLimitConfig = tower_governor::governor::GovernorConfig<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
>;

/// The rate limit of `per_sec` requests per second per client IP (at least 1), with a burst of
/// one second's worth.
pub fn rate_limit_config(per_sec: u32) -> std::sync::Arc<RateLimitConfig> {
    let per_sec = per_sec.max(1);
    let period_ns = (1_000_000_000 / u64::from(per_sec)).max(1);
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .period(std::time::Duration::from_nanos(period_ns))
        .burst_size(per_sec)
        .finish()
        .expect("a non-zero period and burst size");
    std::sync::Arc::new(config)
}

/// The layer answering 429 with `Retry-After` (whole seconds, at least 1) and the API's JSON
/// error once a client exceeds `config`.
pub fn rate_limit_layer(
    config: std::sync::Arc<RateLimitConfig>,
) -> tower_governor::GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
    axum::body::Body,
> {
    tower_governor::GovernorLayer::new(config).error_handler(rate_limit_error)
}

fn rate_limit_error(error: tower_governor::GovernorError) -> Response {
    match error {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
            let mut response = ApiError::client(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded; retry shortly",
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(wait_time.max(1)),
            );
            response
        }
        other => ApiError::internal(other).into_response(),
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

/// `/status` and `/log/{orderId}` (this domain's records of an order; admin token required):
/// the common routes behind the rate limit.
pub fn common_routes<D: Domain>(
    live: &Live<D>,
    domain: &'static str,
    nats: async_nats::Client,
    admin_token: Option<String>,
) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/log/{order_id}", get(order_log))
        .with_state(common_state(live, domain, nats, admin_token))
}

/// `/healthz` and `/readyz`: the probes, merged outside the rate limit so a busy client never
/// makes a service look down.
pub fn probe_routes<D: Domain>(
    live: &Live<D>,
    domain: &'static str,
    nats: async_nats::Client,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(common_state(live, domain, nats, None))
}

fn common_state<D: Domain>(
    live: &Live<D>,
    domain: &'static str,
    nats: async_nats::Client,
    admin_token: Option<String>,
) -> CommonState {
    CommonState {
        domain,
        store: live.store().clone(),
        nats,
        fatal: live.fatal(),
        render: live::render_record::<D>,
        admin_token,
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "common",
    responses((status = 200, description = "Always `ok`", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: NATS connected and the state trusted.
#[utoipa::path(get, path = "/readyz", tag = "common", responses(
    (status = 200, description = "Ready: `{nats, store, head}`", body = Object),
    (status = 503, description = "Not ready: `{nats, store, head}`", body = Object)))]
pub(crate) async fn readyz(State(state): State<CommonState>) -> Response {
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
#[utoipa::path(get, path = "/status", tag = "common",
    responses((status = 200, description = "`{domain, logHead, outboxBacklog}`", body = Object)))]
pub(crate) async fn status(State(state): State<CommonState>) -> Response {
    Json(serde_json::json!({
        "domain": state.domain,
        "logHead": state.store.head(),
        "outboxBacklog": state.store.outbox_len(),
    }))
    .into_response()
}

/// `GET /log/{orderId}`: this domain's records of an order (admin).
#[utoipa::path(get, path = "/log/{order_id}", tag = "common",
    params(("order_id" = String, Path, description = "The order's id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The domain's records of the order", body = Vec<Object>),
        crate::openapi::AdminWriteErrors))]
pub(crate) async fn order_log(
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
    check_id(id).map_err(|message| ApiError::bad_field(field, message))?;
    Ok(id)
}

/// [`validate_id`]'s rules; the error says what is wrong (without naming the field).
fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "is {} bytes of UTF-8; at most {MAX_ID_BYTES} allowed",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err("must not start or end with whitespace".into());
    }
    if id == "." || id == ".." {
        return Err("must not be `.` or `..` (not addressable in a URL path)".into());
    }
    Ok(())
}

/// A client-supplied id in a JSON body, checked by [`validate_id`]'s rules as it is
/// deserialized (so the error names its path).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The id as an owned string.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<De: Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        let id = String::deserialize(deserializer)?;
        check_id(&id).map_err(De::Error::custom)?;
        Ok(Self(id))
    }
}

/// A non-negative integer in `MIN..=MAX`, checked as it is deserialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<De: Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        let n = u64::deserialize(deserializer)?;
        if !(MIN..=MAX).contains(&n) {
            return Err(De::Error::custom(format!(
                "must be between {MIN} and {MAX}"
            )));
        }
        Ok(Self(n))
    }
}

/// A list of `MIN..=MAX` entries, checked as it is deserialized.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct BoundedVec<T, const MIN: usize, const MAX: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const MIN: usize, const MAX: usize> Deserialize<'de>
    for BoundedVec<T, MIN, MAX>
{
    fn deserialize<De: Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        if !(MIN..=MAX).contains(&items.len()) {
            return Err(De::Error::custom(format!(
                "must have between {MIN} and {MAX} entries, not {}",
                items.len()
            )));
        }
        Ok(Self(items))
    }
}

/// A struct that must come as a JSON object: serde's derived structs also accept an array of
/// the field values, which the contract does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<De: Deserializer<'de>>(
        deserializer: De,
    ) -> std::result::Result<Self, De::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Visitor(std::marker::PhantomData))
            .map(Object)
    }
}

/// A JSON request body [`ValidJson`] accepts.
pub trait RequestBody: DeserializeOwned {
    /// The field named when the body is not JSON at all (or cut off): `body`, or the one field
    /// of a single-field body.
    const MALFORMED_FIELD: &'static str = "body";
}

/// The one JSON body extractor of every service: reads the body within the body limit (413
/// naming `body` beyond it) and deserializes it, answering every failure with an [`ApiError`]
/// naming the field's path (`items[0].qty`). Content type is not checked.
#[derive(Debug, Clone)]
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: RequestBody> axum::extract::FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, ApiError> {
        let body =
            <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(request, state)
                .await
                .map_err(|e| ApiError {
                    status: e.status(),
                    message: e.body_text(),
                    field: Some("body".into()),
                })?;
        parse_json(&body).map(ValidJson)
    }
}

/// The one path-parameter extractor: a parameter that does not decode (bad percent-encoding,
/// not UTF-8) is the API's JSON 400 naming `path`, not axum's plain-text rejection.
#[derive(Debug, Clone)]
pub struct ValidPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ValidPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> std::result::Result<Self, ApiError> {
        <UrlPath<T> as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|UrlPath(value)| ValidPath(value))
            .map_err(|e| ApiError {
                status: e.status(),
                message: e.body_text(),
                field: Some("path".into()),
            })
    }
}

/// Extractor of the order id a route's path names (`/orders/{orderId}`, `/payments/{orderId}`):
/// a 400 naming `orderId` when it is not a UUID.
#[derive(Debug, Clone, Copy)]
pub struct OrderIdPath(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ValidPath(order_id) = ValidPath::<String>::from_request_parts(parts, state).await?;
        order_id
            .parse()
            .map(OrderIdPath)
            .map_err(|_| ApiError::bad_field("orderId", "not a UUID"))
    }
}

/// Deserializes a JSON body as [`ValidJson`] does; the error names the field's path.
pub fn parse_json<T: RequestBody>(body: &[u8]) -> std::result::Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let Object(value) = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| json_error(Some(e.path()), e.inner(), T::MALFORMED_FIELD))?;
    // Trailing characters after the value.
    deserializer
        .end()
        .map_err(|e| json_error(None, &e, T::MALFORMED_FIELD))?;
    Ok(value)
}

/// A deserialization error as a 400 naming the field: the path where it happened, the field a
/// missing/unknown/duplicate field error names below that path, or `malformed_field` when the
/// body is not JSON at all or is not an object.
fn json_error(
    path: Option<&serde_path_to_error::Path>,
    err: &serde_json::Error,
    malformed_field: &str,
) -> ApiError {
    let mut message = err.to_string();
    if err.line() > 0 {
        let position = format!(" at line {} column {}", err.line(), err.column());
        if let Some(stripped) = message.strip_suffix(&position) {
            message = stripped.to_owned();
        }
    }
    if !matches!(err.classify(), serde_json::error::Category::Data) {
        return ApiError::bad_field(malformed_field, format!("malformed JSON: {message}"));
    }
    let at = path
        .filter(|p| p.iter().next().is_some())
        .map(ToString::to_string);
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    // An unknown field's path already ends with it; a missing or duplicate field's is its parent.
    let ends_with_name = |name: &str| {
        path.and_then(|p| p.iter().next_back()).is_some_and(
            |last| matches!(last, serde_path_to_error::Segment::Map { key } if key == name),
        )
    };
    let field = match (at, named) {
        (Some(path), Some(name)) if ends_with_name(name) => path,
        (Some(parent), Some(name)) => format!("{parent}.{name}"),
        (None, Some(name)) => name.to_owned(),
        (Some(path), None) => path,
        (None, None) => malformed_field.to_owned(),
    };
    ApiError::bad_field(&field, message)
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

/// What a domain's own routes share: its live state and the admin token.
pub struct DomainApi<D: Domain> {
    /// Live state over the log.
    pub live: Live<D>,
    /// Bearer token of the admin routes; `None` turns them off.
    pub admin_token: Option<String>,
}

impl<D: Domain> Clone for DomainApi<D> {
    fn clone(&self) -> Self {
        Self {
            live: self.live.clone(),
            admin_token: self.admin_token.clone(),
        }
    }
}

/// One admin write: what caused it, and where a retry with the same Idempotency-Key is found.
pub struct AdminWrite<'a> {
    /// The causation id of the events it records, e.g. `admin:restock sku-1`.
    pub causation: String,
    /// The route's name in the dedup key (see [`admin_dedup_key`]).
    pub route: &'a str,
    /// The stream the write appends to, where an earlier answer is looked up.
    pub stream: String,
}

impl<D: Domain> DomainApi<D> {
    /// Runs an admin command once per Idempotency-Key (`key`); `Ok(true)` when an earlier write
    /// with the same key answered it. A rejection is a 400 naming the field `field_of` blames.
    pub async fn admin_execute(
        &self,
        key: Option<&str>,
        write: AdminWrite<'_>,
        command: D::Command,
        field_of: impl FnOnce(&D::Rejection) -> &'static str,
    ) -> std::result::Result<bool, ApiError>
    where
        D::Rejection: std::fmt::Display,
    {
        let execution = live::Execution {
            meta: eventlog::record::EventMeta {
                causation_id: write.causation,
                ..Default::default()
            },
            // A retried write with the same key is applied once.
            dedup_key: key.map(|k| admin_dedup_key(write.route, k)),
        };
        match self
            .live
            .execute(execution, command, |_, _| Ok(Vec::new()))
            .await?
        {
            Ok(executed) => admin_replayed(self.live.store(), &executed, &write.stream),
            Err(rejection) => Err(ApiError::bad_field(
                field_of(&rejection),
                rejection.to_string(),
            )),
        }
    }
}

/// A read of one item a domain keeps, by the id in the request's path (see [`ValidPath`]).
pub struct PathItem<D: Domain> {
    api: DomainApi<D>,
    id: String,
}

impl<D: Domain> FromRequestParts<DomainApi<D>> for PathItem<D> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &DomainApi<D>) -> Result<Self, ApiError> {
        let ValidPath(id) = ValidPath::from_request_parts(parts, api).await?;
        let api = api.clone();
        Ok(PathItem { api, id })
    }
}

impl<D: Domain> PathItem<D> {
    /// The item's `view` in the state; a 404 `unknown <what> <id>` when it has none.
    pub async fn view<V: Send + 'static>(
        self,
        what: &str,
        view: impl FnOnce(&D::State, &str) -> Option<V> + Send + 'static,
    ) -> std::result::Result<Json<V>, ApiError> {
        let PathItem { api, id } = self;
        let (id, found) = api
            .live
            .read(move |s| {
                let found = view(s, &id);
                (id, found)
            })
            .await?;
        found
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("unknown {what} {id}")))
    }
}

/// The caller of an admin write, as an extractor: checked against the admin token (403 while
/// none is set, 401 for a missing or wrong one), with its validated `Idempotency-Key`.
pub struct Admin<D: Domain> {
    /// The domain's route state.
    pub api: DomainApi<D>,
    /// The `Idempotency-Key` header, if given.
    pub key: Option<String>,
}

impl<D: Domain> FromRequestParts<DomainApi<D>> for Admin<D> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &DomainApi<D>) -> Result<Self, ApiError> {
        check_admin(&parts.headers, api.admin_token.as_deref())?;
        Ok(Admin {
            api: api.clone(),
            key: idempotency_key(&parts.headers)?,
        })
    }
}

impl<D: Domain> Admin<D> {
    /// Runs `command` once per Idempotency-Key (see [`DomainApi::admin_execute`]).
    pub async fn write(
        self,
        write: AdminWrite<'_>,
        command: D::Command,
        field_of: impl FnOnce(&D::Rejection) -> &'static str,
    ) -> std::result::Result<Written<D>, ApiError>
    where
        D::Rejection: std::fmt::Display,
    {
        let key = self.key.as_deref();
        let replayed = self
            .api
            .admin_execute(key, write, command, field_of)
            .await?;
        Ok(Written {
            api: self.api,
            replayed,
        })
    }
}

/// An admin write that is applied (now, or by an earlier request with its key).
pub struct Written<D: Domain> {
    api: DomainApi<D>,
    replayed: bool,
}

impl<D: Domain> Written<D> {
    /// Answers `status` with `view` of the state after the write (see [`admin_reply`]).
    pub async fn reply<V: serde::Serialize + Send + 'static>(
        self,
        status: StatusCode,
        view: impl FnOnce(&D::State) -> V + Send + 'static,
    ) -> std::result::Result<Response, ApiError> {
        let body = self.api.live.read(view).await?;
        Ok(admin_reply(status, body, self.replayed))
    }
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
pub fn admin_reply(status: StatusCode, body: impl serde::Serialize, replayed: bool) -> Response {
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

/// The answer to a method a route does not take (`POST /stock/restock`, which is where a client's
/// URL normalisation sends `POST /stock/./restock`): a JSON 405 naming the method, instead of
/// axum's empty body.
pub async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "this route does not take that method".into(),
        field: Some("method".into()),
    }
}

/// A route state that holds the admin bearer token, for [`AdminOnly`] and [`MaybeAdmin`].
pub trait AdminGate {
    /// The admin token; `None` turns the admin routes off.
    fn admin_token(&self) -> Option<&str>;
}

impl<D: Domain> AdminGate for DomainApi<D> {
    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }
}

/// Extractor of an admin-only route: the request carries the admin token (see [`check_admin`]).
#[derive(Debug, Clone, Copy)]
pub struct AdminOnly;

impl<S: AdminGate + Sync> FromRequestParts<S> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_admin(&parts.headers, state.admin_token())?;
        Ok(AdminOnly)
    }
}

/// Extractor of a route that shows the admin more: whether the request is the admin's (see
/// [`optional_admin`]).
#[derive(Debug, Clone, Copy)]
pub struct MaybeAdmin(pub bool);

impl<S: AdminGate + Sync> FromRequestParts<S> for MaybeAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        optional_admin(&parts.headers, state.admin_token()).map(MaybeAdmin)
    }
}

/// Whether a request that may come from the admin does: without an Authorization header it is
/// a public caller's; a header that is given must be right ([`check_admin`]), so a wrong token
/// is told so instead of silently getting less.
pub fn optional_admin(
    headers: &axum::http::HeaderMap,
    token: Option<&str>,
) -> std::result::Result<bool, ApiError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        check_admin(headers, token)?;
        Ok(true)
    } else {
        Ok(false)
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
    // The peer address is the rate limit's key.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
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

    // Test fixtures: only deserialized.
    #[allow(dead_code)]
    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Outer {
        user_id: Id,
        lines: BoundedVec<Object<Inner>, 1, 2>,
        #[serde(default)]
        note: Option<Id>,
    }
    impl RequestBody for Outer {}

    #[allow(dead_code)]
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        qty: Bounded<1, 10>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Single {
        #[allow(dead_code)]
        qty: u64,
    }
    impl RequestBody for Single {
        const MALFORMED_FIELD: &'static str = "qty";
    }

    fn field_of<T: RequestBody + std::fmt::Debug>(body: &str) -> String {
        let err = parse_json::<T>(body.as_bytes()).expect_err(body);
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!err.message.contains(" at line "), "{}", err.message);
        err.field.unwrap_or_default()
    }

    #[test]
    fn every_body_error_names_the_path_of_its_field() {
        let cases = [
            (r#"{"userId": "u", "lines": [{"qty": 1}]}"#, None),
            (r#"{"userId": 5, "lines": [{"qty": 1}]}"#, Some("userId")),
            (r#"{"userId": "", "lines": [{"qty": 1}]}"#, Some("userId")),
            (
                r#"{"userId": "a\u0000", "lines": [{"qty": 1}]}"#,
                Some("userId"),
            ),
            (r#"{"lines": [{"qty": 1}]}"#, Some("userId")),
            (r#"{"userId": "u", "lines": []}"#, Some("lines")),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}, {"qty": 1}, {"qty": 1}]}"#,
                Some("lines"),
            ),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}, {"qty": 0}]}"#,
                Some("lines[1].qty"),
            ),
            (
                r#"{"userId": "u", "lines": [{"qty": 1.5}]}"#,
                Some("lines[0].qty"),
            ),
            (r#"{"userId": "u", "lines": [{}]}"#, Some("lines[0].qty")),
            (
                r#"{"userId": "u", "lines": [{"qty": 1, "x": 1}]}"#,
                Some("lines[0].x"),
            ),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}], "extra": 1}"#,
                Some("extra"),
            ),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}], "note": " x"}"#,
                Some("note"),
            ),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}], "note": null}"#,
                None,
            ),
            (r#"[1, 2]"#, Some("body")),
            (r#"["u", [{"qty": 1}]]"#, Some("body")),
            (r#"{"userId": "u", "lines": [[1]]}"#, Some("lines[0]")),
            (r#"{"userId": "u", "lines": ["#, Some("body")),
            (
                r#"{"userId": "u", "lines": [{"qty": 1}]} trailing"#,
                Some("body"),
            ),
            ("", Some("body")),
        ];
        for (body, field) in cases {
            match field {
                None => {
                    parse_json::<Outer>(body.as_bytes()).expect(body);
                }
                Some(field) => assert_eq!(field_of::<Outer>(body), field, "{body}"),
            }
        }
        assert_eq!(field_of::<Single>(r#"{"qty": "#), "qty");
        assert_eq!(field_of::<Single>(r#"{"qty": -1}"#), "qty");
        assert_eq!(field_of::<Single>("{}"), "qty");
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
