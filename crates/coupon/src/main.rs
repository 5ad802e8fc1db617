//! `coupon [serve|replay|verify|export]`.

use clap::Parser;
use servicekit::cli::{run_binary, ServiceCli};
use servicekit::telemetry::init_telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry();
    let cli = ServiceCli::parse();
    let render =
        |state: &coupon::domain::CouponState| serde_json::json!({ "coupons": state.coupons });
    let code = run_binary::<coupon::domain::Coupon, _, _>(
        "coupon",
        cli.command,
        &cli.common,
        render,
        || coupon::app::build(&cli.common),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    std::process::exit(code)
}
