//! Wiring the payment service.

use servicekit::app::{start_participant, App};
use servicekit::settings::CommonArgs;

use crate::gateway::{Gateway, HttpGateway, PgTimeouts, SimulatedGateway, SimulatedRules};
use crate::handler::PaymentParticipant;

/// Default HTTP address of the payment service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8081";

/// Starts the payment service with a real PG (`pg_url`, called with `timeouts`) or the simulated one.
pub async fn build(
    common: &CommonArgs,
    pg_url: Option<String>,
    timeouts: PgTimeouts,
    rules: SimulatedRules,
) -> servicekit::Result<App> {
    let config = common.service_config("payment", DEFAULT_HTTP_ADDR);
    let gateway = match pg_url {
        Some(base_url) => Gateway::Http(
            HttpGateway::new(base_url, timeouts)
                .map_err(|e| servicekit::Error::Io(std::io::Error::other(e)))?,
        ),
        None => Gateway::Simulated(SimulatedGateway { rules }),
    };
    let token = common.admin_token.clone();
    start_participant(config, PaymentParticipant { gateway }, |live| {
        crate::api::router(live.clone(), token)
    })
    .await
}
