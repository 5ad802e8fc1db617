//! Point's pure core: crediting users, deducting an order's points and refunding failed orders.
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

/// Longest user id accepted, in characters.
pub const MAX_USER_ID_LEN: usize = 64;

/// Highest balance a credit may reach.
///
/// Far below `u64::MAX` so that refunds on top of a full balance can never overflow.
pub const MAX_BALANCE: u64 = 1 << 50;

/// The point domain: balances per user and the deductions made for orders.
pub struct Point;

/// What the point service remembers about one order it took part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEntry {
    /// Where the order stands.
    pub status: ParticipantOrderStatus,
    /// Whose points were deducted; empty unless the deduction succeeded.
    pub user_id: String,
    /// How many points were deducted; 0 unless the deduction succeeded.
    pub points: u64,
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
            user_id: String::new(),
            points: 0,
        }
    }
}

/// The folded state: every balance and the orders still open here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointState {
    /// Balances by user; a user is known once credited.
    pub balances: BTreeMap<String, u64>,
    /// Open orders by id (deducted or rejected, not yet failed), the most recent
    /// [`ledger::OPEN_WINDOW`]; the others are in the log (see [`ledger::Orders`]).
    pub orders: ledger::Orders<OrderEntry>,
}

impl PointState {
    /// A user's balance; 0 for a user never credited.
    pub fn balance(&self, user: &str) -> u64 {
        self.balances.get(user).copied().unwrap_or(0)
    }

    /// Whether the user was ever credited.
    pub fn knows_user(&self, user: &str) -> bool {
        self.balances.contains_key(user)
    }

    /// Where an order stands; `None` for an order never seen (or placed without points), or
    /// not in memory.
    pub fn order_status(&self, order_id: Uuid) -> Option<ParticipantOrderStatus> {
        self.orders.get(&order_id).map(|entry| entry.status)
    }
}

/// An order's entry moved on by one of its events, as the whole history would leave it
/// (balances aside): what [`Domain::hydrate`] folds the order's own events with.
fn replay_entry(
    entry: Option<OrderEntry>,
    order_id: Uuid,
    event: &PointEvent,
) -> Option<OrderEntry> {
    let status = match event {
        PointEvent::Deducted {
            order_id: id,
            user_id,
            points,
        } if *id == order_id => {
            return Some(OrderEntry {
                status: ParticipantOrderStatus::Succeeded,
                user_id: user_id.clone(),
                points: *points,
            })
        }
        PointEvent::DeductRejected { order_id: id, .. } if *id == order_id => {
            ParticipantOrderStatus::Rejected
        }
        PointEvent::Tombstoned { order_id: id } if *id == order_id => {
            ParticipantOrderStatus::Tombstoned
        }
        PointEvent::Refunded { order_id: id, .. }
        | PointEvent::CompensationSkipped { order_id: id, .. }
            if *id == order_id =>
        {
            ParticipantOrderStatus::Compensated
        }
        _ => return entry,
    };
    let (user_id, points) = entry.map(|e| (e.user_id, e.points)).unwrap_or_default();
    Some(OrderEntry {
        status,
        user_id,
        points,
    })
}

/// A fact the point service recorded.
// Postcard encodes variants by position: this order is final, append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PointEvent {
    /// Points were added to a user's balance.
    Credited {
        /// The user.
        user_id: String,
        /// Points added.
        points: u64,
    },
    /// An order's points were taken from the buyer's balance.
    Deducted {
        /// The order.
        order_id: Uuid,
        /// The buyer.
        user_id: String,
        /// Points taken.
        points: u64,
    },
    /// The buyer's balance was too low; nothing was taken.
    DeductRejected {
        /// The order.
        order_id: Uuid,
        /// Why, e.g. `insufficient points: balance 3, wanted 10`.
        reason: String,
    },
    /// A failed order's points were given back.
    Refunded {
        /// The order.
        order_id: Uuid,
        /// The buyer.
        user_id: String,
        /// Points given back.
        points: u64,
    },
    /// `order.failed` arrived before `order.placed`: nothing to undo, remember the order failed.
    Tombstoned {
        /// The order.
        order_id: Uuid,
    },
    /// A rejected order failed: nothing was deducted, so nothing is undone.
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

/// An intention to change the balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointCommand {
    /// Admin: add points to a user's balance, making the user known if new.
    Credit {
        /// The user.
        user_id: String,
        /// Points to add, at least 1.
        points: u64,
    },
    /// `order.placed` arrived: deduct the order's points, if it uses any.
    HandlePlaced {
        /// The order.
        placed: OrderPlaced,
    },
    /// `order.failed` arrived: refund what the order took.
    HandleFailed {
        /// The order.
        order_id: Uuid,
    },
}

/// Why a point command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointRejection {
    /// The user id is empty.
    #[error("userId must not be empty")]
    EmptyUserId,
    /// The user id is longer than [`MAX_USER_ID_LEN`] characters.
    #[error("userId is {len} characters, at most {max} allowed", max = MAX_USER_ID_LEN)]
    UserIdTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A credit of zero points.
    #[error("points must be at least 1")]
    ZeroPoints,
    /// The credit would take the balance above [`MAX_BALANCE`].
    #[error("points {points} on top of balance {balance} would take {user_id} above {max}", max = MAX_BALANCE)]
    AboveLimit {
        /// The user.
        user_id: String,
        /// The balance now.
        balance: u64,
        /// Points asked for.
        points: u64,
    },
}

impl PointRejection {
    /// The request field at fault, for a client error naming it.
    pub fn field(&self) -> &'static str {
        match self {
            PointRejection::EmptyUserId | PointRejection::UserIdTooLong { .. } => "userId",
            PointRejection::ZeroPoints | PointRejection::AboveLimit { .. } => "points",
        }
    }
}

/// The wire event a domain event publishes, if any.
pub fn outcome(event: &PointEvent) -> Option<ParticipantEvent> {
    let (order_id, kind, reason) = match event {
        PointEvent::Credited { .. } | PointEvent::PlacementIgnored { .. } => return None,
        PointEvent::Deducted { order_id, .. } => (*order_id, OutcomeKind::Succeeded, None),
        PointEvent::DeductRejected { order_id, reason } => {
            (*order_id, OutcomeKind::Rejected, Some(reason.clone()))
        }
        PointEvent::Refunded { order_id, .. } => (*order_id, OutcomeKind::Compensated, None),
        PointEvent::Tombstoned { order_id } => (
            *order_id,
            OutcomeKind::Compensated,
            Some(TOMBSTONE_REASON.to_owned()),
        ),
        PointEvent::CompensationSkipped { order_id, reason } => {
            (*order_id, OutcomeKind::Compensated, Some(reason.clone()))
        }
    };
    Some(ParticipantEvent {
        order_id,
        participant: Participant::Point,
        kind,
        reason,
    })
}

fn credit(
    state: &PointState,
    user_id: String,
    points: u64,
) -> Result<Vec<PointEvent>, PointRejection> {
    if user_id.is_empty() {
        return Err(PointRejection::EmptyUserId);
    }
    let len = user_id.chars().count();
    if len > MAX_USER_ID_LEN {
        return Err(PointRejection::UserIdTooLong { len });
    }
    if points == 0 {
        return Err(PointRejection::ZeroPoints);
    }
    let balance = state.balance(&user_id);
    if balance.saturating_add(points) > MAX_BALANCE {
        return Err(PointRejection::AboveLimit {
            user_id,
            balance,
            points,
        });
    }
    Ok(vec![PointEvent::Credited { user_id, points }])
}

fn handle_placed(state: &PointState, placed: &OrderPlaced) -> Vec<PointEvent> {
    let order_id = placed.order_id;
    match state.order_status(order_id) {
        Some(ParticipantOrderStatus::Tombstoned) => {
            return vec![PointEvent::PlacementIgnored {
                order_id,
                reason: LATE_PLACEMENT.to_owned(),
            }]
        }
        // A redelivery: the shell re-publishes the outcome already recorded.
        Some(_) => return vec![],
        None => {}
    }
    // Without points this order does not need the point service at all.
    if placed.points == 0 {
        return vec![];
    }
    let balance = state.balance(&placed.user_id);
    if balance >= placed.points {
        vec![PointEvent::Deducted {
            order_id,
            user_id: placed.user_id.clone(),
            points: placed.points,
        }]
    } else {
        vec![PointEvent::DeductRejected {
            order_id,
            reason: format!(
                "insufficient points: balance {balance}, wanted {}",
                placed.points
            ),
        }]
    }
}

fn handle_failed(state: &PointState, order_id: Uuid) -> Vec<PointEvent> {
    let Some(entry) = state.orders.get(&order_id) else {
        return vec![PointEvent::Tombstoned { order_id }];
    };
    match entry.status {
        // A failed refund (not produced today) is retried like a fresh one.
        ParticipantOrderStatus::Succeeded | ParticipantOrderStatus::CompensationFailed => {
            vec![PointEvent::Refunded {
                order_id,
                user_id: entry.user_id.clone(),
                points: entry.points,
            }]
        }
        ParticipantOrderStatus::Rejected => vec![PointEvent::CompensationSkipped {
            order_id,
            reason: NOTHING_TO_UNDO.to_owned(),
        }],
        ParticipantOrderStatus::Compensated | ParticipantOrderStatus::Tombstoned => vec![],
    }
}

fn record_new_order(state: &mut PointState, order_id: Uuid, entry: OrderEntry) {
    ledger::record_new_order(&mut state.orders, order_id, entry);
}

fn add_points(state: &mut PointState, user_id: &str, points: u64) {
    let balance = state.balances.entry(user_id.to_owned()).or_insert(0);
    *balance = match balance.checked_add(points) {
        Some(sum) => sum,
        None => panic!("adding {points} points to {user_id} overflows: decide caps balances"),
    };
}

impl Domain for Point {
    type State = PointState;
    type Event = PointEvent;
    type Command = PointCommand;
    type Rejection = PointRejection;

    fn decide(
        state: &PointState,
        command: PointCommand,
    ) -> Result<Vec<PointEvent>, PointRejection> {
        match command {
            PointCommand::Credit { user_id, points } => credit(state, user_id, points),
            PointCommand::HandlePlaced { placed } => Ok(handle_placed(state, &placed)),
            PointCommand::HandleFailed { order_id } => Ok(handle_failed(state, order_id)),
        }
    }

    fn evolve(state: &mut PointState, event: &PointEvent) {
        match event {
            PointEvent::Credited { user_id, points } => add_points(state, user_id, *points),
            PointEvent::Deducted {
                order_id,
                user_id,
                points,
            } => {
                let balance = match state.balances.get_mut(user_id) {
                    Some(balance) if *balance >= *points => balance,
                    other => panic!(
                        "order {order_id} deducted {points} points from {user_id} with balance {other:?}"
                    ),
                };
                *balance -= points;
                let entry = OrderEntry {
                    status: ParticipantOrderStatus::Succeeded,
                    user_id: user_id.clone(),
                    points: *points,
                };
                record_new_order(state, *order_id, entry);
            }
            PointEvent::DeductRejected { order_id, .. } => {
                let entry = OrderEntry {
                    status: ParticipantOrderStatus::Rejected,
                    user_id: String::new(),
                    points: 0,
                };
                record_new_order(state, *order_id, entry);
            }
            PointEvent::Refunded {
                order_id,
                user_id,
                points,
            } => {
                ledger::settle_order(
                    &mut state.orders,
                    *order_id,
                    &[
                        ParticipantOrderStatus::Succeeded,
                        ParticipantOrderStatus::CompensationFailed,
                    ],
                    "refunded",
                );
                // Who and how much come from the event: the entry may have left memory.
                add_points(state, user_id, *points);
            }
            PointEvent::Tombstoned { order_id } => {
                ledger::evolve_tombstoned(&mut state.orders, *order_id)
            }
            PointEvent::CompensationSkipped { order_id, .. } => {
                ledger::evolve_compensation_skipped(&mut state.orders, *order_id)
            }
            PointEvent::PlacementIgnored { order_id, .. } => {
                ledger::evolve_placement_ignored(&state.orders, *order_id)
            }
        }
    }

    fn cold_key(command: &PointCommand) -> Option<String> {
        match command {
            PointCommand::Credit { .. } => None,
            PointCommand::HandlePlaced { placed } => ledger::cold_key(placed.order_id),
            PointCommand::HandleFailed { order_id } => ledger::cold_key(*order_id),
        }
    }

    fn is_resident(state: &PointState, key: &str) -> bool {
        ledger::is_resident(&state.orders, key)
    }

    fn hydrate(state: &mut PointState, key: &str, events: &[PointEvent]) {
        ledger::hydrate(&mut state.orders, key, events, replay_entry);
    }

    fn retire(state: &mut PointState, key: &str) {
        ledger::retire(&mut state.orders, key);
    }

    // 2: open orders only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    fn event_type(event: &PointEvent) -> &'static str {
        event.into()
    }

    fn stream_of(event: &PointEvent) -> String {
        match event {
            PointEvent::Credited { user_id, .. } => format!("user-{user_id}"),
            PointEvent::Deducted { order_id, .. }
            | PointEvent::DeductRejected { order_id, .. }
            | PointEvent::Refunded { order_id, .. }
            | PointEvent::Tombstoned { order_id }
            | PointEvent::CompensationSkipped { order_id, .. }
            | PointEvent::PlacementIgnored { order_id, .. } => format!("order-{order_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::fixtures::{self, order};
    use eventlog::scenario::given;

    fn placed(order_id: Uuid, user_id: &str, points: u64) -> OrderPlaced {
        OrderPlaced {
            user_id: user_id.into(),
            points,
            ..fixtures::placed(order_id)
        }
    }

    fn place(order_id: Uuid, user_id: &str, points: u64) -> PointCommand {
        PointCommand::HandlePlaced {
            placed: placed(order_id, user_id, points),
        }
    }

    fn credit(user_id: &str, points: u64) -> PointCommand {
        PointCommand::Credit {
            user_id: user_id.into(),
            points,
        }
    }

    fn credited(user_id: &str, points: u64) -> PointEvent {
        PointEvent::Credited {
            user_id: user_id.into(),
            points,
        }
    }

    fn deducted(order_id: Uuid, user_id: &str, points: u64) -> PointEvent {
        PointEvent::Deducted {
            order_id,
            user_id: user_id.into(),
            points,
        }
    }

    fn refunded(order_id: Uuid, user_id: &str, points: u64) -> PointEvent {
        PointEvent::Refunded {
            order_id,
            user_id: user_id.into(),
            points,
        }
    }

    fn deduct_rejected(order_id: Uuid, reason: &str) -> PointEvent {
        PointEvent::DeductRejected {
            order_id,
            reason: reason.into(),
        }
    }

    fn skipped(order_id: Uuid) -> PointEvent {
        PointEvent::CompensationSkipped {
            order_id,
            reason: NOTHING_TO_UNDO.into(),
        }
    }

    #[test]
    fn a_credit_adds_to_the_balance() {
        // Given
        let scenario = given::<Point>([credited("user-1", 5)]);
        // When
        let when = scenario.when(credit("user-1", 3));
        // Then
        let state = when.then([credited("user-1", 3)]);
        assert_eq!(state.balance("user-1"), 8);
        assert!(state.knows_user("user-1"));
        assert_eq!(state.balance("user-2"), 0);
        assert!(!state.knows_user("user-2"));
    }

    #[test]
    fn crediting_validates_the_user_and_the_points() {
        let too_long = "u".repeat(MAX_USER_ID_LEN + 1);
        let cases = [
            (credit("", 1), PointRejection::EmptyUserId),
            (
                credit(&too_long, 1),
                PointRejection::UserIdTooLong { len: 65 },
            ),
            (credit("user-1", 0), PointRejection::ZeroPoints),
        ];
        for (command, rejection) in cases {
            // Given
            let scenario = given::<Point>([]);
            // When
            let when = scenario.when(command);
            // Then
            when.then_rejected(rejection);
        }
        let longest = "u".repeat(MAX_USER_ID_LEN);
        given::<Point>([])
            .when(credit(&longest, 1))
            .then([credited(&longest, 1)]);
    }

    #[test]
    fn a_credit_cannot_take_a_balance_above_the_limit() {
        // Given
        let scenario = given::<Point>([credited("user-1", MAX_BALANCE)]);
        // When
        let when = scenario.when(credit("user-1", u64::MAX));
        // Then
        when.then_rejected(PointRejection::AboveLimit {
            user_id: "user-1".into(),
            balance: MAX_BALANCE,
            points: u64::MAX,
        });
    }

    #[test]
    fn an_order_takes_its_points_from_the_buyer() {
        // Given
        let scenario = given::<Point>([credited("user-1", 10), credited("user-2", 50)]);
        // When
        let when = scenario.when(place(order(1), "user-1", 10));
        // Then
        let state = when.then([deducted(order(1), "user-1", 10)]);
        assert_eq!(state.balance("user-1"), 0);
        assert_eq!(state.balance("user-2"), 50);
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Succeeded)
        );
    }

    #[test]
    fn an_order_without_points_does_not_involve_the_point_service() {
        // Given
        let scenario = given::<Point>([credited("user-1", 10)]);
        // When
        let when = scenario.when(place(order(1), "user-1", 0));
        // Then
        let state = when.then_nothing();
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_balance_too_low_rejects_the_order_and_takes_nothing() {
        // Given
        let scenario = given::<Point>([credited("user-1", 3)]);
        // When
        let when = scenario.when(place(order(1), "user-1", 10));
        // Then
        let state = when.then([deduct_rejected(
            order(1),
            "insufficient points: balance 3, wanted 10",
        )]);
        assert_eq!(state.balance("user-1"), 3);
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Rejected)
        );
    }

    #[test]
    fn an_unknown_user_has_no_points_to_spend() {
        // Given
        let scenario = given::<Point>([]);
        // When
        let when = scenario.when(place(order(1), "user-9", 1));
        // Then
        when.then([deduct_rejected(
            order(1),
            "insufficient points: balance 0, wanted 1",
        )]);
    }

    #[test]
    fn a_failed_order_gets_its_points_refunded() {
        // Given
        let scenario = given::<Point>([
            credited("user-1", 10),
            deducted(order(1), "user-1", 4),
            credited("user-1", 100),
        ]);
        // When
        let when = scenario.when(PointCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([refunded(order(1), "user-1", 4)]);
        assert_eq!(state.balance("user-1"), 110);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_failure_before_the_placement_leaves_a_tombstone() {
        // Given
        let scenario = given::<Point>([]);
        // When
        let when = scenario.when(PointCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([PointEvent::Tombstoned { order_id: order(1) }]);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_late_placement_after_a_tombstone_is_ignored() {
        // Given
        let scenario = given::<Point>([
            credited("user-1", 10),
            PointEvent::Tombstoned { order_id: order(1) },
        ]);
        // When
        let when = scenario.when(place(order(1), "user-1", 5));
        // Then
        let ignored = PointEvent::PlacementIgnored {
            order_id: order(1),
            reason: "order already failed (tombstone)".into(),
        };
        assert_eq!(outcome(&ignored), None);
        let state = when.then([ignored]);
        assert_eq!(state.balance("user-1"), 10);
    }

    #[test]
    fn compensating_a_rejected_order_is_skipped() {
        // Given
        let scenario = given::<Point>([deduct_rejected(
            order(1),
            "insufficient points: balance 0, wanted 1",
        )]);
        // When
        let when = scenario.when(PointCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([PointEvent::CompensationSkipped {
            order_id: order(1),
            reason: "rejected, nothing to undo".into(),
        }]);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn a_repeated_placement_is_a_no_op() {
        let histories = [
            vec![credited("user-1", 10), deducted(order(1), "user-1", 5)],
            vec![deduct_rejected(
                order(1),
                "insufficient points: balance 0, wanted 5",
            )],
            vec![
                credited("user-1", 10),
                deducted(order(1), "user-1", 5),
                refunded(order(1), "user-1", 5),
            ],
        ];
        for history in histories {
            // Given
            let scenario = given::<Point>(history);
            // When
            let when = scenario.when(place(order(1), "user-1", 5));
            // Then
            when.then_nothing();
        }
    }

    #[test]
    fn a_repeated_failure_is_a_no_op() {
        let histories = [
            (
                vec![
                    credited("user-1", 10),
                    deducted(order(1), "user-1", 5),
                    refunded(order(1), "user-1", 5),
                ],
                ParticipantOrderStatus::Compensated,
            ),
            (
                vec![
                    deduct_rejected(order(1), "insufficient points: balance 0, wanted 5"),
                    skipped(order(1)),
                ],
                ParticipantOrderStatus::Compensated,
            ),
            (
                vec![PointEvent::Tombstoned { order_id: order(1) }],
                ParticipantOrderStatus::Tombstoned,
            ),
        ];
        for (history, settled) in histories {
            // Given
            let scenario = given::<Point>(history);
            // When
            let when = scenario.when(PointCommand::HandleFailed { order_id: order(1) });
            // Then
            let state = when.then_nothing();
            assert_eq!(
                state.order_status(order(1)),
                None,
                "{settled:?} is settled: only the log keeps it"
            );
        }
    }

    /// `OPEN_WINDOW` newer orders (rejected: no points move), enough to push order(1) out.
    fn newer_orders() -> impl Iterator<Item = PointEvent> {
        (2..=u128::from(ledger::OPEN_WINDOW) + 1)
            .map(|n| deduct_rejected(order(n), "insufficient points: balance 0, wanted 1"))
    }

    #[test]
    fn an_evicted_deduction_that_fails_is_refunded_exactly_once() {
        // Given 30 points of user-1 deducted by order 1 long ago: no longer in memory
        let history: Vec<PointEvent> = [credited("user-1", 100), deducted(order(1), "user-1", 30)]
            .into_iter()
            .chain(newer_orders())
            .collect();
        let scenario = given::<Point>(history.clone());
        assert_eq!(scenario.state().order_status(order(1)), None);
        assert_eq!(scenario.state().balance("user-1"), 70);
        // When order.failed arrives for it
        let when = scenario.when(PointCommand::HandleFailed { order_id: order(1) });
        // Then the points come back (and the state is the fold of the log)
        let state = when.then([refunded(order(1), "user-1", 30)]);
        assert_eq!(state.balance("user-1"), 100);
        // And a re-drive refunds nothing more
        let again = given::<Point>(
            history
                .into_iter()
                .chain([refunded(order(1), "user-1", 30)]),
        )
        .when(PointCommand::HandleFailed { order_id: order(1) })
        .then_nothing();
        assert_eq!(again.balance("user-1"), 100);
    }

    #[test]
    fn a_late_placement_after_an_evicted_tombstone_is_ignored() {
        // Given a tombstone (never kept in memory) and many orders since
        let history: Vec<PointEvent> = [
            credited("user-1", 100),
            PointEvent::Tombstoned { order_id: order(1) },
        ]
        .into_iter()
        .chain(newer_orders())
        .collect();
        // When the order's placement arrives at last
        let when = given::<Point>(history).when(place(order(1), "user-1", 30));
        // Then it is ignored: nothing deducted
        let state = when.then([PointEvent::PlacementIgnored {
            order_id: order(1),
            reason: LATE_PLACEMENT.into(),
        }]);
        assert_eq!(state.balance("user-1"), 100);
    }

    #[test]
    fn every_event_maps_to_its_subject() {
        // Given
        let cases = [
            (deducted(order(1), "user-1", 5), "point.deducted", None),
            (
                deduct_rejected(order(1), "insufficient points: balance 3, wanted 10"),
                "point.rejected",
                Some("insufficient points: balance 3, wanted 10"),
            ),
            (refunded(order(1), "user-1", 5), "point.refunded", None),
            (
                PointEvent::Tombstoned { order_id: order(1) },
                "point.refunded",
                Some("nothing to undo: order.failed arrived before order.placed"),
            ),
            (
                skipped(order(1)),
                "point.refunded",
                Some("rejected, nothing to undo"),
            ),
        ];
        for (event, subject, reason) in cases {
            // When
            let published = outcome(&event).expect("publishes");
            // Then
            assert_eq!(published.subject(), subject, "{event:?}");
            assert_eq!(published.order_id, order(1));
            assert_eq!(published.participant, Participant::Point);
            assert_eq!(published.reason.as_deref(), reason, "{event:?}");
        }
        assert_eq!(outcome(&credited("user-1", 1)), None);
    }

    #[test]
    fn variants_keep_their_postcard_positions_names_and_streams() {
        // Given
        let events = [
            credited("user-1", 1),
            deducted(order(1), "user-1", 1),
            deduct_rejected(order(1), "insufficient points: balance 0, wanted 1"),
            refunded(order(1), "user-1", 1),
            PointEvent::Tombstoned { order_id: order(1) },
            skipped(order(1)),
            PointEvent::PlacementIgnored {
                order_id: order(1),
                reason: LATE_PLACEMENT.into(),
            },
        ];
        let names = [
            "Credited",
            "Deducted",
            "DeductRejected",
            "Refunded",
            "Tombstoned",
            "CompensationSkipped",
            "PlacementIgnored",
        ];
        for (position, event) in events.iter().enumerate() {
            // When
            let bytes = postcard::to_stdvec(event).expect("encodes");
            let back: PointEvent = postcard::from_bytes(&bytes).expect("decodes");
            // Then
            assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
            assert_eq!(&back, event);
            assert_eq!(Point::event_type(event), names[position]);
            let stream = if position == 0 {
                "user-user-1".to_owned()
            } else {
                format!("order-{}", order(1))
            };
            assert_eq!(Point::stream_of(event), stream);
        }
    }

    #[test]
    fn events_render_as_camel_case_json() {
        // Given
        let event = deducted(order(1), "user-1", 5);
        // When
        let json = serde_json::to_value(&event).expect("serialises");
        // Then
        assert_eq!(
            json,
            serde_json::json!({"deducted": {"orderId": order(1), "userId": "user-1", "points": 5}})
        );
    }
}
