//! The event log's one error type.

/// Result alias used across the event log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the event log and the live state over it.
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
    /// A record carried a schema version this build does not understand.
    #[error("unsupported schema version {0}")]
    UnsupportedVersion(u16),
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
    /// The same input is being handled right now; retry shortly.
    #[error("input {0} is already being handled")]
    Busy(String),
    /// A file-system operation outside sled failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
