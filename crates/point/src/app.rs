//! Wiring the point service.

use servicekit::app::{start_participant, App};
use servicekit::settings::CommonArgs;

use crate::handler::PointParticipant;

/// Default HTTP address of the point service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8084";

/// Starts the point service.
pub async fn build(common: &CommonArgs) -> servicekit::Result<App> {
    let config = common.service_config("point", DEFAULT_HTTP_ADDR);
    let token = common.admin_token.clone();
    start_participant(config, PointParticipant, |live| {
        crate::api::router(live.clone(), token)
    })
    .await
}
