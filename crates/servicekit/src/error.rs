//! The service kit's one error type: starting, serving and stopping a service.

/// Result alias used across the service kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    /// NATS or JetStream failed.
    #[error(transparent)]
    Bus(#[from] bus::Error),
    /// Binding or serving HTTP, or another file-system operation, failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The live state diverged from the log; the service stopped.
    #[error("the state diverged from the log")]
    Diverged,
}
