//! The saga's wire contract: what travels between the services, and the rules every
//! participant's ledger shares. Pure data and functions: no NATS, no I/O.
//!
//! - `wire` (re-exported at the root): streams, subjects, consumers, headers, message bodies,
//!   the data platform feed file.
//! - [`codec`]: the versioned postcard envelope.
//! - [`message`]: outbox entries for saga messages (headers, deterministic message ids).
//! - [`ledger`]: the participants' shared rules: the facts they record per order (tombstones,
//!   skipped compensations, ignored late placements), how their events map to outcomes and
//!   streams, and the decide/evolve of placed and failed orders ([`ledger::ParticipantCore`]).
//! - [`error`]: the crate's error type.
//! - `fixtures` (feature `test-util`): orders the domains' tests share, and checks of the
//!   shared ledger rules and of event variants' postcard positions.

pub mod codec;
pub mod error;
#[cfg(feature = "test-util")]
pub mod fixtures;
pub mod ledger;
pub mod message;
mod wire;

pub use error::{Error, Result};
pub use wire::*;
