//! `order dlq list|show|redrive|discard` and `order retry-compensation`: a thin client of the order service's admin routes
//! that prints the JSON answer.

use std::time::Duration;

use crate::config::{DlqAction, DlqArgs};

/// How long one admin request may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The method and path of a DLQ operation.
pub fn request_of(action: &DlqAction) -> (reqwest::Method, String) {
    match action {
        DlqAction::List { limit: None } => (reqwest::Method::GET, "/admin/dlq".to_owned()),
        DlqAction::List { limit: Some(limit) } => {
            (reqwest::Method::GET, format!("/admin/dlq?limit={limit}"))
        }
        DlqAction::Show { seq } => (reqwest::Method::GET, format!("/admin/dlq/{seq}")),
        DlqAction::Redrive { seq } => (reqwest::Method::POST, format!("/admin/dlq/{seq}/redrive")),
        DlqAction::Discard { seq } => (reqwest::Method::POST, format!("/admin/dlq/{seq}/discard")),
    }
}

/// Runs one DLQ operation and prints the answer; the exit code is 0 on a 2xx answer, else 1.
pub async fn run_dlq(args: &DlqArgs, token: Option<&str>) -> Result<u8, String> {
    let (method, path) = request_of(&args.action);
    send(&args.url, method, &path, token).await
}

/// Asks a running order service to retry the failed compensations of an order.
pub async fn run_retry_compensation(
    base: &str,
    order_id: &str,
    token: Option<&str>,
) -> Result<u8, String> {
    let path = format!("/orders/{order_id}/retry-compensation");
    send(base, reqwest::Method::POST, &path, token).await
}

/// Sends one admin request, prints the JSON answer; 0 on a 2xx answer, else 1.
async fn send(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> Result<u8, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(CLI_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut request = client.request(method, &url);
    match token {
        Some(token) => request = request.bearer_auth(token),
        None => eprintln!("ADMIN_TOKEN is not set; the service will refuse the request"),
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    let shown = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{shown}");
    if status.is_success() {
        Ok(0)
    } else {
        eprintln!("{url}: HTTP {status}");
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_maps_to_its_admin_route() {
        let cases = [
            (DlqAction::List { limit: None }, "GET", "/admin/dlq"),
            (
                DlqAction::List { limit: Some(5) },
                "GET",
                "/admin/dlq?limit=5",
            ),
            (DlqAction::Show { seq: 3 }, "GET", "/admin/dlq/3"),
            (
                DlqAction::Redrive { seq: 3 },
                "POST",
                "/admin/dlq/3/redrive",
            ),
            (
                DlqAction::Discard { seq: 3 },
                "POST",
                "/admin/dlq/3/discard",
            ),
        ];
        for (action, method, path) in cases {
            let (m, p) = request_of(&action);
            assert_eq!((m.as_str(), p.as_str()), (method, path));
        }
    }
}
