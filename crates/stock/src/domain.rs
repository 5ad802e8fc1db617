//! Stock's pure core: restocks, all-or-nothing reservations and their restoration.
//!
//! No I/O, clock or randomness: everything a decision needs travels inside the command.

use std::collections::BTreeMap;

use contract::ledger::{self, LedgerEvent, ParticipantCore, Step};
pub use contract::ledger::{
    IgnoredPlacement, LedgerState, ParticipantOrderStatus, SkippedCompensation, Tombstone,
    LATE_PLACEMENT, NOTHING_TO_UNDO, TOMBSTONE_REASON,
};
use contract::{OrderPlaced, Participant, ParticipantEvent};
use eventlog::domain::Domain;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest SKU accepted, in characters.
pub const MAX_SKU_LEN: usize = 64;

/// Most units one SKU may have available.
///
/// Far below `u64::MAX` so that restoring reservations on top of a full shelf can never overflow.
pub const MAX_AVAILABLE: u64 = 1 << 50;

/// The stock domain: quantities per SKU and the reservations made for orders.
pub struct Stock;

/// What the stock service remembers about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEntry {
    /// Where the order stands.
    pub status: ParticipantOrderStatus,
    /// The reserved quantity per SKU; empty unless the reservation succeeded.
    pub lines: Vec<(String, u64)>,
}

impl ledger::OrderEntry for OrderEntry {
    fn status(&self) -> ParticipantOrderStatus {
        self.status
    }

    fn set_status(&mut self, status: ParticipantOrderStatus) {
        self.status = status;
    }

    fn tombstone() -> Self {
        OrderEntry {
            status: ParticipantOrderStatus::Tombstoned,
            lines: Vec::new(),
        }
    }
}

/// The folded state: availability per SKU and the orders still open here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockState {
    /// Units available per SKU; a SKU is known once restocked.
    pub available: BTreeMap<String, u64>,
    /// Open orders by id (reserved or insufficient, not yet failed), the most recent
    /// [`ledger::OPEN_WINDOW`]; the others are in the log (see [`ledger::Orders`]).
    pub orders: ledger::Orders<OrderEntry>,
}

impl StockState {
    /// Units available for a SKU; `None` for a SKU never restocked.
    pub fn available(&self, sku: &str) -> Option<u64> {
        self.available.get(sku).copied()
    }
}

impl LedgerState for StockState {
    type Entry = OrderEntry;

    fn orders(&self) -> &ledger::Orders<OrderEntry> {
        &self.orders
    }
}

/// The entry of an order an event reserved for or refused (`status` says which).
fn entry_of(event: &StockEvent, status: ParticipantOrderStatus) -> OrderEntry {
    let lines = match event {
        StockEvent::Reserved { lines, .. } => lines.clone(),
        _ => Vec::new(),
    };
    OrderEntry { status, lines }
}

/// A fact the stock service recorded.
// Postcard encodes variants by position: this order is final, append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum StockEvent {
    /// Units were added to a SKU.
    Restocked {
        /// The SKU.
        sku: String,
        /// Units added.
        qty: u64,
    },
    /// Every line of an order was reserved.
    Reserved {
        /// The order.
        order_id: Uuid,
        /// Reserved units per SKU, duplicate SKUs summed, sorted by SKU.
        lines: Vec<(String, u64)>,
    },
    /// Some line of an order could not be reserved; nothing was.
    Insufficient {
        /// The order.
        order_id: Uuid,
        /// Every short line, e.g. `sku-1: wanted 5, available 2`.
        reason: String,
    },
    /// A failed order's reservation was given back.
    Restored {
        /// The order.
        order_id: Uuid,
        /// Units given back per SKU.
        lines: Vec<(String, u64)>,
    },
    /// The order failed before it was placed here.
    Tombstoned(Tombstone),
    /// A rejected order failed: nothing was reserved, so nothing is undone.
    CompensationSkipped(SkippedCompensation),
    /// A placement after the order's tombstone.
    PlacementIgnored(IgnoredPlacement),
}

contract::ledger_facts!(StockEvent);

impl LedgerEvent for StockEvent {
    fn step(&self) -> Step<'_> {
        match self {
            StockEvent::Restocked { sku, .. } => Step::Own("sku", sku),
            StockEvent::Reserved { order_id, .. } => Step::Succeeded(*order_id),
            StockEvent::Insufficient { order_id, reason } => Step::Rejected(*order_id, reason),
            StockEvent::Restored { order_id, .. } => Step::Undone(*order_id),
            StockEvent::Tombstoned(fact) => fact.into(),
            StockEvent::CompensationSkipped(fact) => fact.into(),
            StockEvent::PlacementIgnored(fact) => fact.into(),
        }
    }
}

/// An intention to change the stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    /// Admin: add units to a SKU, making it known if new.
    Restock {
        /// The SKU.
        sku: String,
        /// Units to add, at least 1.
        qty: u64,
    },
    /// `order.placed` arrived: reserve every line or none.
    HandlePlaced {
        /// The order.
        placed: OrderPlaced,
    },
    /// `order.failed` arrived: give the reservation back.
    HandleFailed {
        /// The order.
        order_id: Uuid,
    },
}

/// Why a stock command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockRejection {
    /// The SKU is empty.
    #[error("sku must not be empty")]
    EmptySku,
    /// The SKU is longer than [`MAX_SKU_LEN`] characters.
    #[error("sku is {len} characters, at most {max} allowed", max = MAX_SKU_LEN)]
    SkuTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A restock of zero units.
    #[error("qty must be at least 1")]
    ZeroQty,
    /// The restock would take the SKU above [`MAX_AVAILABLE`].
    #[error("qty {qty} on top of {available} available would take {sku} above {max}", max = MAX_AVAILABLE)]
    AboveLimit {
        /// The SKU.
        sku: String,
        /// Units available now.
        available: u64,
        /// Units asked for.
        qty: u64,
    },
}

impl StockRejection {
    /// The request field at fault, for a client error naming it.
    pub fn field(&self) -> &'static str {
        match self {
            StockRejection::EmptySku | StockRejection::SkuTooLong { .. } => "sku",
            StockRejection::ZeroQty | StockRejection::AboveLimit { .. } => "qty",
        }
    }
}

/// The wire event a domain event publishes, if any.
pub fn outcome(event: &StockEvent) -> Option<ParticipantEvent> {
    ledger::outcome(Participant::Stock, event)
}

fn restock(state: &StockState, sku: String, qty: u64) -> Result<Vec<StockEvent>, StockRejection> {
    if sku.is_empty() {
        return Err(StockRejection::EmptySku);
    }
    let len = sku.chars().count();
    if len > MAX_SKU_LEN {
        return Err(StockRejection::SkuTooLong { len });
    }
    if qty == 0 {
        return Err(StockRejection::ZeroQty);
    }
    let available = state.available(&sku).unwrap_or(0);
    if available.saturating_add(qty) > MAX_AVAILABLE {
        return Err(StockRejection::AboveLimit {
            sku,
            available,
            qty,
        });
    }
    Ok(vec![StockEvent::Restocked { sku, qty }])
}

fn handle_placed(state: &StockState, placed: &OrderPlaced) -> Vec<StockEvent> {
    let order_id = placed.order_id;
    ledger::decide_placed(state.order_status(order_id), order_id, || {
        // The same SKU on two lines must be checked against the shelf as one demand.
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for line in &placed.items {
            let qty = wanted.entry(line.sku.as_str()).or_insert(0);
            *qty = qty.saturating_add(u64::from(line.qty));
        }
        let shortfalls: Vec<String> = wanted
            .iter()
            .filter_map(|(sku, &qty)| match state.available(sku) {
                None => Some(format!("{sku}: unknown sku")),
                Some(available) if available < qty => {
                    Some(format!("{sku}: wanted {qty}, available {available}"))
                }
                Some(_) => None,
            })
            .collect();
        if shortfalls.is_empty() {
            let lines = wanted
                .into_iter()
                .map(|(sku, qty)| (sku.to_owned(), qty))
                .collect();
            vec![StockEvent::Reserved { order_id, lines }]
        } else {
            vec![StockEvent::Insufficient {
                order_id,
                reason: shortfalls.join("; "),
            }]
        }
    })
}

fn handle_failed(state: &StockState, order_id: Uuid) -> Vec<StockEvent> {
    ledger::decide_failed(&state.orders, order_id, |entry| {
        vec![StockEvent::Restored {
            order_id,
            lines: entry.lines.clone(),
        }]
    })
}

/// Adds units to a SKU; `decide` caps availability, so an overflow is a bug.
fn put_back(available: &mut BTreeMap<String, u64>, sku: &str, qty: u64) {
    let units = available.entry(sku.to_owned()).or_insert(0);
    *units = match units.checked_add(qty) {
        Some(sum) => sum,
        None => panic!("adding {qty} of {sku} overflows: decide caps availability"),
    };
}

impl Domain for Stock {
    type State = StockState;
    type Event = StockEvent;
    type Command = StockCommand;
    type Rejection = StockRejection;

    fn decide(
        state: &StockState,
        command: StockCommand,
    ) -> Result<Vec<StockEvent>, StockRejection> {
        match command {
            StockCommand::Restock { sku, qty } => restock(state, sku, qty),
            StockCommand::HandlePlaced { placed } => Ok(handle_placed(state, &placed)),
            StockCommand::HandleFailed { order_id } => Ok(handle_failed(state, order_id)),
        }
    }

    fn evolve(state: &mut StockState, event: &StockEvent) {
        ledger::evolve_order(&mut state.orders, event.step(), "stock", |status| {
            entry_of(event, status)
        });
        match event {
            StockEvent::Restocked { sku, qty } => put_back(&mut state.available, sku, *qty),
            StockEvent::Reserved { order_id, lines } => {
                for (sku, qty) in lines {
                    let available = match state.available.get_mut(sku) {
                        Some(available) if *available >= *qty => available,
                        other => panic!(
                            "order {order_id} reserved {qty} of {sku} with only {other:?} available"
                        ),
                    };
                    *available -= qty;
                }
            }
            StockEvent::Restored { lines, .. } => {
                // The lines come from the event: the entry may have left memory long ago.
                for (sku, qty) in lines {
                    put_back(&mut state.available, sku, *qty);
                }
            }
            StockEvent::Insufficient { .. }
            | StockEvent::Tombstoned(_)
            | StockEvent::CompensationSkipped(_)
            | StockEvent::PlacementIgnored(_) => {}
        }
    }

    fn cold_key(command: &StockCommand) -> Option<String> {
        match command {
            StockCommand::Restock { .. } => None,
            StockCommand::HandlePlaced { placed } => ledger::cold_key(placed.order_id),
            StockCommand::HandleFailed { order_id } => ledger::cold_key(*order_id),
        }
    }

    // 2: open orders only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    contract::ledger_hooks!(orders: orders, entry_of: entry_of);
}

impl ParticipantCore for Stock {
    const PARTICIPANT: Participant = Participant::Stock;

    fn placed_command(placed: &OrderPlaced, _now_ms: u64) -> StockCommand {
        let placed = placed.clone();
        StockCommand::HandlePlaced { placed }
    }

    fn failed_command(order_id: Uuid) -> StockCommand {
        StockCommand::HandleFailed { order_id }
    }

    fn render_state(state: &StockState) -> serde_json::Value {
        serde_json::json!({ "available": state.available })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::fixtures::{self, check_variants, line, order, LedgerCase};
    use eventlog::scenario::given;

    fn placed(order_id: Uuid, items: &[(&str, u32)]) -> OrderPlaced {
        let items = items
            .iter()
            .map(|(sku, qty)| line(sku, *qty, 100))
            .collect();
        OrderPlaced {
            items,
            ..fixtures::placed(order_id)
        }
    }

    fn restock(sku: &str, qty: u64) -> StockCommand {
        StockCommand::Restock {
            sku: sku.into(),
            qty,
        }
    }

    fn restocked(sku: &str, qty: u64) -> StockEvent {
        StockEvent::Restocked {
            sku: sku.into(),
            qty,
        }
    }

    fn reserved(order_id: Uuid, lines: &[(&str, u64)]) -> StockEvent {
        StockEvent::Reserved {
            order_id,
            lines: lines.iter().map(|(s, q)| ((*s).into(), *q)).collect(),
        }
    }

    fn restored(order_id: Uuid, lines: &[(&str, u64)]) -> StockEvent {
        StockEvent::Restored {
            order_id,
            lines: lines.iter().map(|(s, q)| ((*s).into(), *q)).collect(),
        }
    }

    fn insufficient(order_id: Uuid, reason: &str) -> StockEvent {
        StockEvent::Insufficient {
            order_id,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_restock_adds_to_what_is_available() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 5)]);
        // When
        let when = scenario.when(restock("sku-1", 3));
        // Then
        let state = when.then([restocked("sku-1", 3)]);
        assert_eq!(state.available("sku-1"), Some(8));
        assert_eq!(state.available("sku-2"), None);
    }

    #[test]
    fn restocking_validates_the_sku_and_the_qty() {
        let too_long = "s".repeat(MAX_SKU_LEN + 1);
        let cases = [
            (vec![], restock("sku-1", 0), StockRejection::ZeroQty),
            (vec![], restock("", 1), StockRejection::EmptySku),
            (
                vec![],
                restock(&too_long, 1),
                StockRejection::SkuTooLong { len: 65 },
            ),
            (
                vec![restocked("sku-1", MAX_AVAILABLE - 1)],
                restock("sku-1", 2),
                StockRejection::AboveLimit {
                    sku: "sku-1".into(),
                    available: MAX_AVAILABLE - 1,
                    qty: 2,
                },
            ),
        ];
        for (history, command, rejection) in cases {
            given::<Stock>(history)
                .when(command)
                .then_rejected(rejection);
        }
        let longest = "s".repeat(MAX_SKU_LEN);
        given::<Stock>([])
            .when(restock(&longest, 1))
            .then([restocked(&longest, 1)]);
    }

    #[test]
    fn a_placement_reserves_every_line_or_none() {
        // The shelf, the order's lines, what is decided, the shelf after.
        type Case = (
            &'static [(&'static str, u64)],
            &'static [(&'static str, u32)],
            StockEvent,
            &'static [u64],
        );
        let cases: [Case; 5] = [
            (
                &[("sku-1", 5), ("sku-2", 1)],
                &[("sku-2", 1), ("sku-1", 5)],
                reserved(order(1), &[("sku-1", 5), ("sku-2", 1)]),
                &[0, 0],
            ),
            (
                &[("sku-1", 5), ("sku-2", 2)],
                &[("sku-1", 5), ("sku-2", 3)],
                insufficient(order(1), "sku-2: wanted 3, available 2"),
                &[5, 2],
            ),
            // The same SKU on two lines is one demand, reserved as one line.
            (
                &[("sku-1", 5)],
                &[("sku-1", 3), ("sku-1", 3)],
                insufficient(order(1), "sku-1: wanted 6, available 5"),
                &[5],
            ),
            (
                &[("sku-1", 6)],
                &[("sku-1", 3), ("sku-1", 3)],
                reserved(order(1), &[("sku-1", 6)]),
                &[0],
            ),
            // Every shortfall is named, an unknown SKU too.
            (
                &[("sku-1", 2)],
                &[("sku-9", 1), ("sku-1", 5)],
                insufficient(order(1), "sku-1: wanted 5, available 2; sku-9: unknown sku"),
                &[2],
            ),
        ];
        for (shelf, lines, decided, after) in cases {
            // Given
            let scenario = given::<Stock>(shelf.iter().map(|(sku, qty)| restocked(sku, *qty)));
            // When
            let when = scenario.when(StockCommand::HandlePlaced {
                placed: placed(order(1), lines),
            });
            // Then
            let status = match decided {
                StockEvent::Reserved { .. } => ParticipantOrderStatus::Succeeded,
                _ => ParticipantOrderStatus::Rejected,
            };
            let state = when.then([decided]);
            for ((sku, _), available) in shelf.iter().zip(after) {
                assert_eq!(state.available(sku), Some(*available), "{sku}");
            }
            assert_eq!(state.order_status(order(1)), Some(status));
        }
    }

    #[test]
    fn a_failed_order_gets_its_reservation_back() {
        // Given
        let scenario = given::<Stock>([
            restocked("sku-1", 5),
            reserved(order(1), &[("sku-1", 4)]),
            restocked("sku-1", 10),
        ]);
        // When
        let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([StockEvent::Restored {
            order_id: order(1),
            lines: vec![("sku-1".into(), 4)],
        }]);
        assert_eq!(state.available("sku-1"), Some(15));
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    /// `OPEN_WINDOW` newer orders (rejected: no stock moves), enough to push order(1) out.
    fn newer_orders() -> impl Iterator<Item = StockEvent> {
        (2..=u128::from(ledger::OPEN_WINDOW) + 1)
            .map(|n| insufficient(order(n), "sku-9: unknown sku"))
    }

    #[test]
    fn a_settled_order_leaves_memory_and_the_balance_stays() {
        // Given an order reserved then restored, and one only reserved
        let scenario = given::<Stock>([
            restocked("sku-1", 5),
            reserved(order(1), &[("sku-1", 2)]),
            reserved(order(2), &[("sku-1", 1)]),
        ]);
        // When order 1 fails
        let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
        // Then its entry left, the open one stayed, and the shelf holds what it should
        let state = when.then([restored(order(1), &[("sku-1", 2)])]);
        assert_eq!(state.orders.len(), 1);
        assert_eq!(
            state.order_status(order(2)),
            Some(ParticipantOrderStatus::Succeeded)
        );
        assert_eq!(state.available("sku-1"), Some(4));
    }

    #[test]
    fn an_open_order_leaves_memory_once_the_window_of_newer_orders_passed() {
        // Given order 1 reserved, then OPEN_WINDOW - 1 newer orders
        let history: Vec<StockEvent> = [restocked("sku-1", 5), reserved(order(1), &[("sku-1", 2)])]
            .into_iter()
            .chain(newer_orders().take(usize::try_from(ledger::OPEN_WINDOW).expect("fits") - 1))
            .collect();
        let mut state = given::<Stock>(history).state().clone();
        assert!(state.order_status(order(1)).is_some());
        // When one more order opens
        Stock::evolve(
            &mut state,
            &insufficient(order(u128::MAX), "sku-9: unknown sku"),
        );
        // Then order 1 left memory, and the window holds OPEN_WINDOW entries
        assert_eq!(state.order_status(order(1)), None);
        assert_eq!(
            state.orders.len(),
            usize::try_from(ledger::OPEN_WINDOW).expect("fits")
        );
        assert_eq!(state.available("sku-1"), Some(3));
    }

    #[test]
    fn an_evicted_reservation_that_fails_is_restored_exactly_once() {
        // Given order 1 reserved long ago: its entry is no longer in memory
        let history: Vec<StockEvent> = [restocked("sku-1", 5), reserved(order(1), &[("sku-1", 2)])]
            .into_iter()
            .chain(newer_orders())
            .collect();
        let scenario = given::<Stock>(history.clone());
        assert_eq!(scenario.state().order_status(order(1)), None);
        // When order.failed arrives for it
        let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
        // Then its lines come back from the log and are restored (and the state is the fold)
        let restored = restored(order(1), &[("sku-1", 2)]);
        let state = when.then([restored.clone()]);
        assert_eq!(state.available("sku-1"), Some(5));
        assert_eq!(state.order_status(order(1)), None);
        // And a re-drive restores nothing more
        let again = given::<Stock>(history.into_iter().chain([restored]))
            .when(StockCommand::HandleFailed { order_id: order(1) })
            .then_nothing();
        assert_eq!(again.available("sku-1"), Some(5));
    }

    #[test]
    fn a_late_placement_after_an_evicted_tombstone_is_ignored() {
        // Given a tombstone (never kept in memory) and many orders since
        let history: Vec<StockEvent> = [restocked("sku-1", 5), ledger::tombstoned(order(1))]
            .into_iter()
            .chain(newer_orders())
            .collect();
        let scenario = given::<Stock>(history);
        assert_eq!(scenario.state().order_status(order(1)), None);
        // When the order's placement arrives at last
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-1", 1)]),
        });
        // Then it is ignored: nothing reserved
        let state = when.then([ledger::placement_ignored(order(1), LATE_PLACEMENT)]);
        assert_eq!(state.available("sku-1"), Some(5));
    }

    #[test]
    fn memory_holds_the_window_however_many_orders_went_by() {
        // Given 100,000 orders (five windows), every tenth failed and restored
        let mut state = StockState::default();
        Stock::evolve(&mut state, &restocked("sku-1", 1_000_000));
        for n in 1..=100_000u128 {
            Stock::evolve(&mut state, &reserved(order(n), &[("sku-1", 1)]));
            if n % 10 == 0 {
                Stock::evolve(&mut state, &restored(order(n), &[("sku-1", 1)]));
            }
        }
        // Then memory holds the open orders of the last window only, balances are exact, and a
        // snapshot of it is a few hundred KB
        let window = usize::try_from(ledger::OPEN_WINDOW).expect("fits");
        assert_eq!(state.orders.len(), window - window / 10);
        assert_eq!(state.available("sku-1"), Some(1_000_000 - 90_000));
        let bytes = postcard::to_stdvec(&state).expect("encodes").len();
        assert!(bytes < 100 * window, "{bytes} bytes for {window} orders");
    }

    #[test]
    fn the_shared_ledger_rules_hold() {
        LedgerCase::<Stock> {
            participant: Participant::Stock,
            setup: vec![restocked("sku-1", 5)],
            place: StockCommand::HandlePlaced {
                placed: placed(order(1), &[("sku-1", 1)]),
            },
            fail: StockCommand::HandleFailed { order_id: order(1) },
            succeeded: reserved(order(1), &[("sku-1", 1)]),
            rejected: insufficient(order(1), "sku-1: unknown sku"),
            undone: restored(order(1), &[("sku-1", 1)]),
            subjects: ["stock.reserved", "stock.insufficient", "stock.restored"],
        }
        .check();
        assert_eq!(outcome(&restocked("sku-1", 1)), None);
    }

    #[test]
    fn variants_keep_their_postcard_positions_names_and_streams() {
        let events = [
            restocked("sku-1", 1),
            reserved(order(1), &[("sku-1", 1)]),
            insufficient(order(1), "sku-1: unknown sku"),
            restored(order(1), &[("sku-1", 1)]),
            ledger::tombstoned(order(1)),
            ledger::compensation_skipped(order(1)),
            ledger::placement_ignored(order(1), LATE_PLACEMENT),
        ];
        let names = [
            "Restocked",
            "Reserved",
            "Insufficient",
            "Restored",
            "Tombstoned",
            "CompensationSkipped",
            "PlacementIgnored",
        ];
        check_variants::<Stock>(&events, &names, Some("sku-sku-1"), order(1));
    }

    #[test]
    fn events_render_as_camel_case_json() {
        // Given
        let event = reserved(order(1), &[("sku-1", 2)]);
        // When
        let json = serde_json::to_value(&event).expect("serialises");
        // Then
        assert_eq!(
            json,
            serde_json::json!({"reserved": {"orderId": order(1), "lines": [["sku-1", 2]]}})
        );
    }
}
