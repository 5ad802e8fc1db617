//! The saga's wire contract: what travels between the services, and the rules every
//! participant's ledger shares. Pure data and functions: no NATS, no I/O.
//!
//! - `wire` (re-exported at the root): streams, subjects, consumers, headers, message bodies.
//! - [`codec`]: the versioned postcard envelope.
//! - [`message`]: outbox entries for saga messages (headers, deterministic message ids).
//! - [`ledger`]: what stock, coupon and point remember per order (tombstones, skipped
//!   compensations, ignored late placements).
//! - [`error`]: the crate's error type.
//! - `fixtures` (feature `test-util`): orders and messages the domains' tests share.

pub mod codec;
pub mod error;
#[cfg(feature = "test-util")]
pub mod fixtures;
pub mod ledger;
pub mod message;
mod wire;

pub use error::{Error, Result};
pub use wire::*;
