//! `payment [serve|replay|verify|export]`.

use clap::Parser;
use payment::config::Cli;
use servicekit::cli::run_binary;
use servicekit::telemetry::init_telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry();
    let cli = Cli::parse();
    let render = |state: &payment::domain::PaymentState| {
        serde_json::json!({ "payments": state.payments.values().map(|p| serde_json::json!({
            "orderId": p.order_id, "status": p.status.as_str(), "amount": p.amount })).collect::<Vec<_>>() })
    };
    let code = run_binary::<payment::domain::Payment, _, _>(
        "payment",
        cli.command,
        &cli.common,
        render,
        || {
            payment::app::build(
                &cli.common,
                cli.pg_url.clone(),
                cli.pg_timeouts,
                cli.simulated.clone(),
            )
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    std::process::exit(code)
}
