//! The service kit: what every saga service binary shares around its domain.
//!
//! - [`settings`]: flags with environment fallbacks, and where a service runs.
//! - [`app`]: starting a service (log, state, NATS, relay, consumers, HTTP) and stopping it.
//! - [`http`]: the common routes, the API error type, id validation, admin auth, rate limit.
//! - [`participant`]: the message handler shared by the four participant services.
//! - [`cli`]: the command line every binary shares, and shutdown on signals.
//! - [`offline`]: `replay`, `verify` and `export` against a data directory.
//! - [`telemetry`]: logs and the Prometheus recorder.
//! - [`error`]: the crate's error type.
//! - [`alloc`]: the global allocator (mimalloc) of every binary that links this crate.

pub mod alloc;
pub mod app;
pub mod cli;
pub mod error;
pub mod http;
pub mod offline;
pub mod participant;
pub mod settings;
pub mod telemetry;

pub use error::{Error, Result};
