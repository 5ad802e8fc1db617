//! The stock service.
//!
//! - [`domain`]: the pure core: all-or-nothing reservations, restores, restocking.
//! - [`api`]: HTTP: availability and admin restocking.
//! - [`StockParticipant`]: its part in the saga (reserve on `order.placed`, restore on
//!   `order.failed`); the shared participant handler, wiring and binary come with it from
//!   `servicekit`.

#[cfg(feature = "service")]
pub mod api;
pub mod domain;

/// The stock service: its core and routes in the shared participant shell.
#[cfg(feature = "service")]
pub type StockParticipant = servicekit::participant::Simple<domain::Stock>;
