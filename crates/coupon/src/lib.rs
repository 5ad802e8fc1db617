//! The coupon service.
//!
//! - [`domain`]: the pure core: issuing, using and releasing coupons.
//! - [`handler`]: its part in the saga, plugged into the shared participant handler.
//! - [`api`]: HTTP: coupon state, and admin issuing.
//! - [`app`] — wiring.

#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod app;
pub mod domain;
#[cfg(feature = "service")]
pub mod handler;
