//! `order [serve|replay|verify|export|dlq|retry-compensation]`.

use std::process::ExitCode;

use clap::Parser;
use order::app::OrderService;
use order::config::{Cli, Command};
use servicekit::cli::{block_on, report, run};

fn main() -> ExitCode {
    servicekit::telemetry::init_telemetry();
    let cli = Cli::parse();
    let token = cli.common.admin_token.clone();
    block_on(async move {
        match cli.command {
            None => run::<OrderService>(None, cli.common, cli.order).await,
            Some(Command::Service(command)) => {
                run::<OrderService>(Some(command), cli.common, cli.order).await
            }
            Some(Command::Dlq(args)) => report(order::cli::run_dlq(&args, token.as_deref()).await),
            Some(Command::RetryCompensation { order_id, url }) => {
                report(order::cli::run_retry_compensation(&url, &order_id, token.as_deref()).await)
            }
        }
    })
}
