//! Coupon's part in the saga: use on `order.placed`, release on `order.failed`.

use store::consumer::HandleError;
use store::contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use store::live::Live;
use store::participant::ParticipantDomain;

use crate::domain::{self, Coupon, CouponCommand, CouponEvent};

/// Plugs the coupon domain into the shared participant handler.
pub struct CouponParticipant;

impl ParticipantDomain for CouponParticipant {
    type D = Coupon;
    const PARTICIPANT: Participant = Participant::Coupon;

    async fn on_placed(
        &self,
        _: &Live<Coupon>,
        placed: &OrderPlaced,
    ) -> Result<Option<CouponCommand>, HandleError> {
        Ok(Some(CouponCommand::HandlePlaced {
            placed: placed.clone(),
            now_ms: store::service::now_ms(),
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
}
