//! Shared plumbing of the saga services.
//!
//! - [`app`]: starting a service (log, state, NATS, relay, consumers, HTTP) and stopping it.
//! - [`event_store`]: the append-only sled log with group commit, dedup records and outbox.
//! - [`record`]: what the log holds and what an append hands in.
//! - [`domain`]: the pure `decide`/`evolve` contract each domain implements.
//! - [`contract`]: the saga's wire contract (subjects, streams, headers, message bodies).
//! - [`codec`]: the versioned postcard envelope.
//! - [`live`]: a domain's in-memory state as the fold of its log, and `execute` (dedup, decide, commit).
//! - [`outbox`]: the relay that publishes durable outbox entries to JetStream, pipelined.
//! - [`jetstream`]: connecting and declaring the design's streams and durable consumers.
//! - [`consumer`]: the pull-consumer runner (batches, per-order lanes, ack after commit, DLQ).
//! - [`dlq`]: operating the dead-letter queue (list, summary, inspect, re-drive, discard).
//! - [`service`]: settings, telemetry, shutdown, common HTTP routes, replay/verify/export.
//! - [`participant`]: the message handler shared by the four participant services.
//! - `testing` (feature `test-util`): a real nats-server per test, and polling helpers.
//! - `testing_hooks` (feature `test-util`): failure injection inside the store (hold the flush).
//! - [`error`]: the crate's error type.

pub mod app;
pub mod codec;
pub mod consumer;
pub mod contract;
pub mod dlq;
pub mod domain;
pub mod error;
pub mod event_store;
pub mod jetstream;
pub mod live;
pub mod outbox;
pub mod participant;
pub mod record;
#[cfg(any(test, feature = "test-util"))]
pub mod scenario;
pub mod service;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(any(test, feature = "test-util"))]
pub mod testing_hooks;

pub use error::{Error, Result};
pub use event_store::{EventStore, FlushPolicy, ReplayBound, StoreConfig};
pub use record::{Commit, CommitOutcome, EventMeta, NewEvent, OutboxMessage, Record, StreamAppend};
