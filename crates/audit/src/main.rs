//! `audit`: checks the stopped services' data dirs; exit 0 clean, 1 findings, 2 errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use audit::{AuditInput, AuditReport};
use clap::Parser;

/// Offline audit of the saga's five event logs (stop the services first).
#[derive(Debug, Parser)]
#[command(name = "audit", version)]
struct Cli {
    /// Directory holding the order/ payment/ stock/ coupon/ point/ data dirs.
    #[arg(long, env = "AUDIT_DATA_ROOT", default_value = "./data")]
    data_root: PathBuf,
}

fn run(cli: Cli) -> anyhow::Result<AuditReport> {
    let input = AuditInput {
        data_root: cli.data_root,
    };
    audit::audit(&input, eventlog::clock::now_ms())
        .with_context(|| format!("auditing {}", input.data_root.display()))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(report) => {
            print!("{}", report.render());
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("audit failed: {err:#}");
            ExitCode::from(2)
        }
    }
}
