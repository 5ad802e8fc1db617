//! The event log layer: each domain's append-only sled log and the state folded from it.
//!
//! No NATS, no HTTP: the offline audit and the domain cores depend on this layer alone.
//!
//! - [`event_store`]: the append-only sled log with group commit, dedup records and outbox.
//! - [`record`]: what the log holds and what an append hands in.
//! - [`domain`]: the pure `decide`/`evolve` contract each domain implements.
//! - [`live`]: a domain's in-memory state as the fold of its log, and `execute` (dedup, decide,
//!   commit, answer once durable).
//! - [`snapshot`]: versioned snapshots of a domain's state, taken off the hot path, loaded at
//!   open (never trusted blindly) and checked by `verify`.
//! - [`resident`]: per-order entries kept in memory only while open and recent; the rest is
//!   brought back from the log for the one command that needs it.
//! - [`dedup`]: the Bloom filter and recent cache in front of the on-disk dedup records.
//! - [`clock`]: wall-clock milliseconds, for shells.
//! - `scenario` (feature `test-util`): the given/when/then helper for domain tests.
//! - `testing_hooks` (feature `test-util`): failure injection inside the store (hold the flush).
//! - [`error`]: the crate's error type.

pub mod clock;
pub mod dedup;
pub mod domain;
pub mod error;
pub mod event_store;
pub mod live;
pub mod record;
pub mod resident;
#[cfg(any(test, feature = "test-util"))]
pub mod scenario;
pub mod snapshot;
#[cfg(any(test, feature = "test-util"))]
pub mod testing_hooks;

pub use error::{Error, Result};
pub use event_store::{EventStore, FlushPolicy, ReplayBound, StoreConfig};
pub use record::{
    Commit, CommitOutcome, EventMeta, IndexEntry, NewEvent, OutboxMessage, Record, RecordView,
    StreamAppend, ANY_VERSION,
};
