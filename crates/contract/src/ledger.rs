//! The participants' ledger rules: what stock, coupon and point remember about each order
//! (tombstones, skipped compensations, ignored late placements), shared so each domain's
//! `evolve` applies them the same way, and which entries stay in memory ([`Orders`]). Pure: no
//! I/O.

use eventlog::resident::Resident;
use uuid::Uuid;

use eventlog::domain::Domain;

use crate::wire::{OrderPlaced, OutcomeKind, Participant, ParticipantEvent};

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

/// `order.failed` arrived before `order.placed`: nothing to undo, remember the order failed.
///
/// Carried by every participant's `Tombstoned` variant; as a newtype variant it encodes (postcard
/// and JSON) exactly as the struct variant it replaced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    /// The order.
    pub order_id: Uuid,
}

/// A rejected order failed: nothing was done, so nothing is undone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCompensation {
    /// The order.
    pub order_id: Uuid,
    /// Why nothing was undone.
    pub reason: String,
}

/// `order.placed` arrived after the order's failure was settled and was ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredPlacement {
    /// The order.
    pub order_id: Uuid,
    /// Why it was ignored.
    pub reason: String,
}

/// What a participant's event means to the saga: all the shared rules need to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The participant's own business, about no order (a restock, a credit, an issued coupon),
    /// filed under the stream `<prefix>-<key>`.
    Own(&'static str, &'a str),
    /// About an order, but nothing the saga hears of (payment's recorded intent to charge).
    Recorded(Uuid),
    /// It did its part of the order.
    Succeeded(Uuid),
    /// It refused the order, for this reason.
    Rejected(Uuid, &'a str),
    /// Its part of the failed order is undone.
    Undone(Uuid),
    /// Undoing its part failed for good, for this reason.
    UndoFailed(Uuid, &'a str),
    /// See [`Tombstone`].
    Tombstoned(Uuid),
    /// See [`SkippedCompensation`].
    CompensationSkipped(Uuid, &'a str),
    /// See [`IgnoredPlacement`].
    PlacementIgnored(Uuid),
}

impl Step<'_> {
    /// The order the event is about; `None` for the participant's own business.
    pub fn order_id(self) -> Option<Uuid> {
        match self {
            Step::Own(..) => None,
            Step::Recorded(id)
            | Step::Succeeded(id)
            | Step::Rejected(id, _)
            | Step::Undone(id)
            | Step::UndoFailed(id, _)
            | Step::Tombstoned(id)
            | Step::CompensationSkipped(id, _)
            | Step::PlacementIgnored(id) => Some(id),
        }
    }
}

impl<'a> From<&'a Tombstone> for Step<'a> {
    fn from(fact: &'a Tombstone) -> Self {
        Step::Tombstoned(fact.order_id)
    }
}

impl<'a> From<&'a SkippedCompensation> for Step<'a> {
    fn from(fact: &'a SkippedCompensation) -> Self {
        Step::CompensationSkipped(fact.order_id, &fact.reason)
    }
}

impl<'a> From<&'a IgnoredPlacement> for Step<'a> {
    fn from(fact: &'a IgnoredPlacement) -> Self {
        Step::PlacementIgnored(fact.order_id)
    }
}

/// A participant's event: its meaning to the saga, and the shared facts it can record.
pub trait LedgerEvent:
    From<Tombstone> + From<SkippedCompensation> + From<IgnoredPlacement>
{
    /// What this event means to the saga.
    fn step(&self) -> Step<'_>;
}

/// Implements `From` each shared fact for a participant's event enum whose `Tombstoned`,
/// `CompensationSkipped` and `PlacementIgnored` variants carry them.
#[macro_export]
macro_rules! ledger_facts {
    ($event:ident) => {
        impl From<$crate::ledger::Tombstone> for $event {
            fn from(fact: $crate::ledger::Tombstone) -> Self {
                $event::Tombstoned(fact)
            }
        }
        impl From<$crate::ledger::SkippedCompensation> for $event {
            fn from(fact: $crate::ledger::SkippedCompensation) -> Self {
                $event::CompensationSkipped(fact)
            }
        }
        impl From<$crate::ledger::IgnoredPlacement> for $event {
            fn from(fact: $crate::ledger::IgnoredPlacement) -> Self {
                $event::PlacementIgnored(fact)
            }
        }
    };
}

/// The wire event a participant's event publishes, if any.
pub fn outcome<E: LedgerEvent>(participant: Participant, event: &E) -> Option<ParticipantEvent> {
    let (order_id, kind, reason) = match event.step() {
        Step::Own(..) | Step::Recorded(_) | Step::PlacementIgnored(_) => return None,
        Step::Succeeded(id) => (id, OutcomeKind::Succeeded, None),
        Step::Rejected(id, reason) => (id, OutcomeKind::Rejected, Some(reason)),
        Step::Undone(id) => (id, OutcomeKind::Compensated, None),
        Step::UndoFailed(id, reason) => (id, OutcomeKind::CompensationFailed, Some(reason)),
        Step::Tombstoned(id) => (id, OutcomeKind::Compensated, Some(TOMBSTONE_REASON)),
        Step::CompensationSkipped(id, reason) => (id, OutcomeKind::Compensated, Some(reason)),
    };
    Some(ParticipantEvent {
        order_id,
        participant,
        kind,
        reason: reason.map(str::to_owned),
    })
}

/// The stream of the order whose id is `order_id` (its correlation id): `order-<id>`.
pub fn order_stream(order_id: &str) -> String {
    eventlog::event_store::correlation_stream(order_id)
}

/// The stream a participant's event is filed under: its order's, or its own aggregate's.
pub fn stream_of<E: LedgerEvent>(event: &E) -> String {
    match event.step() {
        Step::Own(prefix, key) => format!("{prefix}-{key}"),
        step => match step.order_id() {
            Some(order_id) => order_stream(&order_id.to_string()),
            None => unreachable!("only Own steps are about no order"),
        },
    }
}

/// The shared fact: the order failed before it was placed here.
pub fn tombstoned<E: LedgerEvent>(order_id: Uuid) -> E {
    Tombstone { order_id }.into()
}

/// The shared fact: a rejected order failed, so there is nothing to undo.
pub fn compensation_skipped<E: LedgerEvent>(order_id: Uuid) -> E {
    SkippedCompensation {
        order_id,
        reason: NOTHING_TO_UNDO.to_owned(),
    }
    .into()
}

/// The shared fact: `order.placed` came after the order's failure was settled.
pub fn placement_ignored<E: LedgerEvent>(order_id: Uuid, reason: &str) -> E {
    IgnoredPlacement {
        order_id,
        reason: reason.to_owned(),
    }
    .into()
}

/// Decides `order.placed` the way every participant does for an order it has seen: ignored after
/// a tombstone, nothing new for a redelivery (the shell re-publishes the recorded outcome);
/// `fresh` decides an order never seen.
pub fn decide_placed<E: LedgerEvent>(
    status: Option<ParticipantOrderStatus>,
    order_id: Uuid,
    fresh: impl FnOnce() -> Vec<E>,
) -> Vec<E> {
    match status {
        Some(ParticipantOrderStatus::Tombstoned) => {
            vec![placement_ignored(order_id, LATE_PLACEMENT)]
        }
        Some(_) => vec![],
        None => fresh(),
    }
}

/// Decides `order.failed`: a tombstone for an order never seen, a skipped compensation for a
/// rejected one, nothing for a settled one; `undo` undoes the part it did (a failed undo, not
/// produced today, is retried like a fresh one). `orders` holds the order's entry if it has one:
/// a command about an order that left memory is decided on its entry brought back from the log.
pub fn decide_failed<E: LedgerEvent, En: OrderEntry>(
    orders: &Orders<En>,
    order_id: Uuid,
    undo: impl FnOnce(&En) -> Vec<E>,
) -> Vec<E> {
    let Some(entry) = orders.get(&order_id) else {
        return vec![tombstoned(order_id)];
    };
    match entry.status() {
        ParticipantOrderStatus::Succeeded | ParticipantOrderStatus::CompensationFailed => {
            undo(entry)
        }
        ParticipantOrderStatus::Rejected => vec![compensation_skipped(order_id)],
        ParticipantOrderStatus::Compensated | ParticipantOrderStatus::Tombstoned => vec![],
    }
}

/// Moves an order's entry on for an event (`domain` names the participant in the panics that
/// catch a `decide` bug); `entry` builds the entry of an order it succeeded or refused.
///
/// Retention happens here, inside `evolve`, so the fold of the log, the live state and a
/// snapshot keep the same entries: a success or refusal opens the order's entry (the oldest
/// leaves once [`OPEN_WINDOW`] newer ones opened); an undo, a skipped compensation and a
/// tombstone settle it, and it leaves. An event about an order whose entry is no longer in
/// memory has nothing to check or change here: the event itself carries what the balances need.
pub fn evolve_order<E: OrderEntry>(
    orders: &mut Orders<E>,
    step: Step<'_>,
    domain: &str,
    entry: impl FnOnce(ParticipantOrderStatus) -> E,
) {
    match step {
        Step::Own(..) | Step::Recorded(_) => {}
        Step::Succeeded(id) => {
            record_new_order(orders, id, entry(ParticipantOrderStatus::Succeeded))
        }
        Step::Rejected(id, _) => {
            record_new_order(orders, id, entry(ParticipantOrderStatus::Rejected))
        }
        Step::Undone(id) => settle_order(
            orders,
            id,
            &[
                ParticipantOrderStatus::Succeeded,
                ParticipantOrderStatus::CompensationFailed,
            ],
            domain,
            "undone",
        ),
        Step::UndoFailed(id, _) => {
            // Not settled: an operator's retry may still undo it, so it stays while in memory.
            if let Some(entry) = orders.get_mut(&id) {
                assert!(
                    matches!(
                        entry.status(),
                        ParticipantOrderStatus::Succeeded
                            | ParticipantOrderStatus::CompensationFailed
                    ),
                    "{domain}: order {id} undo failed while {:?}",
                    entry.status()
                );
                entry.set_status(ParticipantOrderStatus::CompensationFailed);
            }
        }
        // Settled at once, so only the log keeps it; a late `order.placed` brings it back.
        Step::Tombstoned(id) => assert!(
            !orders.contains_key(&id),
            "{domain}: order {id} tombstoned after a decision about it"
        ),
        Step::CompensationSkipped(id, _) => settle_order(
            orders,
            id,
            &[ParticipantOrderStatus::Rejected],
            domain,
            "compensation skipped although it was not rejected",
        ),
        Step::PlacementIgnored(id) => {
            if let Some(entry) = orders.get(&id) {
                assert_eq!(
                    entry.status(),
                    ParticipantOrderStatus::Tombstoned,
                    "{domain}: placement of order {id} ignored without a tombstone"
                );
            }
        }
    }
}

/// An order's entry moved on by one of its events, as the whole history would leave it
/// (balances aside): what [`hydrate`] folds the order's own events with. `entry` builds the
/// entry of an order the event succeeded or refused (as for [`evolve_order`]).
pub fn replay_entry<E: OrderEntry, Ev: LedgerEvent>(
    current: Option<E>,
    order_id: Uuid,
    event: &Ev,
    entry: impl FnOnce(&Ev, ParticipantOrderStatus) -> E,
) -> Option<E> {
    let step = event.step();
    if step.order_id() != Some(order_id) {
        return current;
    }
    let status = match step {
        Step::Own(..) | Step::Recorded(_) | Step::PlacementIgnored(_) => return current,
        Step::Succeeded(_) => return Some(entry(event, ParticipantOrderStatus::Succeeded)),
        Step::Rejected(..) => return Some(entry(event, ParticipantOrderStatus::Rejected)),
        Step::Tombstoned(_) => return Some(E::tombstone()),
        Step::Undone(_) | Step::CompensationSkipped(..) => ParticipantOrderStatus::Compensated,
        Step::UndoFailed(..) => ParticipantOrderStatus::CompensationFailed,
    };
    let mut current = current?;
    current.set_status(status);
    Some(current)
}

/// A participant's folded state (stock, coupon, point), as far as the shared rules see it.
pub trait LedgerState {
    /// What it remembers about one order.
    type Entry: OrderEntry;

    /// The orders in memory, by id (see [`Orders`]).
    fn orders(&self) -> &Orders<Self::Entry>;

    /// Where an order stands; `None` for an order never seen (or one that did not involve it),
    /// or one not in memory (a command or `Live::read_key` about it brings it back first).
    fn order_status(&self, order_id: Uuid) -> Option<ParticipantOrderStatus> {
        self.orders().get(&order_id).map(OrderEntry::status)
    }
}

/// A participant's pure core (stock, coupon, point) as the shared shell drives it: which
/// participant it is, and the commands the saga's messages become.
pub trait ParticipantCore: Domain<State: LedgerState, Event: LedgerEvent> {
    /// Which participant this is (its name is the service's name).
    const PARTICIPANT: Participant;

    /// The command for an `order.placed` that involves it, decided at `now_ms` (ms since the
    /// Unix epoch; the shell reads the clock).
    fn placed_command(placed: &OrderPlaced, now_ms: u64) -> Self::Command;

    /// The command for an `order.failed` of an order that involved it.
    fn failed_command(order_id: Uuid) -> Self::Command;

    /// The state as `replay` prints it.
    fn render_state(state: &Self::State) -> serde_json::Value;
}

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
fn settle_order<E: OrderEntry>(
    orders: &mut Orders<E>,
    order_id: Uuid,
    from: &[ParticipantOrderStatus],
    domain: &str,
    what: &str,
) {
    if let Some(entry) = orders.get(&order_id) {
        let status = entry.status();
        assert!(
            from.contains(&status),
            "{domain}: order {order_id}: {what} while {status:?}"
        );
        orders.settle(&order_id);
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

/// Writes, inside a participant's `impl Domain`, the hooks its order entries leave memory and come
/// back from the log by (`is_resident`, `hydrate`, `retire`: see [`Orders`]), and how its events
/// are named and filed (`event_type`, the strum name; `stream_of`, [`stream_of`]). `orders` is
/// the state's field holding the entries; `entry_of` builds the entry of an order an event
/// succeeded or refused (as for [`replay_entry`]), or `replay` moves an entry on by one event (as
/// [`hydrate`] takes it). Which command names which order (`cold_key`) stays the participant's.
///
/// A macro because `Domain` is eventlog's trait: the logic is in the functions it calls.
#[macro_export]
macro_rules! ledger_hooks {
    (orders: $orders:ident, entry_of: $entry_of:path) => {
        $crate::ledger_hooks!(orders: $orders, replay: |entry, order_id, event| {
            $crate::ledger::replay_entry(entry, order_id, event, $entry_of)
        });
    };
    (orders: $orders:ident, replay: $replay:expr) => {
        fn is_resident(state: &Self::State, key: &str) -> bool {
            $crate::ledger::is_resident(&state.$orders, key)
        }

        fn hydrate(state: &mut Self::State, key: &str, events: &[Self::Event]) {
            $crate::ledger::hydrate(&mut state.$orders, key, events, $replay);
        }

        fn retire(state: &mut Self::State, key: &str) {
            $crate::ledger::retire(&mut state.$orders, key);
        }

        fn cold_stream(key: &str) -> Option<String> {
            // Every event about an order is filed on its stream (`stream_of`).
            Some($crate::ledger::order_stream(key))
        }

        fn event_type(event: &Self::Event) -> &'static str {
            event.into()
        }

        fn stream_of(event: &Self::Event) -> String {
            $crate::ledger::stream_of(event)
        }
    };
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
    fn the_shared_reasons_keep_their_wording() {
        // Clients and operators read these on the wire and in the timeline.
        assert_eq!(NOTHING_TO_UNDO, "rejected, nothing to undo");
        assert_eq!(LATE_PLACEMENT, "order already failed (tombstone)");
        assert_eq!(
            TOMBSTONE_REASON,
            "nothing to undo: order.failed arrived before order.placed"
        );
    }

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
