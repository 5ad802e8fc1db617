//! The coupon service.
//!
//! - [`domain`]: the pure core: all-or-nothing reservations, restores, recouponing.
//! - [`api`]: HTTP: availability and admin recouponing.
//! - [`CouponParticipant`]: its part in the saga (use on `order.placed`, release on
//!   `order.failed`); the shared participant handler, wiring and binary come with it from
//!   `servicekit`.

#[cfg(feature = "service")]
pub mod api;
pub mod domain;

#[cfg(feature = "service")]
pub use service::CouponParticipant;

#[cfg(feature = "service")]
mod service {
    use contract::{OrderPlaced, Participant};
    use servicekit::http::DomainApi;
    use servicekit::participant::SimpleParticipant;
    use uuid::Uuid;

    use crate::domain::{Coupon, CouponCommand, CouponState};

    /// The coupon service: its domain plugged into the shared participant shell.
    #[derive(Debug, Default)]
    pub struct CouponParticipant;

    impl SimpleParticipant for CouponParticipant {
        type D = Coupon;
        const PARTICIPANT: Participant = Participant::Coupon;

        fn placed_command(placed: &OrderPlaced) -> CouponCommand {
            CouponCommand::HandlePlaced {
                placed: placed.clone(),
                now_ms: eventlog::clock::now_ms(),
            }
        }

        fn failed_command(order_id: Uuid) -> CouponCommand {
            CouponCommand::HandleFailed { order_id }
        }

        fn render_state(state: &CouponState) -> serde_json::Value {
            serde_json::json!({ "coupons": state.coupons })
        }

        fn routes() -> axum::Router<DomainApi<Coupon>> {
            crate::api::routes()
        }
    }
}
