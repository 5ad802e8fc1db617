//! Typed settings of the payment service.

use servicekit::cli::ServiceCommand;
use servicekit::settings::CommonArgs;

use crate::gateway::{PgTimeouts, SimulatedRules};

/// The payment service's command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "payment",
    about = "Payment service: approves and cancels at the payment gateway"
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
    /// Settings shared by every service.
    #[command(flatten)]
    pub common: CommonArgs,
    /// A real PG's base URL; without it the simulated PG is used.
    #[arg(long, env = "PG_URL", global = true)]
    pub pg_url: Option<String>,
    /// Timeouts of the real PG's client.
    #[command(flatten)]
    pub pg_timeouts: PgTimeouts,
    /// Rules of the simulated PG.
    #[command(flatten)]
    pub simulated: SimulatedRules,
}
