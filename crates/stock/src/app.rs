//! Wiring the stock service.

use store::app::{start_participant, App, ServiceConfig};
use store::service::{http_addr_or, CommonArgs};

use crate::handler::StockParticipant;

/// Default HTTP address of the stock service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8082";

/// Starts the stock service.
pub async fn build(common: &CommonArgs) -> store::Result<App> {
    let config = ServiceConfig {
        domain: "stock",
        data_dir: common.data_dir("stock"),
        http_addr: http_addr_or(common, DEFAULT_HTTP_ADDR),
        nats: common.nats("stock"),
    };
    let token = common.admin_token.clone();
    start_participant(config, StockParticipant, |live| crate::api::router(live.clone(), token)).await
}
