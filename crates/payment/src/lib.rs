//! The payment service.
//!
//! - [`domain`]: the pure core: approvals, declines, cancellations, tombstones.
//! - [`gateway`]: the PG trait, the deterministic simulated PG, and an HTTP PG client.
//! - [`handler`]: its part in the saga (PG calls, then the shared participant handler).
//! - [`api`]: HTTP: a payment's state.
//! - [`config`]: its own flags (the PG).
//! - [`app`]: wiring, and [`app::PaymentService`]: the binary through the shared shell.

#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod app;
#[cfg(feature = "service")]
pub mod config;
pub mod domain;
#[cfg(feature = "service")]
pub mod gateway;
#[cfg(feature = "service")]
pub mod handler;
