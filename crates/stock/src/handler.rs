//! Stock's part in the saga: reserve on `order.placed`, restore on `order.failed`.

use store::consumer::HandleError;
use store::contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use store::live::Live;
use store::participant::ParticipantDomain;

use crate::domain::{self, Stock, StockCommand, StockEvent};

/// Plugs the stock domain into the shared participant handler.
pub struct StockParticipant;

impl ParticipantDomain for StockParticipant {
    type D = Stock;
    const PARTICIPANT: Participant = Participant::Stock;

    async fn on_placed(
        &self,
        _: &Live<Stock>,
        placed: &OrderPlaced,
    ) -> Result<Option<StockCommand>, HandleError> {
        Ok(Some(StockCommand::HandlePlaced {
            placed: placed.clone(),
        }))
    }

    async fn on_failed(
        &self,
        _: &Live<Stock>,
        failed: &OrderFailed,
    ) -> Result<Option<StockCommand>, HandleError> {
        Ok(Some(StockCommand::HandleFailed {
            order_id: failed.order_id,
        }))
    }

    fn outcome(event: &StockEvent) -> Option<ParticipantEvent> {
        domain::outcome(event)
    }
}
