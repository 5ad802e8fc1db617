//! Wiring the point service.

use store::app::{start_participant, App, ServiceConfig};
use store::service::{http_addr_or, CommonArgs};

use crate::handler::PointParticipant;

/// Default HTTP address of the point service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8084";

/// Starts the point service.
pub async fn build(common: &CommonArgs) -> store::Result<App> {
    let config = ServiceConfig {
        domain: "point",
        data_dir: common.data_dir("point"),
        http_addr: http_addr_or(common, DEFAULT_HTTP_ADDR),
        nats: common.nats("point"),
    };
    let token = common.admin_token.clone();
    start_participant(config, PointParticipant, |live| crate::api::router(live.clone(), token)).await
}
