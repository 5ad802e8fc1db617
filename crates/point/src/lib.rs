//! The point service.
//!
//! - [`domain`]: the pure core: crediting, deducting and refunding points.
//! - [`handler`]: its part in the saga, plugged into the shared participant handler.
//! - [`api`]: HTTP: balances, and admin crediting.
//! - [`app`] — wiring.

#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod app;
pub mod domain;
#[cfg(feature = "service")]
pub mod handler;
