//! Wiring the stock service.

use servicekit::app::{start_participant, App};
use servicekit::settings::CommonArgs;

use crate::handler::StockParticipant;

/// Default HTTP address of the stock service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8082";

/// Starts the stock service.
pub async fn build(common: &CommonArgs) -> servicekit::Result<App> {
    let config = common.service_config("stock", DEFAULT_HTTP_ADDR);
    let token = common.admin_token.clone();
    start_participant(config, StockParticipant, |live| {
        crate::api::router(live.clone(), token)
    })
    .await
}
