//! The participants' ledger rules: what stock, coupon and point remember about each order
//! (tombstones, skipped compensations, ignored late placements), shared so each domain's
//! `evolve` applies them the same way. Pure: no I/O.

use std::collections::HashMap;

use uuid::Uuid;

use crate::wire::{OutcomeKind, Participant, ParticipantEvent};

/// Reason published when `order.failed` arrives before `order.placed`.
pub const TOMBSTONE_REASON: &str = "nothing to undo: order.failed arrived before order.placed";
/// Reason published when a rejected order fails.
pub const NOTHING_TO_UNDO: &str = "rejected, nothing to undo";
/// Reason recorded when `order.placed` arrives after the order's tombstone.
pub const LATE_PLACEMENT: &str = "order already failed (tombstone)";

/// Where one order stands in a participant (stock, coupon, point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParticipantOrderStatus {
    /// It did its part.
    Succeeded,
    /// It refused; nothing was done.
    Rejected,
    /// The order failed and its part is settled (undone, or nothing to undo).
    Compensated,
    /// Undoing failed.
    CompensationFailed,
    /// `order.failed` came first; a late `order.placed` is ignored.
    Tombstoned,
}

/// What a participant (stock, coupon, point) remembers about one order.
pub trait OrderEntry {
    /// Where the order stands.
    fn status(&self) -> ParticipantOrderStatus;
    /// Moves the order on.
    fn set_status(&mut self, status: ParticipantOrderStatus);
    /// The entry of an order whose `order.failed` came before its `order.placed`.
    fn tombstone() -> Self;
}

/// Records the first decision about an order; a second one is a bug in `decide`.
pub fn record_new_order<E>(orders: &mut HashMap<Uuid, E>, order_id: Uuid, entry: E) {
    let previous = orders.insert(order_id, entry);
    assert!(
        previous.is_none(),
        "order {order_id} decided twice: decide must turn a repeat into a no-op"
    );
}

/// The entry of an order an event is about; a missing one is a bug in `decide`.
pub fn order_mut<'a, E>(
    orders: &'a mut HashMap<Uuid, E>,
    order_id: Uuid,
    domain: &str,
) -> &'a mut E {
    match orders.get_mut(&order_id) {
        Some(entry) => entry,
        None => panic!("event about order {order_id}, which {domain} has never seen"),
    }
}

/// Applies `Tombstoned`: the order failed before it was placed here.
pub fn evolve_tombstoned<E: OrderEntry>(orders: &mut HashMap<Uuid, E>, order_id: Uuid) {
    record_new_order(orders, order_id, E::tombstone());
}

/// Applies `CompensationSkipped`: a rejected order failed, so there is nothing to undo.
pub fn evolve_compensation_skipped<E: OrderEntry>(
    orders: &mut HashMap<Uuid, E>,
    order_id: Uuid,
    domain: &str,
) {
    let entry = order_mut(orders, order_id, domain);
    assert_eq!(
        entry.status(),
        ParticipantOrderStatus::Rejected,
        "compensation of order {order_id} skipped although it was not rejected"
    );
    entry.set_status(ParticipantOrderStatus::Compensated);
}

/// Checks `PlacementIgnored`: only a tombstoned order ignores its placement.
pub fn evolve_placement_ignored<E: OrderEntry>(orders: &HashMap<Uuid, E>, order_id: Uuid) {
    assert_eq!(
        orders.get(&order_id).map(E::status),
        Some(ParticipantOrderStatus::Tombstoned),
        "placement of order {order_id} ignored without a tombstone"
    );
}

/// The compensation outcome a participant (stock, coupon, point) recorded for a settled order:
/// `Compensated` once its part was undone (or there was nothing to undo), with the tombstone's
/// reason for an order that failed before it was placed; `None` while the order is not settled.
pub fn settled_outcome_of(
    participant: Participant,
    order_id: Uuid,
    status: Option<ParticipantOrderStatus>,
) -> Option<ParticipantEvent> {
    let reason = match status? {
        ParticipantOrderStatus::Compensated => None,
        ParticipantOrderStatus::Tombstoned => Some(TOMBSTONE_REASON.to_owned()),
        ParticipantOrderStatus::Succeeded
        | ParticipantOrderStatus::Rejected
        | ParticipantOrderStatus::CompensationFailed => return None,
    };
    Some(ParticipantEvent {
        order_id,
        participant,
        kind: OutcomeKind::Compensated,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_settled_order_has_a_recorded_compensation_to_re_publish() {
        let order_id = Uuid::from_u128(1);
        let cases = [
            (None, None),
            (Some(ParticipantOrderStatus::Succeeded), None),
            (Some(ParticipantOrderStatus::Rejected), None),
            (Some(ParticipantOrderStatus::CompensationFailed), None),
            (
                Some(ParticipantOrderStatus::Compensated),
                Some((OutcomeKind::Compensated, None)),
            ),
            (
                Some(ParticipantOrderStatus::Tombstoned),
                Some((OutcomeKind::Compensated, Some(TOMBSTONE_REASON))),
            ),
        ];
        for (status, expected) in cases {
            // Given an order in this status; When asked for its settled outcome
            let settled = settled_outcome_of(Participant::Stock, order_id, status);
            // Then
            let got = settled
                .as_ref()
                .map(|event| (event.kind, event.reason.as_deref()));
            assert_eq!(got, expected, "{status:?}");
            if let Some(event) = settled {
                assert_eq!(event.order_id, order_id);
                assert_eq!(event.participant, Participant::Stock);
                assert_eq!(event.subject(), "stock.restored");
            }
        }
    }
}
