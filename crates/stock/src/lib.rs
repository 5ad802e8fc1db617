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

#[cfg(feature = "service")]
pub use service::StockParticipant;

#[cfg(feature = "service")]
mod service {
    use contract::{OrderPlaced, Participant};
    use servicekit::http::DomainApi;
    use servicekit::participant::SimpleParticipant;
    use uuid::Uuid;

    use crate::domain::{Stock, StockCommand, StockState};

    /// The stock service: its domain plugged into the shared participant shell.
    #[derive(Debug, Default)]
    pub struct StockParticipant;

    impl SimpleParticipant for StockParticipant {
        type D = Stock;
        const PARTICIPANT: Participant = Participant::Stock;

        fn placed_command(placed: &OrderPlaced) -> StockCommand {
            StockCommand::HandlePlaced {
                placed: placed.clone(),
            }
        }

        fn failed_command(order_id: Uuid) -> StockCommand {
            StockCommand::HandleFailed { order_id }
        }

        fn render_state(state: &StockState) -> serde_json::Value {
            serde_json::json!({ "available": state.available })
        }

        fn routes() -> axum::Router<DomainApi<Stock>> {
            crate::api::routes()
        }
    }
}
