//! Shared plumbing of the saga services.
//!
//! - [`event_store`]: the append-only sled log with group commit, dedup records and outbox.
//! - [`record`]: what the log holds and what an append hands in.
//! - [`domain`]: the pure `decide`/`evolve` contract each domain implements.
//! - [`contract`]: the saga's wire contract (subjects, streams, headers, message bodies).
//! - [`codec`]: the versioned postcard envelope.
//! - [`error`]: the crate's error type.

pub mod codec;
pub mod contract;
pub mod domain;
pub mod error;
pub mod event_store;
pub mod record;
#[cfg(any(test, feature = "test-util"))]
pub mod scenario;

pub use error::{Error, Result};
pub use event_store::{EventStore, FlushPolicy, ReplayBound, StoreConfig};
pub use record::{Commit, CommitOutcome, EventMeta, NewEvent, OutboxMessage, Record, StreamAppend};
