//! The stock service.
//!
//! - [`domain`]: the pure core: all-or-nothing reservations, restores, restocking.
//! - [`handler`]: its part in the saga, plugged into the shared participant handler.
//! - [`api`]: HTTP: availability and admin restocking.
//! - [`app`] — wiring.

#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod app;
pub mod domain;
#[cfg(feature = "service")]
pub mod handler;
