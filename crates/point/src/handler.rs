//! Point's part in the saga: deduct on `order.placed`, refund on `order.failed`.

use store::consumer::HandleError;
use store::contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use store::live::Live;
use store::participant::ParticipantDomain;

use crate::domain::{self, Point, PointCommand, PointEvent};

/// Plugs the point domain into the shared participant handler.
pub struct PointParticipant;

impl ParticipantDomain for PointParticipant {
    type D = Point;
    const PARTICIPANT: Participant = Participant::Point;

    async fn on_placed(
        &self,
        _: &Live<Point>,
        placed: &OrderPlaced,
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
}
