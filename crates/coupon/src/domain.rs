//! Coupon's pure core: issuing coupons, using one per order and releasing it when the order fails.
//!
//! No I/O, clock or randomness: the time travels inside commands as `now_ms`.

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

/// Longest coupon or user id accepted, in characters.
pub const MAX_ID_LEN: usize = 64;

/// The coupon domain: issued coupons and which order uses each.
pub struct Coupon;

/// What the coupon service remembers about one order it took part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEntry {
    /// Where the order stands.
    pub status: ParticipantOrderStatus,
    /// The coupon the order asked for; `None` for a tombstone.
    pub coupon_id: Option<String>,
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
            coupon_id: None,
        }
    }
}

/// Whether a coupon can still be used, as the HTTP API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponStatus {
    /// Not used by any order.
    Available,
    /// Used by an order.
    Used,
}

/// One issued coupon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponEntry {
    /// The coupon.
    pub coupon_id: String,
    /// The only user who may use it; `None` = anyone.
    pub user_id: Option<String>,
    /// The discount it grants, in minor currency units.
    pub discount: u64,
    /// When it stops being usable (ms since the Unix epoch); `None` = never.
    pub expires_at_ms: Option<u64>,
    /// The order using it, if any.
    pub used_by: Option<Uuid>,
}

impl CouponEntry {
    /// `USED` while an order holds the coupon, else `AVAILABLE`.
    pub fn status(&self) -> CouponStatus {
        if self.used_by.is_some() {
            CouponStatus::Used
        } else {
            CouponStatus::Available
        }
    }
}

/// The folded state: every coupon and the orders still open here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponState {
    /// Coupons by id.
    pub coupons: BTreeMap<String, CouponEntry>,
    /// Open orders by id (coupon used or rejected, not yet failed), the most recent
    /// [`ledger::OPEN_WINDOW`]; the others are in the log (see [`ledger::Orders`]).
    pub orders: ledger::Orders<OrderEntry>,
}

impl CouponState {
    /// A coupon by id.
    pub fn coupon(&self, id: &str) -> Option<&CouponEntry> {
        self.coupons.get(id)
    }
}

impl LedgerState for CouponState {
    type Entry = OrderEntry;

    fn orders(&self) -> &ledger::Orders<OrderEntry> {
        &self.orders
    }
}

/// The entry of an order an event used its coupon for or refused (`status` says which).
fn entry_of(event: &CouponEvent, status: ParticipantOrderStatus) -> OrderEntry {
    let coupon_id = match event {
        CouponEvent::Used { coupon_id, .. } | CouponEvent::UseRejected { coupon_id, .. } => {
            Some(coupon_id.clone())
        }
        _ => None,
    };
    OrderEntry { status, coupon_id }
}

/// A fact the coupon service recorded.
// Postcard encodes variants by position: this order is final, append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CouponEvent {
    /// A coupon was issued.
    Issued {
        /// The coupon.
        coupon_id: String,
        /// The only user who may use it; `None` = anyone.
        user_id: Option<String>,
        /// The discount it grants, in minor currency units.
        discount: u64,
        /// When it stops being usable (ms since the Unix epoch); `None` = never.
        expires_at_ms: Option<u64>,
    },
    /// An order's coupon was marked used.
    Used {
        /// The order.
        order_id: Uuid,
        /// The coupon.
        coupon_id: String,
    },
    /// An order's coupon could not be used.
    UseRejected {
        /// The order.
        order_id: Uuid,
        /// The coupon asked for.
        coupon_id: String,
        /// Why, e.g. `coupon c-1: expired`.
        reason: String,
    },
    /// A failed order's coupon was marked unused again.
    Released {
        /// The order.
        order_id: Uuid,
        /// The coupon.
        coupon_id: String,
    },
    /// The order failed before it was placed here.
    Tombstoned(Tombstone),
    /// A rejected order failed: no coupon was used, so nothing is undone.
    CompensationSkipped(SkippedCompensation),
    /// A placement after the order's tombstone.
    PlacementIgnored(IgnoredPlacement),
}

contract::ledger_facts!(CouponEvent);

impl LedgerEvent for CouponEvent {
    fn step(&self) -> Step<'_> {
        match self {
            CouponEvent::Issued { coupon_id, .. } => Step::Own("coupon", coupon_id),
            CouponEvent::Used { order_id, .. } => Step::Succeeded(*order_id),
            CouponEvent::UseRejected {
                order_id, reason, ..
            } => Step::Rejected(*order_id, reason),
            CouponEvent::Released { order_id, .. } => Step::Undone(*order_id),
            CouponEvent::Tombstoned(fact) => fact.into(),
            CouponEvent::CompensationSkipped(fact) => fact.into(),
            CouponEvent::PlacementIgnored(fact) => fact.into(),
        }
    }
}

/// An intention to change the coupons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponCommand {
    /// Admin: issue a new coupon.
    Issue {
        /// The coupon, unique.
        coupon_id: String,
        /// The only user who may use it; `None` = anyone.
        user_id: Option<String>,
        /// The discount it grants, at least 1.
        discount: u64,
        /// When it stops being usable (ms since the Unix epoch); `None` = never.
        expires_at_ms: Option<u64>,
    },
    /// `order.placed` arrived: use the order's coupon, if it names one.
    HandlePlaced {
        /// The order.
        placed: OrderPlaced,
        /// The time of the decision (ms since the Unix epoch), for the expiry check.
        now_ms: u64,
    },
    /// `order.failed` arrived: release the coupon the order used.
    HandleFailed {
        /// The order.
        order_id: Uuid,
    },
}

/// Why a coupon command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponRejection {
    /// The coupon id is empty.
    #[error("couponId must not be empty")]
    EmptyCouponId,
    /// The coupon id is longer than [`MAX_ID_LEN`] characters.
    #[error("couponId is {len} characters, at most {max} allowed", max = MAX_ID_LEN)]
    CouponIdTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The user id is given but empty.
    #[error("userId must not be empty when given")]
    EmptyUserId,
    /// The user id is longer than [`MAX_ID_LEN`] characters.
    #[error("userId is {len} characters, at most {max} allowed", max = MAX_ID_LEN)]
    UserIdTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A coupon that grants nothing.
    #[error("discount must be at least 1")]
    ZeroDiscount,
    /// A coupon with this id was already issued.
    #[error("coupon {coupon_id} already exists")]
    AlreadyExists {
        /// The coupon.
        coupon_id: String,
    },
}

impl CouponRejection {
    /// The request field at fault, for a client error naming it.
    pub fn field(&self) -> &'static str {
        match self {
            CouponRejection::EmptyCouponId
            | CouponRejection::CouponIdTooLong { .. }
            | CouponRejection::AlreadyExists { .. } => "couponId",
            CouponRejection::EmptyUserId | CouponRejection::UserIdTooLong { .. } => "userId",
            CouponRejection::ZeroDiscount => "discount",
        }
    }
}

/// The wire event a domain event publishes, if any.
pub fn outcome(event: &CouponEvent) -> Option<ParticipantEvent> {
    ledger::outcome(Participant::Coupon, event)
}

fn issue(
    state: &CouponState,
    coupon_id: String,
    user_id: Option<String>,
    discount: u64,
    expires_at_ms: Option<u64>,
) -> Result<Vec<CouponEvent>, CouponRejection> {
    if coupon_id.is_empty() {
        return Err(CouponRejection::EmptyCouponId);
    }
    let len = coupon_id.chars().count();
    if len > MAX_ID_LEN {
        return Err(CouponRejection::CouponIdTooLong { len });
    }
    if let Some(user_id) = &user_id {
        if user_id.is_empty() {
            return Err(CouponRejection::EmptyUserId);
        }
        let len = user_id.chars().count();
        if len > MAX_ID_LEN {
            return Err(CouponRejection::UserIdTooLong { len });
        }
    }
    if discount == 0 {
        return Err(CouponRejection::ZeroDiscount);
    }
    if state.coupons.contains_key(&coupon_id) {
        return Err(CouponRejection::AlreadyExists { coupon_id });
    }
    Ok(vec![CouponEvent::Issued {
        coupon_id,
        user_id,
        discount,
        expires_at_ms,
    }])
}

/// Why the coupon cannot be used by this order, if it cannot.
fn unusable_because(
    state: &CouponState,
    placed: &OrderPlaced,
    coupon_id: &str,
    now_ms: u64,
) -> Option<String> {
    let Some(coupon) = state.coupon(coupon_id) else {
        return Some(format!("coupon {coupon_id}: unknown coupon"));
    };
    if coupon
        .user_id
        .as_ref()
        .is_some_and(|owner| *owner != placed.user_id)
    {
        return Some(format!("coupon {coupon_id}: belongs to another user"));
    }
    if coupon.expires_at_ms.is_some_and(|at| now_ms >= at) {
        return Some(format!("coupon {coupon_id}: expired"));
    }
    if coupon
        .used_by
        .is_some_and(|order_id| order_id != placed.order_id)
    {
        return Some(format!("coupon {coupon_id}: already used"));
    }
    None
}

fn handle_placed(state: &CouponState, placed: &OrderPlaced, now_ms: u64) -> Vec<CouponEvent> {
    let order_id = placed.order_id;
    ledger::decide_placed(state.order_status(order_id), order_id, || {
        // Without a coupon this order does not need the coupon service at all.
        let Some(coupon_id) = placed.coupon_id.clone() else {
            return vec![];
        };
        match unusable_because(state, placed, &coupon_id, now_ms) {
            Some(reason) => vec![CouponEvent::UseRejected {
                order_id,
                coupon_id,
                reason,
            }],
            None => vec![CouponEvent::Used {
                order_id,
                coupon_id,
            }],
        }
    })
}

fn handle_failed(state: &CouponState, order_id: Uuid) -> Vec<CouponEvent> {
    // A use without a coupon id cannot be folded, so every used order has one.
    ledger::decide_failed(&state.orders, order_id, |entry| {
        entry
            .coupon_id
            .iter()
            .map(|coupon_id| CouponEvent::Released {
                order_id,
                coupon_id: coupon_id.clone(),
            })
            .collect()
    })
}

fn coupon_mut<'a>(state: &'a mut CouponState, coupon_id: &str) -> &'a mut CouponEntry {
    match state.coupons.get_mut(coupon_id) {
        Some(coupon) => coupon,
        None => panic!("event about coupon {coupon_id}, which was never issued"),
    }
}

impl Domain for Coupon {
    type State = CouponState;
    type Event = CouponEvent;
    type Command = CouponCommand;
    type Rejection = CouponRejection;

    fn decide(
        state: &CouponState,
        command: CouponCommand,
    ) -> Result<Vec<CouponEvent>, CouponRejection> {
        match command {
            CouponCommand::Issue {
                coupon_id,
                user_id,
                discount,
                expires_at_ms,
            } => issue(state, coupon_id, user_id, discount, expires_at_ms),
            CouponCommand::HandlePlaced { placed, now_ms } => {
                Ok(handle_placed(state, &placed, now_ms))
            }
            CouponCommand::HandleFailed { order_id } => Ok(handle_failed(state, order_id)),
        }
    }

    fn evolve(state: &mut CouponState, event: &CouponEvent) {
        ledger::evolve_order(&mut state.orders, event.step(), "coupon", |status| {
            entry_of(event, status)
        });
        match event {
            CouponEvent::Issued {
                coupon_id,
                user_id,
                discount,
                expires_at_ms,
            } => {
                let coupon = CouponEntry {
                    coupon_id: coupon_id.clone(),
                    user_id: user_id.clone(),
                    discount: *discount,
                    expires_at_ms: *expires_at_ms,
                    used_by: None,
                };
                let previous = state.coupons.insert(coupon_id.clone(), coupon);
                assert!(previous.is_none(), "coupon {coupon_id} issued twice");
            }
            CouponEvent::Used {
                order_id,
                coupon_id,
            } => {
                let coupon = coupon_mut(state, coupon_id);
                assert_eq!(
                    coupon.used_by, None,
                    "coupon {coupon_id} used by order {order_id} while in use"
                );
                coupon.used_by = Some(*order_id);
            }
            CouponEvent::Released {
                order_id,
                coupon_id,
            } => {
                // The coupon is named by the event: the entry may have left memory long ago.
                let coupon = coupon_mut(state, coupon_id);
                assert_eq!(
                    coupon.used_by,
                    Some(*order_id),
                    "coupon {coupon_id} released by order {order_id}, which does not hold it"
                );
                coupon.used_by = None;
            }
            CouponEvent::UseRejected { .. }
            | CouponEvent::Tombstoned(_)
            | CouponEvent::CompensationSkipped(_)
            | CouponEvent::PlacementIgnored(_) => {}
        }
    }

    fn cold_key(command: &CouponCommand) -> Option<String> {
        match command {
            CouponCommand::Issue { .. } => None,
            CouponCommand::HandlePlaced { placed, .. } => ledger::cold_key(placed.order_id),
            CouponCommand::HandleFailed { order_id } => ledger::cold_key(*order_id),
        }
    }

    // 2: open orders only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    contract::ledger_hooks!(orders: orders, entry_of: entry_of);
}

impl ParticipantCore for Coupon {
    const PARTICIPANT: Participant = Participant::Coupon;

    fn placed_command(placed: &OrderPlaced, now_ms: u64) -> CouponCommand {
        let placed = placed.clone();
        CouponCommand::HandlePlaced { placed, now_ms }
    }

    fn failed_command(order_id: Uuid) -> CouponCommand {
        CouponCommand::HandleFailed { order_id }
    }

    fn render_state(state: &CouponState) -> serde_json::Value {
        serde_json::json!({ "coupons": state.coupons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::fixtures::{self, check_variants, order, LedgerCase};
    use eventlog::scenario::given;

    const NOW: u64 = 10_000;

    fn placed(order_id: Uuid, user_id: &str, coupon_id: Option<&str>) -> OrderPlaced {
        OrderPlaced {
            user_id: user_id.into(),
            coupon_id: coupon_id.map(Into::into),
            placed_at_ms: NOW,
            deadline_ms: NOW + 30_000,
            ..fixtures::placed(order_id)
        }
    }

    fn place(order_id: Uuid, user_id: &str, coupon_id: Option<&str>) -> CouponCommand {
        CouponCommand::HandlePlaced {
            placed: placed(order_id, user_id, coupon_id),
            now_ms: NOW,
        }
    }

    fn issued(coupon_id: &str, user_id: Option<&str>, expires_at_ms: Option<u64>) -> CouponEvent {
        CouponEvent::Issued {
            coupon_id: coupon_id.into(),
            user_id: user_id.map(Into::into),
            discount: 500,
            expires_at_ms,
        }
    }

    fn issue(coupon_id: &str, user_id: Option<&str>, discount: u64) -> CouponCommand {
        CouponCommand::Issue {
            coupon_id: coupon_id.into(),
            user_id: user_id.map(Into::into),
            discount,
            expires_at_ms: None,
        }
    }

    fn used(order_id: Uuid, coupon_id: &str) -> CouponEvent {
        CouponEvent::Used {
            order_id,
            coupon_id: coupon_id.into(),
        }
    }

    fn use_rejected(order_id: Uuid, coupon_id: &str, reason: &str) -> CouponEvent {
        CouponEvent::UseRejected {
            order_id,
            coupon_id: coupon_id.into(),
            reason: reason.into(),
        }
    }

    fn released(order_id: Uuid, coupon_id: &str) -> CouponEvent {
        CouponEvent::Released {
            order_id,
            coupon_id: coupon_id.into(),
        }
    }

    fn skipped(order_id: Uuid) -> CouponEvent {
        ledger::compensation_skipped(order_id)
    }

    #[test]
    fn an_issued_coupon_is_available() {
        // Given
        let scenario = given::<Coupon>([]);
        // When
        let when = scenario.when(CouponCommand::Issue {
            coupon_id: "c-1".into(),
            user_id: Some("user-1".into()),
            discount: 500,
            expires_at_ms: Some(NOW),
        });
        // Then
        let state = when.then([issued("c-1", Some("user-1"), Some(NOW))]);
        let coupon = state.coupon("c-1").expect("issued");
        assert_eq!(coupon.status(), CouponStatus::Available);
        assert_eq!(coupon.discount, 500);
        assert_eq!(state.coupon("c-2"), None);
    }

    #[test]
    fn a_coupon_id_is_issued_once() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", None, None)]);
        // When
        let when = scenario.when(issue("c-1", None, 100));
        // Then
        when.then_rejected(CouponRejection::AlreadyExists {
            coupon_id: "c-1".into(),
        });
    }

    #[test]
    fn issuing_validates_ids_and_discount() {
        let too_long = "c".repeat(MAX_ID_LEN + 1);
        let cases = [
            (issue("", None, 100), CouponRejection::EmptyCouponId),
            (
                issue(&too_long, None, 100),
                CouponRejection::CouponIdTooLong { len: 65 },
            ),
            (issue("c-1", Some(""), 100), CouponRejection::EmptyUserId),
            (
                issue("c-1", Some(&too_long), 100),
                CouponRejection::UserIdTooLong { len: 65 },
            ),
            (issue("c-1", None, 0), CouponRejection::ZeroDiscount),
        ];
        for (command, rejection) in cases {
            // Given
            let scenario = given::<Coupon>([]);
            // When
            let when = scenario.when(command);
            // Then
            when.then_rejected(rejection);
        }
        let longest = "c".repeat(MAX_ID_LEN);
        given::<Coupon>([])
            .when(issue(&longest, Some(&longest), 1))
            .then([CouponEvent::Issued {
                coupon_id: longest.clone(),
                user_id: Some(longest.clone()),
                discount: 1,
                expires_at_ms: None,
            }]);
    }

    #[test]
    fn a_valid_coupon_is_marked_used_by_the_order() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", Some("user-1"), Some(NOW + 1))]);
        // When
        let when = scenario.when(place(order(1), "user-1", Some("c-1")));
        // Then
        let state = when.then([used(order(1), "c-1")]);
        let coupon = state.coupon("c-1").expect("issued");
        assert_eq!(coupon.used_by, Some(order(1)));
        assert_eq!(coupon.status(), CouponStatus::Used);
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Succeeded)
        );
    }

    #[test]
    fn an_order_without_a_coupon_does_not_involve_the_coupon_service() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", None, None)]);
        // When
        let when = scenario.when(place(order(1), "user-1", None));
        // Then
        let state = when.then_nothing();
        assert_eq!(state.order_status(order(1)), None);
    }

    #[test]
    fn an_unknown_coupon_is_rejected() {
        // Given
        let scenario = given::<Coupon>([]);
        // When
        let when = scenario.when(place(order(1), "user-1", Some("c-9")));
        // Then
        let state = when.then([use_rejected(order(1), "c-9", "coupon c-9: unknown coupon")]);
        assert_eq!(
            state.order_status(order(1)),
            Some(ParticipantOrderStatus::Rejected)
        );
    }

    #[test]
    fn another_users_coupon_is_rejected() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", Some("user-2"), None)]);
        // When
        let when = scenario.when(place(order(1), "user-1", Some("c-1")));
        // Then
        when.then([use_rejected(
            order(1),
            "c-1",
            "coupon c-1: belongs to another user",
        )]);
    }

    #[test]
    fn a_coupon_expires_at_its_expiry_time() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", None, Some(NOW))]);
        // When
        let when = scenario.when(place(order(1), "user-1", Some("c-1")));
        // Then
        let state = when.then([use_rejected(order(1), "c-1", "coupon c-1: expired")]);
        assert_eq!(state.coupon("c-1").expect("issued").used_by, None);
    }

    #[test]
    fn a_coupon_serves_one_order_at_a_time() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", None, None), used(order(1), "c-1")]);
        // When
        let when = scenario.when(place(order(2), "user-1", Some("c-1")));
        // Then
        let state = when.then([use_rejected(order(2), "c-1", "coupon c-1: already used")]);
        assert_eq!(state.coupon("c-1").expect("issued").used_by, Some(order(1)));
    }

    #[test]
    fn a_failed_order_releases_its_coupon_for_the_next_order() {
        // Given
        let scenario = given::<Coupon>([issued("c-1", None, None), used(order(1), "c-1")]);
        // When
        let when = scenario.when(CouponCommand::HandleFailed { order_id: order(1) });
        // Then
        let state = when.then([released(order(1), "c-1")]);
        assert_eq!(state.coupon("c-1").expect("issued").used_by, None);
        // Settled: the entry left memory; the log keeps it.
        assert_eq!(state.order_status(order(1)), None);
        let next = given::<Coupon>([
            issued("c-1", None, None),
            used(order(1), "c-1"),
            released(order(1), "c-1"),
        ]);
        next.when(place(order(2), "user-1", Some("c-1")))
            .then([used(order(2), "c-1")]);
    }

    /// `OPEN_WINDOW` newer orders (rejected: no coupon moves), enough to push order(1) out.
    fn newer_orders() -> impl Iterator<Item = CouponEvent> {
        (2..=u128::from(ledger::OPEN_WINDOW) + 1)
            .map(|n| use_rejected(order(n), "c-9", "coupon c-9: unknown coupon"))
    }

    #[test]
    fn an_evicted_use_that_fails_releases_the_coupon_exactly_once() {
        // Given coupon c-1 used by order 1 long ago: its entry is no longer in memory
        let history: Vec<CouponEvent> = [issued("c-1", None, None), used(order(1), "c-1")]
            .into_iter()
            .chain(newer_orders())
            .collect();
        let scenario = given::<Coupon>(history.clone());
        assert_eq!(scenario.state().order_status(order(1)), None);
        assert_eq!(
            scenario.state().coupon("c-1").map(CouponEntry::status),
            Some(CouponStatus::Used)
        );
        // When order.failed arrives for it
        let when = scenario.when(CouponCommand::HandleFailed { order_id: order(1) });
        // Then the coupon is released (and the state is the fold of the log)
        let state = when.then([released(order(1), "c-1")]);
        assert_eq!(
            state.coupon("c-1").map(CouponEntry::status),
            Some(CouponStatus::Available)
        );
        assert_eq!(state.order_status(order(1)), None);
        // And a re-drive releases nothing more, while another order may now use it
        let after: Vec<CouponEvent> = history
            .into_iter()
            .chain([released(order(1), "c-1")])
            .collect();
        given::<Coupon>(after.clone())
            .when(CouponCommand::HandleFailed { order_id: order(1) })
            .then_nothing();
        given::<Coupon>(after)
            .when(place(order(u128::MAX), "user-2", Some("c-1")))
            .then([used(order(u128::MAX), "c-1")]);
    }

    #[test]
    fn a_late_placement_after_an_evicted_tombstone_is_ignored() {
        // Given a tombstone (never kept in memory) and many orders since
        let history: Vec<CouponEvent> = [issued("c-1", None, None), ledger::tombstoned(order(1))]
            .into_iter()
            .chain(newer_orders())
            .collect();
        // When the order's placement arrives at last
        let when = given::<Coupon>(history).when(place(order(1), "user-1", Some("c-1")));
        // Then it is ignored: the coupon stays available
        let state = when.then([ledger::placement_ignored(order(1), LATE_PLACEMENT)]);
        assert_eq!(
            state.coupon("c-1").map(CouponEntry::status),
            Some(CouponStatus::Available)
        );
    }

    #[test]
    fn the_shared_ledger_rules_hold() {
        LedgerCase::<Coupon> {
            participant: Participant::Coupon,
            setup: vec![issued("c-1", None, None)],
            place: place(order(1), "user-1", Some("c-1")),
            fail: CouponCommand::HandleFailed { order_id: order(1) },
            succeeded: used(order(1), "c-1"),
            rejected: use_rejected(order(1), "c-1", "coupon c-1: expired"),
            undone: released(order(1), "c-1"),
            subjects: ["coupon.used", "coupon.rejected", "coupon.restored"],
        }
        .check();
        assert_eq!(outcome(&issued("c-1", None, None)), None);
    }

    #[test]
    fn variants_keep_their_postcard_positions_names_and_streams() {
        let events = [
            issued("c-1", None, None),
            used(order(1), "c-1"),
            use_rejected(order(1), "c-1", "coupon c-1: expired"),
            released(order(1), "c-1"),
            ledger::tombstoned(order(1)),
            skipped(order(1)),
            ledger::placement_ignored(order(1), LATE_PLACEMENT),
        ];
        let names = [
            "Issued",
            "Used",
            "UseRejected",
            "Released",
            "Tombstoned",
            "CompensationSkipped",
            "PlacementIgnored",
        ];
        check_variants::<Coupon>(&events, &names, Some("coupon-c-1"), order(1));
    }

    #[test]
    fn events_and_coupons_render_as_camel_case_json() {
        // Given
        let event = issued("c-1", Some("user-1"), Some(NOW));
        let state = given::<Coupon>([event.clone(), used(order(1), "c-1")]);
        // When
        let event_json = serde_json::to_value(&event).expect("serialises");
        let coupon_json = serde_json::to_value(state.state().coupon("c-1")).expect("serialises");
        // Then
        assert_eq!(
            event_json,
            serde_json::json!({"issued": {
                "couponId": "c-1", "userId": "user-1", "discount": 500, "expiresAtMs": NOW
            }})
        );
        assert_eq!(
            coupon_json,
            serde_json::json!({
                "couponId": "c-1", "userId": "user-1", "discount": 500,
                "expiresAtMs": NOW, "usedBy": order(1)
            })
        );
    }
}
