//! The store crate's one error type.

use std::time::Duration;

/// Result alias used across the store crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the event store and the JetStream plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying sled database failed (I/O, corruption detected by sled).
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// An append expected a stream version the stream is no longer at.
    #[error("version conflict on stream {stream}: expected {expected}, found {actual}")]
    VersionConflict {
        /// Stream the append targeted.
        stream: String,
        /// Version the caller expected.
        expected: u64,
        /// Version the stream is at.
        actual: u64,
    },
    /// A stream id is empty, too long or holds a NUL byte.
    #[error("invalid stream id {0:?}")]
    InvalidStreamId(String),
    /// A record or value in the store could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] postcard::Error),
    /// An envelope carried a version this build does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u16),
    /// An envelope carried an event type this build does not understand.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The log failed its integrity check.
    #[error("log corrupt at global seq {seq}: {reason}")]
    Corrupt {
        /// First global sequence that failed.
        seq: u64,
        /// What did not hold.
        reason: String,
    },
    /// The writer thread is gone (store closed or crashed).
    #[error("event store writer stopped")]
    WriterGone,
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
    /// The same input is being handled right now; retry shortly.
    #[error("input {0} is already being handled")]
    Busy(String),
    /// A file-system operation outside sled failed.
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
