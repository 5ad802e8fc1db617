//! `order [serve|replay|verify|export|dlq|retry-compensation]`.

use anyhow::Context;
use clap::Parser;
use order::config::{Cli, Command, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    servicekit::telemetry::init_telemetry();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Offline(offline) => {
            let dir = cli.common.data_dir("order");
            let code = servicekit::offline::run_offline::<order::domain::Order>(
                "order",
                &dir,
                &offline,
                |state| {
                    serde_json::to_value(state.orders.values().collect::<Vec<_>>())
                        .unwrap_or_default()
                },
            )
            .map_err(anyhow::Error::msg)?;
            std::process::exit(code);
        }
        Command::Dlq(args) => {
            let token = cli.common.admin_token.as_deref();
            let code = order::cli::run_dlq(&args, token)
                .await
                .map_err(anyhow::Error::msg)?;
            std::process::exit(code);
        }
        Command::RetryCompensation { order_id, url } => {
            let token = cli.common.admin_token.as_deref();
            let code = order::cli::run_retry_compensation(&url, &order_id, token)
                .await
                .map_err(anyhow::Error::msg)?;
            std::process::exit(code);
        }
        Command::Serve => {
            let app = order::app::build(Settings::from_cli(cli.common, cli.order))
                .await
                .context("starting the order service")?;
            tokio::spawn(servicekit::cli::shutdown_on_signal(app.shutdown_token()));
            let ended = app.wait().await;
            servicekit::telemetry::shutdown_telemetry();
            ended.context("order service")?;
            Ok(())
        }
    }
}
