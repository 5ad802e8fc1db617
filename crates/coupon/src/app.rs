//! Wiring the coupon service.

use store::app::{start_participant, App, ServiceConfig};
use store::service::{http_addr_or, CommonArgs};

use crate::handler::CouponParticipant;

/// Default HTTP address of the coupon service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8083";

/// Starts the coupon service.
pub async fn build(common: &CommonArgs) -> store::Result<App> {
    let config = ServiceConfig {
        domain: "coupon",
        data_dir: common.data_dir("coupon"),
        http_addr: http_addr_or(common, DEFAULT_HTTP_ADDR),
        nats: common.nats("coupon"),
    };
    let token = common.admin_token.clone();
    start_participant(config, CouponParticipant, |live| crate::api::router(live.clone(), token)).await
}
