//! Stock's part in the saga: reserve on `order.placed`, restore on `order.failed`.

use bus::consumer::HandleError;
use contract::ledger::settled_outcome_of;
use contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use eventlog::live::Live;
use eventlog::record::EventMeta;
use servicekit::participant::ParticipantDomain;
use uuid::Uuid;

use crate::domain::{self, Stock, StockCommand, StockEvent, StockState};

/// Plugs the stock domain into the shared participant handler.
pub struct StockParticipant;

impl ParticipantDomain for StockParticipant {
    type D = Stock;
    const PARTICIPANT: Participant = Participant::Stock;

    async fn on_placed(
        &self,
        _: &Live<Stock>,
        placed: &OrderPlaced,
        _: &EventMeta,
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

    fn settled_outcome(state: &StockState, order_id: Uuid) -> Option<ParticipantEvent> {
        settled_outcome_of(Participant::Stock, order_id, state.order_status(order_id))
    }
}
