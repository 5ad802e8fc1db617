//! The wire contract's one error type: why bytes are not a saga message.

/// Result alias used across the contract.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an envelope could not be decoded. Every malformed input is one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a postcard envelope or body.
    #[error("codec: {0}")]
    Codec(#[from] postcard::Error),
    /// The envelope carried a version this build does not understand.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u16),
    /// The envelope carried an event type this build does not understand.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The input breaks a limit of the contract (size).
    #[error("malformed: {reason}")]
    Malformed {
        /// What did not hold.
        reason: String,
    },
}
