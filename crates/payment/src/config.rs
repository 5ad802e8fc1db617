//! Typed settings of the payment service: its own flags beside the common ones.

use crate::gateway::{PgTimeouts, SimulatedRules};

/// The payment service's own flags.
#[derive(Debug, clap::Args)]
pub struct PaymentArgs {
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
