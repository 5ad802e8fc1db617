//! The point service.
//!
//! - [`domain`]: the pure core: all-or-nothing reservations, restores, repointing.
//! - [`api`]: HTTP: availability and admin repointing.
//! - [`PointParticipant`]: its part in the saga (deduct on `order.placed`, refund on
//!   `order.failed`); the shared participant handler, wiring and binary come with it from
//!   `servicekit`.

#[cfg(feature = "service")]
pub mod api;
pub mod domain;

#[cfg(feature = "service")]
pub use service::PointParticipant;

#[cfg(feature = "service")]
mod service {
    use contract::{OrderPlaced, Participant};
    use servicekit::http::DomainApi;
    use servicekit::participant::SimpleParticipant;
    use uuid::Uuid;

    use crate::domain::{Point, PointCommand, PointState};

    /// The point service: its domain plugged into the shared participant shell.
    #[derive(Debug, Default)]
    pub struct PointParticipant;

    impl SimpleParticipant for PointParticipant {
        type D = Point;
        const PARTICIPANT: Participant = Participant::Point;

        fn placed_command(placed: &OrderPlaced) -> PointCommand {
            PointCommand::HandlePlaced {
                placed: placed.clone(),
            }
        }

        fn failed_command(order_id: Uuid) -> PointCommand {
            PointCommand::HandleFailed { order_id }
        }

        fn render_state(state: &PointState) -> serde_json::Value {
            serde_json::json!({ "balances": state.balances })
        }

        fn routes() -> axum::Router<DomainApi<Point>> {
            crate::api::routes()
        }
    }
}
