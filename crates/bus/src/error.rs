//! The bus's one error type: NATS and JetStream failures, and the layers below.

use std::time::Duration;

/// Result alias used across the bus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong publishing, consuming and operating the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event log failed (reading the outbox, committing).
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    /// A message could not be encoded or decoded (the contract's error says why; the prefix says
    /// it was a saga message, not the log, that failed).
    #[error("saga message: {0}")]
    Contract(#[from] contract::Error),
    /// NATS could not be reached within the retry budget.
    #[error("cannot connect to NATS at {url} after {attempts} attempts: {source}")]
    Connect {
        /// Server URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        source: async_nats::ConnectError,
    },
    /// A JetStream API call failed.
    #[error("jetstream {op}: {message}")]
    JetStream {
        /// What was being done.
        op: &'static str,
        /// The server's or client's message.
        message: String,
    },
    /// A JetStream request did not answer in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// A file-system operation failed (the test harness's nats-server).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Wraps any displayable JetStream error with the operation that failed.
    pub fn jetstream(op: &'static str, err: impl std::fmt::Display) -> Self {
        Self::JetStream {
            op,
            message: err.to_string(),
        }
    }
}
