//! Wiring the coupon service.

use servicekit::app::{start_participant, App};
use servicekit::settings::CommonArgs;

use crate::handler::CouponParticipant;

/// Default HTTP address of the coupon service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8083";

/// Starts the coupon service.
pub async fn build(common: &CommonArgs) -> servicekit::Result<App> {
    let config = common.service_config("coupon", DEFAULT_HTTP_ADDR);
    let token = common.admin_token.clone();
    start_participant(config, CouponParticipant, |live| {
        crate::api::router(live.clone(), token)
    })
    .await
}
