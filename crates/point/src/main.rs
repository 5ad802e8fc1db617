//! `point [serve|replay|verify|export]`.

use clap::Parser;
use servicekit::cli::{run_binary, ServiceCli};
use servicekit::telemetry::init_telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry();
    let cli = ServiceCli::parse();
    let render =
        |state: &point::domain::PointState| serde_json::json!({ "balances": state.balances });
    let code =
        run_binary::<point::domain::Point, _, _>("point", cli.command, &cli.common, render, || {
            point::app::build(&cli.common)
        })
        .await
        .map_err(anyhow::Error::msg)?;
    std::process::exit(code)
}
