//! Stock's pure core: restocks, all-or-nothing reservations and their restoration.
//!
//! No I/O, clock or randomness: everything a decision needs travels inside the command.

use std::collections::BTreeMap;

pub use contract::ledger::{
    ParticipantOrderStatus, LATE_PLACEMENT, NOTHING_TO_UNDO, TOMBSTONE_REASON,
};
use contract::{ledger, OrderPlaced, OutcomeKind, Participant, ParticipantEvent};
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

    /// Where an order stands; `None` for an order never seen or not in memory.
    pub fn order_status(&self, order_id: Uuid) -> Option<ParticipantOrderStatus> {
        self.orders.get(&order_id).map(|entry| entry.status)
    }
}

/// An order's entry moved on by one of its events, as the whole history would leave it
/// (balances aside): what [`Domain::hydrate`] folds the order's own events with.
fn replay_entry(
    entry: Option<OrderEntry>,
    order_id: Uuid,
    event: &StockEvent,
) -> Option<OrderEntry> {
    let status = match event {
        StockEvent::Reserved {
            order_id: id,
            lines,
        } if *id == order_id => {
            return Some(OrderEntry {
                status: ParticipantOrderStatus::Succeeded,
                lines: lines.clone(),
            })
        }
        StockEvent::Insufficient { order_id: id, .. } if *id == order_id => {
            ParticipantOrderStatus::Rejected
        }
        StockEvent::Tombstoned { order_id: id } if *id == order_id => {
            ParticipantOrderStatus::Tombstoned
        }
        StockEvent::Restored { order_id: id, .. }
        | StockEvent::CompensationSkipped { order_id: id, .. }
            if *id == order_id =>
        {
            ParticipantOrderStatus::Compensated
        }
        _ => return entry,
    };
    let lines = entry.map(|e| e.lines).unwrap_or_default();
    Some(OrderEntry { status, lines })
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
    /// `order.failed` arrived before `order.placed`: nothing to undo, remember the order failed.
    Tombstoned {
        /// The order.
        order_id: Uuid,
    },
    /// A rejected order failed: nothing was reserved, so nothing is undone.
    CompensationSkipped {
        /// The order.
        order_id: Uuid,
        /// Why nothing was undone.
        reason: String,
    },
    /// `order.placed` arrived after the order's tombstone and was ignored.
    PlacementIgnored {
        /// The order.
        order_id: Uuid,
        /// Why it was ignored.
        reason: String,
    },
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
    let (order_id, kind, reason) = match event {
        StockEvent::Restocked { .. } | StockEvent::PlacementIgnored { .. } => return None,
        StockEvent::Reserved { order_id, .. } => (*order_id, OutcomeKind::Succeeded, None),
        StockEvent::Insufficient { order_id, reason } => {
            (*order_id, OutcomeKind::Rejected, Some(reason.clone()))
        }
        StockEvent::Restored { order_id, .. } => (*order_id, OutcomeKind::Compensated, None),
        StockEvent::Tombstoned { order_id } => (
            *order_id,
            OutcomeKind::Compensated,
            Some(TOMBSTONE_REASON.to_owned()),
        ),
        StockEvent::CompensationSkipped { order_id, reason } => {
            (*order_id, OutcomeKind::Compensated, Some(reason.clone()))
        }
    };
    Some(ParticipantEvent {
        order_id,
        participant: Participant::Stock,
        kind,
        reason,
    })
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
    match state.order_status(order_id) {
        Some(ParticipantOrderStatus::Tombstoned) => {
            return vec![StockEvent::PlacementIgnored {
                order_id,
                reason: LATE_PLACEMENT.to_owned(),
            }]
        }
        // A redelivery: the shell re-publishes the outcome already recorded.
        Some(_) => return vec![],
        None => {}
    }
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
}

fn handle_failed(state: &StockState, order_id: Uuid) -> Vec<StockEvent> {
    let Some(entry) = state.orders.get(&order_id) else {
        return vec![StockEvent::Tombstoned { order_id }];
    };
    match entry.status {
        // A failed restore (not produced today) is retried like a fresh one.
        ParticipantOrderStatus::Succeeded | ParticipantOrderStatus::CompensationFailed => {
            vec![StockEvent::Restored {
                order_id,
                lines: entry.lines.clone(),
            }]
        }
        ParticipantOrderStatus::Rejected => vec![StockEvent::CompensationSkipped {
            order_id,
            reason: NOTHING_TO_UNDO.to_owned(),
        }],
        ParticipantOrderStatus::Compensated | ParticipantOrderStatus::Tombstoned => vec![],
    }
}

fn record_new_order(state: &mut StockState, order_id: Uuid, entry: OrderEntry) {
    ledger::record_new_order(&mut state.orders, order_id, entry);
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
        match event {
            StockEvent::Restocked { sku, qty } => {
                let available = state.available.entry(sku.clone()).or_insert(0);
                *available = match available.checked_add(*qty) {
                    Some(sum) => sum,
                    None => panic!("restocking {qty} of {sku} overflows: decide caps availability"),
                };
            }
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
                let entry = OrderEntry {
                    status: ParticipantOrderStatus::Succeeded,
                    lines: lines.clone(),
                };
                record_new_order(state, *order_id, entry);
            }
            StockEvent::Insufficient { order_id, .. } => {
                let entry = OrderEntry {
                    status: ParticipantOrderStatus::Rejected,
                    lines: Vec::new(),
                };
                record_new_order(state, *order_id, entry);
            }
            StockEvent::Restored { order_id, lines } => {
                ledger::settle_order(
                    &mut state.orders,
                    *order_id,
                    &[
                        ParticipantOrderStatus::Succeeded,
                        ParticipantOrderStatus::CompensationFailed,
                    ],
                    "restored",
                );
                // The lines come from the event: the entry may have left memory long ago.
                for (sku, qty) in lines {
                    let available = state.available.entry(sku.clone()).or_insert(0);
                    *available = match available.checked_add(*qty) {
                        Some(sum) => sum,
                        None => panic!("restoring {qty} of {sku} overflows u64"),
                    };
                }
            }
            StockEvent::Tombstoned { order_id } => {
                ledger::evolve_tombstoned(&mut state.orders, *order_id)
            }
            StockEvent::CompensationSkipped { order_id, .. } => {
                ledger::evolve_compensation_skipped(&mut state.orders, *order_id)
            }
            StockEvent::PlacementIgnored { order_id, .. } => {
                ledger::evolve_placement_ignored(&state.orders, *order_id)
            }
        }
    }

    fn cold_key(command: &StockCommand) -> Option<String> {
        match command {
            StockCommand::Restock { .. } => None,
            StockCommand::HandlePlaced { placed } => ledger::cold_key(placed.order_id),
            StockCommand::HandleFailed { order_id } => ledger::cold_key(*order_id),
        }
    }

    fn is_resident(state: &StockState, key: &str) -> bool {
        ledger::is_resident(&state.orders, key)
    }

    fn hydrate(state: &mut StockState, key: &str, events: &[StockEvent]) {
        ledger::hydrate(&mut state.orders, key, events, replay_entry);
    }

    fn retire(state: &mut StockState, key: &str) {
        ledger::retire(&mut state.orders, key);
    }

    // 2: open orders only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    fn event_type(event: &StockEvent) -> &'static str {
        event.into()
    }

    fn stream_of(event: &StockEvent) -> String {
        match event {
            StockEvent::Restocked { sku, .. } => format!("sku-{sku}"),
            StockEvent::Reserved { order_id, .. }
            | StockEvent::Insufficient { order_id, .. }
            | StockEvent::Restored { order_id, .. }
            | StockEvent::Tombstoned { order_id }
            | StockEvent::CompensationSkipped { order_id, .. }
            | StockEvent::PlacementIgnored { order_id, .. } => format!("order-{order_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::fixtures::{self, line, order};
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
        let when = scenario.when(StockCommand::Restock {
            sku: "sku-1".into(),
            qty: 3,
        });
        // Then
        let state = when.then([restocked("sku-1", 3)]);
        assert_eq!(state.available("sku-1"), Some(8));
        assert_eq!(state.available("sku-2"), None);
    }

    #[test]
    fn a_restock_of_zero_units_is_rejected() {
        // Given
        let scenario = given::<Stock>([]);
        // When
        let when = scenario.when(StockCommand::Restock {
            sku: "sku-1".into(),
            qty: 0,
        });
        // Then
        when.then_rejected(StockRejection::ZeroQty);
    }

    #[test]
    fn a_restock_needs_a_sku() {
        // Given
        let scenario = given::<Stock>([]);
        // When
        let when = scenario.when(StockCommand::Restock {
            sku: String::new(),
            qty: 1,
        });
        // Then
        when.then_rejected(StockRejection::EmptySku);
    }

    #[test]
    fn a_sku_may_be_64_characters_but_not_more() {
        // Given
        let longest = "s".repeat(MAX_SKU_LEN);
        let too_long = "s".repeat(MAX_SKU_LEN + 1);
        // When
        let accepted = given::<Stock>([]).when(StockCommand::Restock {
            sku: longest.clone(),
            qty: 1,
        });
        let refused = given::<Stock>([]).when(StockCommand::Restock {
            sku: too_long,
            qty: 1,
        });
        // Then
        accepted.then([restocked(&longest, 1)]);
        refused.then_rejected(StockRejection::SkuTooLong { len: 65 });
    }

    #[test]
    fn a_restock_cannot_take_a_sku_above_the_limit() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", MAX_AVAILABLE - 1)]);
        // When
        let when = scenario.when(StockCommand::Restock {
            sku: "sku-1".into(),
            qty: 2,
        });
        // Then
        when.then_rejected(StockRejection::AboveLimit {
            sku: "sku-1".into(),
            available: MAX_AVAILABLE - 1,
            qty: 2,
        });
    }

    #[test]
    fn a_placed_order_reserves_every_line() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 5), restocked("sku-2", 1)]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-2", 1), ("sku-1", 5)]),
        });
        // Then
        let state = when.then([reserved(order(1), &[("sku-1", 5), ("sku-2", 1)])]);
        assert_eq!(state.available("sku-1"), Some(0));
        assert_eq!(state.available("sku-2"), Some(0));
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Succeeded)
        );
    }

    #[test]
    fn a_reservation_is_all_or_nothing() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 5), restocked("sku-2", 2)]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-1", 5), ("sku-2", 3)]),
        });
        // Then
        let state = when.then([insufficient(order(1), "sku-2: wanted 3, available 2")]);
        assert_eq!(state.available("sku-1"), Some(5));
        assert_eq!(state.available("sku-2"), Some(2));
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Rejected)
        );
    }

    #[test]
    fn duplicate_skus_are_summed_before_checking() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 5)]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-1", 3), ("sku-1", 3)]),
        });
        // Then
        when.then([insufficient(order(1), "sku-1: wanted 6, available 5")]);
    }

    #[test]
    fn duplicate_skus_are_reserved_as_one_line() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 6)]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-1", 3), ("sku-1", 3)]),
        });
        // Then
        let state = when.then([reserved(order(1), &[("sku-1", 6)])]);
        assert_eq!(state.available("sku-1"), Some(0));
    }

    #[test]
    fn an_unknown_sku_is_insufficient_and_every_shortfall_is_named() {
        // Given
        let scenario = given::<Stock>([restocked("sku-1", 2)]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-9", 1), ("sku-1", 5)]),
        });
        // Then
        when.then([insufficient(
            order(1),
            "sku-1: wanted 5, available 2; sku-9: unknown sku",
        )]);
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

    #[test]
    fn a_failure_before_the_placement_leaves_a_tombstone() {
        // Given
        let scenario = given::<Stock>([]);
        // When
        let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([StockEvent::Tombstoned { order_id: order(1) }]);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_late_placement_after_a_tombstone_is_ignored() {
        // Given
        let scenario = given::<Stock>([
            restocked("sku-1", 5),
            StockEvent::Tombstoned { order_id: order(1) },
        ]);
        // When
        let when = scenario.when(StockCommand::HandlePlaced {
            placed: placed(order(1), &[("sku-1", 1)]),
        });
        // Then
        let ignored = StockEvent::PlacementIgnored {
            order_id: order(1),
            reason: "order already failed (tombstone)".into(),
        };
        assert_eq!(outcome(&ignored), None);
        let state = when.then([ignored]);
        assert_eq!(state.available("sku-1"), Some(5));
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn compensating_a_rejected_order_is_skipped() {
        // Given
        let scenario = given::<Stock>([insufficient(order(1), "sku-1: unknown sku")]);
        // When
        let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([StockEvent::CompensationSkipped {
            order_id: order(1),
            reason: "rejected, nothing to undo".into(),
        }]);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_repeated_placement_is_a_no_op() {
        for history in [
            vec![restocked("sku-1", 5), reserved(order(1), &[("sku-1", 1)])],
            vec![insufficient(order(1), "sku-1: unknown sku")],
            vec![
                restocked("sku-1", 5),
                reserved(order(1), &[("sku-1", 1)]),
                StockEvent::Restored {
                    order_id: order(1),
                    lines: vec![("sku-1".into(), 1)],
                },
            ],
        ] {
            // Given
            let scenario = given::<Stock>(history);
            // When
            let when = scenario.when(StockCommand::HandlePlaced {
                placed: placed(order(1), &[("sku-1", 1)]),
            });
            // Then
            when.then_nothing();
        }
    }

    #[test]
    fn a_repeated_failure_is_a_no_op() {
        let restored = vec![
            restocked("sku-1", 5),
            reserved(order(1), &[("sku-1", 1)]),
            StockEvent::Restored {
                order_id: order(1),
                lines: vec![("sku-1".into(), 1)],
            },
        ];
        let skipped = vec![
            insufficient(order(1), "sku-1: unknown sku"),
            StockEvent::CompensationSkipped {
                order_id: order(1),
                reason: NOTHING_TO_UNDO.into(),
            },
        ];
        let tombstoned = vec![StockEvent::Tombstoned { order_id: order(1) }];
        for (history, settled) in [
            (restored, ParticipantOrderStatus::Compensated),
            (skipped, ParticipantOrderStatus::Compensated),
            (tombstoned, ParticipantOrderStatus::Tombstoned),
        ] {
            // Given
            let scenario = given::<Stock>(history);
            // When
            let when = scenario.when(StockCommand::HandleFailed { order_id: order(1) });
            // Then
            let state = when.then_nothing();
            assert_eq!(
                state.order_status(order(1)),
                None,
                "{settled:?} is settled: only the log keeps it"
            );
        }
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
        let state = when.then([StockEvent::Restored {
            order_id: order(1),
            lines: vec![("sku-1".into(), 2)],
        }]);
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
        let restored = StockEvent::Restored {
            order_id: order(1),
            lines: vec![("sku-1".into(), 2)],
        };
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
        let history: Vec<StockEvent> = [
            restocked("sku-1", 5),
            StockEvent::Tombstoned { order_id: order(1) },
        ]
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
        let state = when.then([StockEvent::PlacementIgnored {
            order_id: order(1),
            reason: LATE_PLACEMENT.into(),
        }]);
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
                Stock::evolve(
                    &mut state,
                    &StockEvent::Restored {
                        order_id: order(n),
                        lines: vec![("sku-1".into(), 1)],
                    },
                );
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
    fn every_event_maps_to_its_subject() {
        // Given
        let cases = [
            (reserved(order(1), &[("sku-1", 1)]), "stock.reserved", None),
            (
                insufficient(order(1), "sku-1: unknown sku"),
                "stock.insufficient",
                Some("sku-1: unknown sku"),
            ),
            (
                StockEvent::Restored {
                    order_id: order(1),
                    lines: vec![],
                },
                "stock.restored",
                None,
            ),
            (
                StockEvent::Tombstoned { order_id: order(1) },
                "stock.restored",
                Some("nothing to undo: order.failed arrived before order.placed"),
            ),
            (
                StockEvent::CompensationSkipped {
                    order_id: order(1),
                    reason: NOTHING_TO_UNDO.into(),
                },
                "stock.restored",
                Some("rejected, nothing to undo"),
            ),
        ];
        for (event, subject, reason) in cases {
            // When
            let published = outcome(&event).expect("publishes");
            // Then
            assert_eq!(published.subject(), subject, "{event:?}");
            assert_eq!(published.order_id, order(1));
            assert_eq!(published.participant, Participant::Stock);
            assert_eq!(published.reason.as_deref(), reason, "{event:?}");
        }
        assert_eq!(outcome(&restocked("sku-1", 1)), None);
    }

    #[test]
    fn events_are_named_by_variant_and_filed_under_their_aggregate() {
        // Given
        let restock = restocked("sku-1", 1);
        let reservation = reserved(order(7), &[("sku-1", 1)]);
        // When
        let names = (Stock::event_type(&restock), Stock::event_type(&reservation));
        let streams = (Stock::stream_of(&restock), Stock::stream_of(&reservation));
        // Then
        assert_eq!(names, ("Restocked", "Reserved"));
        assert_eq!(streams.0, "sku-sku-1");
        assert_eq!(streams.1, format!("order-{}", order(7)));
    }

    #[test]
    fn variants_keep_their_postcard_positions() {
        // Given
        let events = [
            restocked("sku-1", 1),
            reserved(order(1), &[("sku-1", 1)]),
            insufficient(order(1), "sku-1: unknown sku"),
            StockEvent::Restored {
                order_id: order(1),
                lines: vec![("sku-1".into(), 1)],
            },
            StockEvent::Tombstoned { order_id: order(1) },
            StockEvent::CompensationSkipped {
                order_id: order(1),
                reason: NOTHING_TO_UNDO.into(),
            },
            StockEvent::PlacementIgnored {
                order_id: order(1),
                reason: LATE_PLACEMENT.into(),
            },
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
        for (position, event) in events.iter().enumerate() {
            // When
            let bytes = postcard::to_stdvec(event).expect("encodes");
            let back: StockEvent = postcard::from_bytes(&bytes).expect("decodes");
            // Then
            assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
            assert_eq!(&back, event);
            assert_eq!(Stock::event_type(event), names[position]);
        }
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
