//! The bus layer: the saga's messages on NATS JetStream.
//!
//! - [`jetstream`]: connecting and declaring the design's streams and durable consumers.
//! - [`outbox`]: the relay that publishes durable outbox entries, pipelined.
//! - [`consumer`]: the pull-consumer runner (batches, per-order lanes, ack after commit, DLQ).
//! - [`retry`]: the one retry policy (capped exponential backoff within a budget).
//! - [`telemetry`]: trace context across messages, broker-side gauges.
//! - [`dlq`]: operating the dead-letter queue (list, summary, inspect, re-drive, discard).
//! - `testing` (feature `test-util`): a real nats-server per test, and polling helpers.
//! - [`error`]: the crate's error type.

pub mod consumer;
pub mod dlq;
pub mod error;
pub mod jetstream;
pub mod outbox;
pub mod retry;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{Error, Result};
