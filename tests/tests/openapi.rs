//! `GET /openapi.json` end to end (real nats-server, five real services): every service serves
//! an OpenAPI 3 document; every path and method it documents is routed (answered by a handler,
//! never by the router's fallback 404 or a 405); and every route the contract names is
//! documented.

use e2e::{System, ADMIN_TOKEN, SERVICES};
use serde_json::{json, Value};

/// Routes every service serves.
const COMMON: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/status"),
    ("get", "/metrics"),
    ("get", "/log/{order_id}"),
    ("get", "/openapi.json"),
];

/// The routes DESIGN.md's HTTP section names for a service (beyond [`COMMON`]).
fn contract_routes(service: &str) -> &'static [(&'static str, &'static str)] {
    match service {
        "order" => &[
            ("get", "/"),
            ("post", "/orders"),
            ("get", "/orders"),
            ("get", "/orders/{order_id}"),
            ("get", "/orders/{order_id}/timeline"),
            ("get", "/traces/{trace_id}"),
            ("get", "/stats"),
            ("post", "/orders/{order_id}/retry-compensation"),
            ("get", "/admin/dlq"),
            ("get", "/admin/dlq/{seq}"),
            ("post", "/admin/dlq/{seq}/redrive"),
            ("post", "/admin/dlq/{seq}/discard"),
            ("get", "/admin/alerts"),
            ("get", "/admin/health"),
        ],
        "payment" => &[("get", "/payments/{order_id}")],
        "stock" => &[("get", "/stock/{sku}"), ("post", "/stock/{sku}/restock")],
        "coupon" => &[("get", "/coupons/{coupon_id}"), ("post", "/coupons")],
        "point" => &[
            ("get", "/points/{user_id}"),
            ("post", "/points/{user_id}/credit"),
        ],
        other => panic!("unknown service {other}"),
    }
}

/// A path template with every parameter's name dropped: `/orders/{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// `path` with every parameter filled with a dummy value of its kind.
fn fill(path: &str) -> String {
    let dummy_uuid = uuid::Uuid::new_v4().to_string();
    let mut out = String::new();
    let mut param: Option<String> = None;
    for c in path.chars() {
        match (c, &mut param) {
            ('{', None) => param = Some(String::new()),
            ('}', Some(name)) => {
                let value = match name.as_str() {
                    "seq" => "999999999",
                    n if n.contains("order") => dummy_uuid.as_str(),
                    _ => "openapi-probe",
                };
                out.push_str(value);
                param = None;
            }
            (c, Some(name)) => name.push(c),
            (c, None) => out.push(c),
        }
    }
    out
}

/// Sends `method path` with the admin token (and `{}` as a POST's body): status and body text.
async fn probe(system: &System, service: &str, method: &str, path: &str) -> (u16, String) {
    let url = format!("{}{path}", system.url(service));
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
    let mut request = system
        .http
        .request(method.clone(), url)
        .bearer_auth(ADMIN_TOKEN);
    if method == reqwest::Method::POST {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("service reachable");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Whether an answer came from the router's fallback (no route for the path): its JSON 404
/// names the field `path`. A handler's 404 names the resource it did not find.
fn unrouted(status: u16, body: &str) -> bool {
    if status != 404 {
        return false;
    }
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    body["error"].as_str().is_none() || body["field"] == "path"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_documents_exactly_routes_it_serves() {
    let system = System::start_default().await;
    for service in SERVICES {
        let (status, doc) = system.get(service, "/openapi.json").await;
        assert_eq!(status, 200, "{service}: {doc}");
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3."), "{service}: openapi {version:?}");
        let paths = doc["paths"]
            .as_object()
            .unwrap_or_else(|| panic!("{service}: no paths"));
        assert_eq!(
            doc["components"]["securitySchemes"]["admin"]["scheme"], "bearer",
            "{service}: the admin bearer scheme"
        );

        // The detector itself: the fallback is told apart from a handler's 404, and a wrong
        // method is a 405.
        let (status, body) = probe(&system, service, "get", "/no/such/route").await;
        assert!(
            unrouted(status, &body),
            "{service}: fallback {status} {body}"
        );
        // A wrong method on a common route and on one of the service's own gets a JSON 405
        // naming the method, like every other client error.
        let own_route = match service {
            "order" => "/orders",
            "payment" => "/payments/x",
            "stock" => "/stock/x",
            "coupon" => "/coupons/x",
            _ => "/points/x",
        };
        for path in ["/status", own_route] {
            let (status, body) = probe(&system, service, "delete", path).await;
            assert_eq!(status, 405, "{service}: DELETE {path}");
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert!(
                body["error"].is_string(),
                "{service}: DELETE {path}: {body}"
            );
            assert_eq!(body["field"], "method", "{service}: DELETE {path}: {body}");
        }

        // Every documented operation is routed.
        let mut documented = Vec::new();
        for (path, item) in paths {
            let item = item.as_object().expect("a path item");
            for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                documented.push((method.to_owned(), shape(path)));
                let target = fill(path);
                let (status, body) = probe(&system, service, method, &target).await;
                assert_ne!(status, 405, "{service}: {method} {path} ({target}): {body}");
                assert!(
                    !unrouted(status, &body),
                    "{service}: {method} {path} ({target}) is documented but not routed: {status} {body}"
                );
                // Admin-only routes declare the bearer scheme.
                if path.starts_with("/admin") || path.starts_with("/log/") {
                    let security = operation["security"].to_string();
                    assert!(
                        security.contains("\"admin\""),
                        "{service}: {method} {path} without the admin scheme: {security}"
                    );
                }
            }
        }

        // Every route the contract names is documented.
        for (method, path) in COMMON.iter().chain(contract_routes(service)) {
            assert!(
                documented.contains(&(method.to_string(), shape(path))),
                "{service}: {method} {path} is served but not documented; documented: {documented:?}"
            );
        }
    }
}
