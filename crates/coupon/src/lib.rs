//! The coupon service.
//!
//! - [`domain`]: the pure core: issuing, one use per order, release on failure.
//! - [`api`]: HTTP: coupon state and admin issuing.
//! - [`CouponParticipant`]: its part in the saga (use on `order.placed`, release on
//!   `order.failed`); the shared participant handler, wiring and binary come with it from
//!   `servicekit`.

#[cfg(feature = "service")]
pub mod api;
pub mod domain;

/// The coupon service: its core and routes in the shared participant shell.
#[cfg(feature = "service")]
pub type CouponParticipant = servicekit::participant::Simple<domain::Coupon>;
