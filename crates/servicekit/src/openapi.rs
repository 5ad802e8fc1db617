//! `GET /openapi.json`: every service's OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` annotations. The common routes (probes, `/status`, `/metrics`,
//! `/log/{orderId}`, `/openapi.json`) are documented here and merged into each service's own.

use axum::routing::{get, MethodRouter};
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// Name of the bearer security scheme admin routes reference (`security(("admin" = []))`).
pub const ADMIN_SCHEME: &str = "admin";

/// The JSON error body every 4xx and 5xx carries.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What was wrong (opaque for a 5xx).
    error: String,
    /// The field's path, the header's name, or `path` for a request no route matches.
    field: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::http::healthz,
        crate::http::readyz,
        crate::http::status,
        crate::http::order_log,
        crate::observe::render,
        openapi_json,
    ),
    components(schemas(ErrorBody))
)]
struct CommonApi;

/// `service`'s document: its own paths (`own`) merged with the common routes, titled after the
/// service, with the admin bearer scheme.
pub fn document(service: &str, own: Document) -> Document {
    let mut doc = CommonApi::openapi();
    doc.merge(own);
    doc.info.title = format!("{service} service");
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(format!(
        "The {service} service of the order saga. Admin routes take `Authorization: Bearer <ADMIN_TOKEN>`."
    ));
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        ADMIN_SCHEME,
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc
}

/// The `/openapi.json` route serving `service`'s document (see [`document`]), for any router
/// state.
pub fn route<S: Clone + Send + Sync + 'static>(service: &str, own: Document) -> MethodRouter<S> {
    let doc = std::sync::Arc::new(document(service, own));
    get(move || {
        let doc = doc.clone();
        async move { Json(serde_json::to_value(&*doc).unwrap_or_default()) }
    })
}

/// `service`'s routes, served and documented from the same `#[utoipa::path]` annotations, with
/// `/openapi.json` serving the document (see [`document`]).
pub fn serve<S: Clone + Send + Sync + 'static>(
    service: &str,
    routes: impl IntoIterator<Item = UtoipaMethodRouter<S>>,
) -> axum::Router<S> {
    let (router, doc) = routes
        .into_iter()
        .fold(OpenApiRouter::new(), OpenApiRouter::routes)
        .split_for_parts();
    router.route("/openapi.json", route(service, doc))
}

/// The error answer of a read by id (`responses(..., NotFound)`).
#[derive(Debug, utoipa::IntoResponses)]
#[response(status = 404, description = "Unknown id (a JSON error naming it)")]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// The error answers of an admin route that takes input: a write, or an admin-only read with
/// a path or query (`responses(..., AdminWriteErrors)`).
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminWriteErrors {
    /// Bad input, naming the field
    #[response(status = 400)]
    BadInput(ErrorBody),
    /// Missing or wrong bearer token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Admin routes are disabled
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// The error answers of a read that shows more to the admin (`responses(..., AdminReadErrors)`).
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminReadErrors {
    /// Bad input, naming the field
    #[response(status = 400)]
    BadInput(ErrorBody),
    /// Wrong bearer token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not found (a JSON error naming it)
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// `GET /openapi.json`: this service's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "common",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
#[allow(dead_code)]
async fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_has_the_common_routes_and_the_admin_scheme() {
        let doc = serde_json::to_value(document("x", Document::default())).expect("JSON");
        assert_eq!(doc["info"]["title"], "x service");
        for path in [
            "/healthz",
            "/readyz",
            "/status",
            "/metrics",
            "/log/{order_id}",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
        }
        assert_eq!(
            doc["paths"]["/log/{order_id}"]["get"]["security"],
            serde_json::json!([{ ADMIN_SCHEME: [] }])
        );
        assert_eq!(
            doc["components"]["securitySchemes"][ADMIN_SCHEME]["scheme"],
            "bearer"
        );
    }
}
