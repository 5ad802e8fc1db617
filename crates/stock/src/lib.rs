//! The stock service.
//!
//! - [`domain`]: the pure core: all-or-nothing reservations, restores, restocking.
//! - [`handler`]: its part in the saga, plugged into the shared participant handler.
//! - [`api`]: HTTP: availability and admin restocking.
//! - [`app`] — wiring.

pub mod api;
pub mod app;
pub mod domain;
pub mod handler;
