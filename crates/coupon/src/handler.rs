//! Coupon's part in the saga: use on `order.placed`, release on `order.failed`.

use bus::consumer::HandleError;
use contract::ledger::settled_outcome_of;
use contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use eventlog::live::Live;
use eventlog::record::EventMeta;
use servicekit::participant::ParticipantDomain;
use uuid::Uuid;

use crate::domain::{self, Coupon, CouponCommand, CouponEvent, CouponState};

/// Plugs the coupon domain into the shared participant handler.
pub struct CouponParticipant;

impl ParticipantDomain for CouponParticipant {
    type D = Coupon;
    const PARTICIPANT: Participant = Participant::Coupon;

    async fn on_placed(
        &self,
        _: &Live<Coupon>,
        placed: &OrderPlaced,
        _: &EventMeta,
    ) -> Result<Option<CouponCommand>, HandleError> {
        Ok(Some(CouponCommand::HandlePlaced {
            placed: placed.clone(),
            now_ms: eventlog::clock::now_ms(),
        }))
    }

    async fn on_failed(
        &self,
        _: &Live<Coupon>,
        failed: &OrderFailed,
    ) -> Result<Option<CouponCommand>, HandleError> {
        Ok(Some(CouponCommand::HandleFailed {
            order_id: failed.order_id,
        }))
    }

    fn outcome(event: &CouponEvent) -> Option<ParticipantEvent> {
        domain::outcome(event)
    }

    fn settled_outcome(state: &CouponState, order_id: Uuid) -> Option<ParticipantEvent> {
        settled_outcome_of(Participant::Coupon, order_id, state.order_status(order_id))
    }
}
