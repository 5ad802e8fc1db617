//! The participants' ledger rules: what stock, coupon and point remember about each order
//! (tombstones, skipped compensations, ignored late placements), shared so each domain's
//! `evolve` applies them the same way, and which entries stay in memory ([`Orders`]). Pure: no
//! I/O.

use eventlog::resident::Resident;
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

/// A participant's per-order entries: in memory while the order is open (succeeded or rejected,
/// waiting for a possible `order.failed`) and among the last [`OPEN_WINDOW`] orders opened here;
/// settled orders (undone, nothing to undo, tombstones) and older ones live in the log only and
/// come back from it for the one command that needs them (see `eventlog::resident`).
pub type Orders<E> = Resident<Uuid, E>;

/// How many of the most recently opened orders a participant keeps in memory.
///
/// Counted in orders, not time, so the fold of the log retires the same entries at the same
/// point on every replay. An order that fails after this many newer ones is answered from the
/// log instead (one read), exactly as from memory. At ~200 bytes an entry this bounds the
/// entries to a few MB, and still covers every order still inside a 30 s saga deadline below
/// ~600 orders per second.
pub const OPEN_WINDOW: u64 = 20_000;

/// Records the first decision about an order, opening its entry; a second one is a bug in
/// `decide` (which sees the order's whole history, from memory or from the log).
pub fn record_new_order<E>(orders: &mut Orders<E>, order_id: Uuid, entry: E) {
    let previous = orders.open(order_id, entry, OPEN_WINDOW);
    assert!(
        previous.is_none(),
        "order {order_id} decided twice: decide must turn a repeat into a no-op"
    );
}

/// Settles an order whose part is over: its entry, if in memory, must be in one of `from` and
/// leaves. An entry no longer in memory has nothing to check: the event itself carries what the
/// balances need.
pub fn settle_order<E: OrderEntry>(
    orders: &mut Orders<E>,
    order_id: Uuid,
    from: &[ParticipantOrderStatus],
    what: &str,
) {
    if let Some(entry) = orders.get(&order_id) {
        let status = entry.status();
        assert!(
            from.contains(&status),
            "order {order_id}: {what} while {status:?}"
        );
        orders.settle(&order_id);
    }
}

/// Applies `Tombstoned`: the order failed before it was placed here. Settled at once, so only
/// the log keeps it; a late `order.placed` brings it back from there.
pub fn evolve_tombstoned<E>(orders: &mut Orders<E>, order_id: Uuid) {
    assert!(
        !orders.contains_key(&order_id),
        "order {order_id} tombstoned after a decision about it"
    );
}

/// Applies `CompensationSkipped`: a rejected order failed, so there is nothing to undo.
pub fn evolve_compensation_skipped<E: OrderEntry>(orders: &mut Orders<E>, order_id: Uuid) {
    settle_order(
        orders,
        order_id,
        &[ParticipantOrderStatus::Rejected],
        "compensation skipped although it was not rejected",
    );
}

/// Checks `PlacementIgnored`: only a tombstoned order ignores its placement.
pub fn evolve_placement_ignored<E: OrderEntry>(orders: &Orders<E>, order_id: Uuid) {
    if let Some(entry) = orders.get(&order_id) {
        assert_eq!(
            entry.status(),
            ParticipantOrderStatus::Tombstoned,
            "placement of order {order_id} ignored without a tombstone"
        );
    }
}

/// The cold key of a command about an order: its id, under which its records are in the log.
pub fn cold_key(order_id: Uuid) -> Option<String> {
    Some(order_id.to_string())
}

/// Whether the order of a cold key has its entry in memory (a key that is no order id has
/// nothing to bring back).
pub fn is_resident<E>(orders: &Orders<E>, key: &str) -> bool {
    key.parse::<Uuid>()
        .map_or(true, |order_id| orders.contains_key(&order_id))
}

/// Brings an order's entry back from its own events: `step` moves the entry on by one event
/// (leaving it as it is for an event about another order or none).
pub fn hydrate<E, Ev>(
    orders: &mut Orders<E>,
    key: &str,
    events: &[Ev],
    step: impl Fn(Option<E>, Uuid, &Ev) -> Option<E>,
) {
    let Ok(order_id) = key.parse::<Uuid>() else {
        return;
    };
    let entry = events
        .iter()
        .fold(None, |entry, event| step(entry, order_id, event));
    if let Some(entry) = entry {
        orders.hydrate(order_id, entry);
    }
}

/// Drops an entry brought back by [`hydrate`].
pub fn retire<E>(orders: &mut Orders<E>, key: &str) {
    if let Ok(order_id) = key.parse::<Uuid>() {
        orders.retire(&order_id);
    }
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
