//! The payment service.
//!
//! - [`domain`]: the pure core: approvals, declines, cancellations, tombstones.
//! - [`gateway`]: the PG trait, the deterministic simulated PG, and an HTTP PG client.
//! - [`handler`]: its part in the saga (PG calls, then the shared participant handler).
//! - [`api`]: HTTP: a payment's state.
//! - [`config`]: command line.
//! - [`app`] — wiring.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod handler;
