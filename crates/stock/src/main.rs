//! `stock [serve|replay|verify|export]`.

use clap::Parser;
use servicekit::cli::{run_binary, ServiceCli};
use servicekit::telemetry::init_telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry();
    let cli = ServiceCli::parse();
    let render =
        |state: &stock::domain::StockState| serde_json::json!({ "available": state.available });
    let code =
        run_binary::<stock::domain::Stock, _, _>("stock", cli.command, &cli.common, render, || {
            stock::app::build(&cli.common)
        })
        .await
        .map_err(anyhow::Error::msg)?;
    std::process::exit(code)
}
