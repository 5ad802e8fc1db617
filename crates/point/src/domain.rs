//! Point's pure core: crediting users, deducting an order's points and refunding failed orders.
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
}

impl LedgerState for PointState {
    type Entry = OrderEntry;

    fn orders(&self) -> &ledger::Orders<OrderEntry> {
        &self.orders
    }
}

/// The entry of an order an event deducted points for or refused (`status` says which).
fn entry_of(event: &PointEvent, status: ParticipantOrderStatus) -> OrderEntry {
    let (user_id, points) = match event {
        PointEvent::Deducted {
            user_id, points, ..
        } => (user_id.clone(), *points),
        _ => (String::new(), 0),
    };
    OrderEntry {
        status,
        user_id,
        points,
    }
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
    /// The order failed before it was placed here.
    Tombstoned(Tombstone),
    /// A rejected order failed: nothing was deducted, so nothing is undone.
    CompensationSkipped(SkippedCompensation),
    /// A placement after the order's tombstone.
    PlacementIgnored(IgnoredPlacement),
}

contract::ledger_facts!(PointEvent);

impl LedgerEvent for PointEvent {
    fn step(&self) -> Step<'_> {
        match self {
            PointEvent::Credited { user_id, .. } => Step::Own("user", user_id),
            PointEvent::Deducted { order_id, .. } => Step::Succeeded(*order_id),
            PointEvent::DeductRejected { order_id, reason } => Step::Rejected(*order_id, reason),
            PointEvent::Refunded { order_id, .. } => Step::Undone(*order_id),
            PointEvent::Tombstoned(fact) => fact.into(),
            PointEvent::CompensationSkipped(fact) => fact.into(),
            PointEvent::PlacementIgnored(fact) => fact.into(),
        }
    }
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
    ledger::outcome(Participant::Point, event)
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
    ledger::decide_placed(state.order_status(order_id), order_id, || {
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
    })
}

fn handle_failed(state: &PointState, order_id: Uuid) -> Vec<PointEvent> {
    ledger::decide_failed(&state.orders, order_id, |entry| {
        vec![PointEvent::Refunded {
            order_id,
            user_id: entry.user_id.clone(),
            points: entry.points,
        }]
    })
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
        ledger::evolve_order(&mut state.orders, event.step(), "point", |status| {
            entry_of(event, status)
        });
        match event {
            // A refund's user and points come from the event: the entry may have left memory.
            PointEvent::Credited { user_id, points }
            | PointEvent::Refunded {
                user_id, points, ..
            } => add_points(state, user_id, *points),
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
            }
            PointEvent::DeductRejected { .. }
            | PointEvent::Tombstoned(_)
            | PointEvent::CompensationSkipped(_)
            | PointEvent::PlacementIgnored(_) => {}
        }
    }

    fn cold_key(command: &PointCommand) -> Option<String> {
        match command {
            PointCommand::Credit { .. } => None,
            PointCommand::HandlePlaced { placed } => ledger::cold_key(placed.order_id),
            PointCommand::HandleFailed { order_id } => ledger::cold_key(*order_id),
        }
    }

    // 2: open orders only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    contract::ledger_hooks!(orders: orders, entry_of: entry_of);
}

impl ParticipantCore for Point {
    const PARTICIPANT: Participant = Participant::Point;

    fn placed_command(placed: &OrderPlaced, _now_ms: u64) -> PointCommand {
        let placed = placed.clone();
        PointCommand::HandlePlaced { placed }
    }

    fn failed_command(order_id: Uuid) -> PointCommand {
        PointCommand::HandleFailed { order_id }
    }

    fn render_state(state: &PointState) -> serde_json::Value {
        serde_json::json!({ "balances": state.balances })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::fixtures::{self, check_variants, order, LedgerCase};
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
        ledger::compensation_skipped(order_id)
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
            (vec![], credit("", 1), PointRejection::EmptyUserId),
            (
                vec![],
                credit(&too_long, 1),
                PointRejection::UserIdTooLong { len: 65 },
            ),
            (vec![], credit("user-1", 0), PointRejection::ZeroPoints),
            (
                vec![credited("user-1", MAX_BALANCE)],
                credit("user-1", u64::MAX),
                PointRejection::AboveLimit {
                    user_id: "user-1".into(),
                    balance: MAX_BALANCE,
                    points: u64::MAX,
                },
            ),
        ];
        for (history, command, rejection) in cases {
            given::<Point>(history)
                .when(command)
                .then_rejected(rejection);
        }
        let longest = "u".repeat(MAX_USER_ID_LEN);
        given::<Point>([])
            .when(credit(&longest, 1))
            .then([credited(&longest, 1)]);
    }

    #[test]
    fn an_order_takes_its_points_from_the_buyer_or_nothing() {
        // (the buyer, points wanted, what is decided, the buyer's balance after, status)
        let cases = [
            (
                "user-1",
                10,
                deducted(order(1), "user-1", 10),
                0,
                ParticipantOrderStatus::Succeeded,
            ),
            (
                "user-1",
                13,
                deduct_rejected(order(1), "insufficient points: balance 10, wanted 13"),
                10,
                ParticipantOrderStatus::Rejected,
            ),
            // A user never credited has no points to spend.
            (
                "user-9",
                1,
                deduct_rejected(order(1), "insufficient points: balance 0, wanted 1"),
                0,
                ParticipantOrderStatus::Rejected,
            ),
        ];
        for (buyer, points, decided, balance, status) in cases {
            // Given
            let scenario = given::<Point>([credited("user-1", 10), credited("user-2", 50)]);
            // When
            let when = scenario.when(place(order(1), buyer, points));
            // Then
            let state = when.then([decided]);
            assert_eq!(state.balance(buyer), balance);
            assert_eq!(state.balance("user-2"), 50);
            assert_eq!(state.order_status(order(1)), Some(status));
        }
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
        let history: Vec<PointEvent> = [credited("user-1", 100), ledger::tombstoned(order(1))]
            .into_iter()
            .chain(newer_orders())
            .collect();
        // When the order's placement arrives at last
        let when = given::<Point>(history).when(place(order(1), "user-1", 30));
        // Then it is ignored: nothing deducted
        let state = when.then([ledger::placement_ignored(order(1), LATE_PLACEMENT)]);
        assert_eq!(state.balance("user-1"), 100);
    }

    #[test]
    fn the_shared_ledger_rules_hold() {
        LedgerCase::<Point> {
            participant: Participant::Point,
            setup: vec![credited("user-1", 10)],
            place: place(order(1), "user-1", 5),
            fail: PointCommand::HandleFailed { order_id: order(1) },
            succeeded: deducted(order(1), "user-1", 5),
            rejected: deduct_rejected(order(1), "insufficient points: balance 0, wanted 5"),
            undone: refunded(order(1), "user-1", 5),
            subjects: ["point.deducted", "point.rejected", "point.refunded"],
        }
        .check();
        assert_eq!(outcome(&credited("user-1", 1)), None);
    }

    #[test]
    fn variants_keep_their_postcard_positions_names_and_streams() {
        let events = [
            credited("user-1", 1),
            deducted(order(1), "user-1", 1),
            deduct_rejected(order(1), "insufficient points: balance 0, wanted 1"),
            refunded(order(1), "user-1", 1),
            ledger::tombstoned(order(1)),
            skipped(order(1)),
            ledger::placement_ignored(order(1), LATE_PLACEMENT),
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
        check_variants::<Point>(&events, &names, Some("user-user-1"), order(1));
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
