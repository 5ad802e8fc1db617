//! The service kit: what every saga service binary shares around its domain.
//!
//! - [`settings`]: flags with environment fallbacks, and where a service runs.
//! - [`app`]: starting a service (log, state, NATS, relay, consumers, HTTP) and stopping it.
//! - [`http`]: the common routes, the API error type, id validation, admin auth, rate limit, and
//!   [`http::DomainApi`]: a domain's route state with its idempotent admin write.
//! - [`participant`]: the message handler shared by the four participant services, and
//!   [`participant::Simple`]: the service of stock, coupon and point, which supply only their
//!   core (`contract::ledger::ParticipantCore`) and routes ([`participant::SimpleParticipant`]).
//! - [`cli`]: the command line every binary shares, the [`cli::Service`] trait and the one entry
//!   point [`cli::main_for`] (telemetry, arguments, serve or offline command, `ExitCode`),
//!   and shutdown on signals.
//! - [`offline`]: `replay`, `verify` and `export` against a data directory.
//! - [`telemetry`]: logs (text or JSON), OpenTelemetry traces, the Prometheus recorder.
//! - [`observe`]: `/metrics` with gauges refreshed on scrape, and the HTTP metrics and span middleware.
//! - [`openapi`]: `/openapi.json`, the common routes' OpenAPI paths merged into a service's.
//! - [`error`]: the crate's error type.
//! - [`alloc`]: the global allocator (mimalloc) of every binary that links this crate, and
//!   transparent huge pages turned off.

pub mod alloc;
pub mod app;
pub mod cli;
pub mod error;
pub mod http;
pub mod observe;
pub mod offline;
pub mod openapi;
pub mod participant;
pub mod settings;
pub mod telemetry;

pub use error::{Error, Result};
