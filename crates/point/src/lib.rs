//! The point service.
//!
//! - [`domain`]: the pure core: deductions, refunds, crediting.
//! - [`api`]: HTTP: balances and admin crediting.
//! - [`PointParticipant`]: its part in the saga (deduct on `order.placed`, refund on
//!   `order.failed`); the shared participant handler, wiring and binary come with it from
//!   `servicekit`.

#[cfg(feature = "service")]
pub mod api;
pub mod domain;

/// The point service: its core and routes in the shared participant shell.
#[cfg(feature = "service")]
pub type PointParticipant = servicekit::participant::Simple<domain::Point>;
