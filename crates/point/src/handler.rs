//! Point's part in the saga: deduct on `order.placed`, refund on `order.failed`.

use bus::consumer::HandleError;
use contract::ledger::settled_outcome_of;
use contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use eventlog::live::Live;
use eventlog::record::EventMeta;
use servicekit::participant::ParticipantDomain;
use uuid::Uuid;

use crate::domain::{self, Point, PointCommand, PointEvent, PointState};

/// Plugs the point domain into the shared participant handler.
pub struct PointParticipant;

impl ParticipantDomain for PointParticipant {
    type D = Point;
    const PARTICIPANT: Participant = Participant::Point;

    async fn on_placed(
        &self,
        _: &Live<Point>,
        placed: &OrderPlaced,
        _: &EventMeta,
    ) -> Result<Option<PointCommand>, HandleError> {
        Ok(Some(PointCommand::HandlePlaced {
            placed: placed.clone(),
        }))
    }

    async fn on_failed(
        &self,
        _: &Live<Point>,
        failed: &OrderFailed,
    ) -> Result<Option<PointCommand>, HandleError> {
        Ok(Some(PointCommand::HandleFailed {
            order_id: failed.order_id,
        }))
    }

    fn outcome(event: &PointEvent) -> Option<ParticipantEvent> {
        domain::outcome(event)
    }

    fn settled_outcome(state: &PointState, order_id: Uuid) -> Option<ParticipantEvent> {
        settled_outcome_of(Participant::Point, order_id, state.order_status(order_id))
    }
}
