//! Wiring the payment service.

use contract::Participant;
use servicekit::app::{start_participant, App};
use servicekit::cli::Service;
use servicekit::settings::CommonArgs;

use crate::config::PaymentArgs;
use crate::domain::{Payment, PaymentState};
use crate::gateway::{Gateway, HttpGateway, PgTimeouts, SimulatedGateway, SimulatedRules};
use crate::handler::PaymentParticipant;

/// Starts the payment service with a real PG (`pg_url`, called with `timeouts`) or the simulated one.
pub async fn build(
    common: &CommonArgs,
    pg_url: Option<String>,
    timeouts: PgTimeouts,
    rules: SimulatedRules,
) -> servicekit::Result<App> {
    let payment = Participant::Payment;
    let config = common.service_config(payment.name(), payment.default_http_addr());
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

/// The payment binary: the shared shell with the PG flags.
pub struct PaymentService;

impl Service for PaymentService {
    type D = Payment;
    type Args = PaymentArgs;
    const NAME: &'static str = Participant::Payment.name();
    const ABOUT: &'static str = "Payment service: approves and cancels at the payment gateway";

    fn render_state(state: &PaymentState) -> serde_json::Value {
        let payments: Vec<_> = state
            .payments
            .values()
            .map(|p| {
                serde_json::json!({
                    "orderId": p.order_id, "status": p.status.as_str(), "amount": p.amount })
            })
            .collect();
        serde_json::json!({ "payments": payments })
    }

    async fn start(common: &CommonArgs, args: PaymentArgs) -> servicekit::Result<App> {
        build(common, args.pg_url, args.pg_timeouts, args.simulated).await
    }
}
