//! Payment's pure core: recording the gateway's approvals and declines, and cancelling approvals.
//!
//! No I/O, clock or randomness: the I/O shell asks the payment gateway and hands its answer in
//! with the command ([`GatewayDecision`], [`CancelResult`]).

use std::collections::HashMap;

pub use contract::ledger::{LATE_PLACEMENT, NOTHING_TO_UNDO, TOMBSTONE_REASON};
use contract::{OrderPlaced, OutcomeKind, Participant, ParticipantEvent};
use eventlog::domain::Domain;
use serde::{Deserialize, Serialize};

/// Reason recorded when `order.placed` arrives after the requested charge was cancelled.
pub const CANCELLED_PLACEMENT: &str = "order already failed (charge request cancelled)";
use uuid::Uuid;

/// The payment domain: one payment per order, approved or declined at the gateway.
pub struct Payment;

/// Where one order's payment stands (the contract names of `GET /payments/{orderId}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// The gateway approved the amount.
    Approved,
    /// The gateway declined the amount.
    Declined,
    /// The approval was cancelled at the gateway after the order failed.
    Cancelled,
    /// Cancelling the approval failed for good; an operator may retry it.
    CancelFailed,
    /// `order.failed` came first; a late `order.placed` is ignored.
    Tombstoned,
    /// The charge was requested at the gateway and its answer is not known yet: the PG may hold
    /// a charge, so a failing order must be cancelled there.
    Requested,
}

impl PaymentStatus {
    /// The contract name, e.g. `CANCEL_FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Approved => "APPROVED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Cancelled => "CANCELLED",
            PaymentStatus::CancelFailed => "CANCEL_FAILED",
            PaymentStatus::Tombstoned => "TOMBSTONED",
            PaymentStatus::Requested => "REQUESTED",
        }
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEntry {
    /// The order.
    pub order_id: Uuid,
    /// The amount charged, in minor units; 0 for a tombstone.
    pub amount: u64,
    /// Where the payment stands.
    pub status: PaymentStatus,
    /// The gateway's authorization, once approved.
    pub authorization: Option<String>,
    /// Why it was declined, or why its cancellation failed.
    pub reason: Option<String>,
    /// The order failed after the decline and that was answered (nothing to undo).
    pub compensation_skipped: bool,
}

/// The folded state: every order's payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    /// Payments by order id.
    pub payments: HashMap<Uuid, PaymentEntry>,
}

impl PaymentState {
    /// An order's payment; `None` for an order never seen.
    pub fn payment(&self, id: Uuid) -> Option<&PaymentEntry> {
        self.payments.get(&id)
    }

    /// Where an order's payment stands; `None` for an order never seen.
    pub fn status(&self, order_id: Uuid) -> Option<PaymentStatus> {
        self.payment(order_id).map(|entry| entry.status)
    }
}

/// What the payment gateway answered to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayDecision {
    /// The charge is approved under this authorization.
    Approved {
        /// The gateway's authorization code, needed to cancel later.
        authorization: String,
    },
    /// The charge is declined.
    Declined {
        /// The gateway's reason.
        reason: String,
    },
}

/// What the payment gateway answered to a cancellation (after the shell's retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// The approval is cancelled.
    Cancelled,
    /// Cancelling kept failing.
    Failed {
        /// The gateway's last error.
        reason: String,
    },
    /// The gateway was not asked, because [`needs_gateway_cancel`] said no.
    NotNeeded,
}

/// A fact the payment service recorded.
// Postcard encodes variants by position: this order is final, append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PaymentEvent {
    /// The gateway approved the order's amount.
    Approved {
        /// The order.
        order_id: Uuid,
        /// The amount approved, in minor units.
        amount: u64,
        /// The gateway's authorization code.
        authorization: String,
    },
    /// The gateway declined the order's amount.
    Declined {
        /// The order.
        order_id: Uuid,
        /// The amount declined, in minor units.
        amount: u64,
        /// The gateway's reason.
        reason: String,
    },
    /// A failed order's approval was cancelled at the gateway.
    Cancelled {
        /// The order.
        order_id: Uuid,
    },
    /// Cancelling a failed order's approval failed for good; an operator may retry.
    CancelFailed {
        /// The order.
        order_id: Uuid,
        /// The gateway's last error.
        reason: String,
    },
    /// `order.failed` arrived before `order.placed`: nothing to undo, remember the order failed.
    Tombstoned {
        /// The order.
        order_id: Uuid,
    },
    /// A declined order failed: nothing was charged, so nothing is undone.
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
    /// The charge is about to be requested at the gateway: recorded before the call, so a
    /// failing order is cancelled at the PG even if payment never learns the PG's answer.
    ApprovalRequested {
        /// The order.
        order_id: Uuid,
        /// The amount requested, in minor units.
        amount: u64,
    },
}

/// An intention to change the payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Payment is about to ask the gateway to charge an order: record the attempt first.
    RequestApproval {
        /// The order.
        placed: OrderPlaced,
    },
    /// `order.placed` arrived and the gateway answered the charge.
    HandlePlaced {
        /// The order.
        placed: OrderPlaced,
        /// The gateway's answer; ignored when [`needs_gateway_approval`] is false.
        decision: GatewayDecision,
    },
    /// `order.failed` arrived (or an operator retries a failed cancellation).
    HandleFailed {
        /// The order.
        order_id: Uuid,
        /// The gateway's answer to the cancellation, or `NotNeeded` if it was not asked.
        cancel: CancelResult,
    },
}

/// Why a payment command was refused (the shell handed in an impossible gateway answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRejection {
    /// An approval without an authorization code could never be cancelled.
    EmptyAuthorization {
        /// The order.
        order_id: Uuid,
    },
    /// The payment is approved (or its cancellation failed) but the gateway was not asked to cancel.
    GatewayCancelRequired {
        /// The order.
        order_id: Uuid,
    },
}

impl std::fmt::Display for PaymentRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentRejection::EmptyAuthorization { order_id } => {
                write!(f, "approval of order {order_id} has an empty authorization")
            }
            PaymentRejection::GatewayCancelRequired { order_id } => write!(
                f,
                "payment of order {order_id} must be cancelled at the gateway first"
            ),
        }
    }
}

impl std::error::Error for PaymentRejection {}

/// Whether the gateway must be asked to charge before deciding `HandlePlaced`: the order is new,
/// or its charge was requested without a known answer. A failed or cancelled order never is.
pub fn needs_gateway_approval(state: &PaymentState, order_id: Uuid) -> bool {
    matches!(
        state.status(order_id),
        None | Some(PaymentStatus::Requested)
    )
}

/// Whether the attempt must be recorded (`RequestApproval`) before asking the gateway to charge.
pub fn needs_approval_request(state: &PaymentState, order_id: Uuid) -> bool {
    state.payment(order_id).is_none()
}

/// Whether the gateway must be asked to cancel before deciding `HandleFailed`: it holds a charge,
/// or may hold one (requested, answer unknown).
pub fn needs_gateway_cancel(state: &PaymentState, order_id: Uuid) -> bool {
    matches!(
        state.status(order_id),
        Some(PaymentStatus::Approved | PaymentStatus::CancelFailed | PaymentStatus::Requested)
    )
}

/// The compensation outcome payment already recorded for a failed order, if it is settled
/// (cancelled, tombstoned, or declined and skipped): what a re-drive of `order.failed` re-publishes.
pub fn settled_outcome(state: &PaymentState, order_id: Uuid) -> Option<ParticipantEvent> {
    let payment = state.payment(order_id)?;
    let event = match payment.status {
        PaymentStatus::Cancelled => PaymentEvent::Cancelled { order_id },
        PaymentStatus::Tombstoned => PaymentEvent::Tombstoned { order_id },
        PaymentStatus::Declined if payment.compensation_skipped => {
            PaymentEvent::CompensationSkipped {
                order_id,
                reason: NOTHING_TO_UNDO.to_owned(),
            }
        }
        PaymentStatus::Approved
        | PaymentStatus::Declined
        | PaymentStatus::CancelFailed
        | PaymentStatus::Requested => return None,
    };
    outcome(&event)
}

/// The wire event a domain event publishes, if any.
pub fn outcome(event: &PaymentEvent) -> Option<ParticipantEvent> {
    let (order_id, kind, reason) = match event {
        PaymentEvent::PlacementIgnored { .. } | PaymentEvent::ApprovalRequested { .. } => {
            return None
        }
        PaymentEvent::Approved { order_id, .. } => (*order_id, OutcomeKind::Succeeded, None),
        PaymentEvent::Declined {
            order_id, reason, ..
        } => (*order_id, OutcomeKind::Rejected, Some(reason.clone())),
        PaymentEvent::Cancelled { order_id } => (*order_id, OutcomeKind::Compensated, None),
        PaymentEvent::CancelFailed { order_id, reason } => (
            *order_id,
            OutcomeKind::CompensationFailed,
            Some(reason.clone()),
        ),
        PaymentEvent::Tombstoned { order_id } => (
            *order_id,
            OutcomeKind::Compensated,
            Some(TOMBSTONE_REASON.to_owned()),
        ),
        PaymentEvent::CompensationSkipped { order_id, reason } => {
            (*order_id, OutcomeKind::Compensated, Some(reason.clone()))
        }
    };
    Some(ParticipantEvent {
        order_id,
        participant: Participant::Payment,
        kind,
        reason,
    })
}

fn handle_placed(
    state: &PaymentState,
    placed: &OrderPlaced,
    decision: GatewayDecision,
) -> Result<Vec<PaymentEvent>, PaymentRejection> {
    let order_id = placed.order_id;
    match state.status(order_id) {
        Some(PaymentStatus::Tombstoned) => {
            return Ok(vec![PaymentEvent::PlacementIgnored {
                order_id,
                reason: LATE_PLACEMENT.to_owned(),
            }])
        }
        // The order failed while its charge was requested and was cancelled at the gateway:
        // whatever the gateway answered to the charge, the placement is over.
        Some(PaymentStatus::Cancelled) => {
            return Ok(vec![PaymentEvent::PlacementIgnored {
                order_id,
                reason: CANCELLED_PLACEMENT.to_owned(),
            }])
        }
        // The attempt is recorded: the gateway's answer is recorded now.
        Some(PaymentStatus::Requested) => {}
        // A redelivery: the shell re-publishes the outcome already recorded.
        Some(_) => return Ok(vec![]),
        None => {}
    }
    let amount = placed.amount;
    match decision {
        GatewayDecision::Approved { authorization } if authorization.is_empty() => {
            Err(PaymentRejection::EmptyAuthorization { order_id })
        }
        GatewayDecision::Approved { authorization } => Ok(vec![PaymentEvent::Approved {
            order_id,
            amount,
            authorization,
        }]),
        GatewayDecision::Declined { reason } => Ok(vec![PaymentEvent::Declined {
            order_id,
            amount,
            reason,
        }]),
    }
}

fn request_approval(state: &PaymentState, placed: &OrderPlaced) -> Vec<PaymentEvent> {
    if state.payment(placed.order_id).is_some() {
        // Requested before (a redelivery), or already answered: nothing new to record.
        return vec![];
    }
    vec![PaymentEvent::ApprovalRequested {
        order_id: placed.order_id,
        amount: placed.amount,
    }]
}

fn handle_failed(
    state: &PaymentState,
    order_id: Uuid,
    cancel: CancelResult,
) -> Result<Vec<PaymentEvent>, PaymentRejection> {
    let Some(payment) = state.payment(order_id) else {
        return Ok(vec![PaymentEvent::Tombstoned { order_id }]);
    };
    match payment.status {
        // A failed cancellation stays retryable: an operator's retry decides afresh. A requested
        // charge with no known answer may be held by the PG: it is cancelled there too.
        PaymentStatus::Approved | PaymentStatus::CancelFailed | PaymentStatus::Requested => {
            match cancel {
                CancelResult::Cancelled => Ok(vec![PaymentEvent::Cancelled { order_id }]),
                CancelResult::Failed { reason } => {
                    Ok(vec![PaymentEvent::CancelFailed { order_id, reason }])
                }
                CancelResult::NotNeeded => {
                    Err(PaymentRejection::GatewayCancelRequired { order_id })
                }
            }
        }
        PaymentStatus::Declined if payment.compensation_skipped => Ok(vec![]),
        PaymentStatus::Declined => Ok(vec![PaymentEvent::CompensationSkipped {
            order_id,
            reason: NOTHING_TO_UNDO.to_owned(),
        }]),
        PaymentStatus::Cancelled | PaymentStatus::Tombstoned => Ok(vec![]),
    }
}

fn record_new_payment(state: &mut PaymentState, entry: PaymentEntry) {
    let order_id = entry.order_id;
    let previous = state.payments.insert(order_id, entry);
    assert!(
        previous.is_none(),
        "payment of order {order_id} decided twice: decide must turn a repeat into a no-op"
    );
}

/// Records the gateway's answer to a charge: for a new order, or one whose charge was requested.
fn record_answer(state: &mut PaymentState, entry: PaymentEntry) {
    let order_id = entry.order_id;
    let previous = state.payments.insert(order_id, entry);
    assert!(
        matches!(
            &previous,
            None | Some(PaymentEntry {
                status: PaymentStatus::Requested,
                ..
            })
        ),
        "payment of order {order_id} answered while {:?}: decide must turn a repeat into a no-op",
        previous.map(|p| p.status)
    );
}

fn payment_mut(state: &mut PaymentState, order_id: Uuid) -> &mut PaymentEntry {
    match state.payments.get_mut(&order_id) {
        Some(entry) => entry,
        None => panic!("event about order {order_id}, which payment has never seen"),
    }
}

fn cancellable_mut(state: &mut PaymentState, order_id: Uuid) -> &mut PaymentEntry {
    let entry = payment_mut(state, order_id);
    assert!(
        matches!(
            entry.status,
            PaymentStatus::Approved | PaymentStatus::CancelFailed | PaymentStatus::Requested
        ),
        "cancellation of order {order_id} recorded while {}",
        entry.status
    );
    entry
}

impl Domain for Payment {
    type State = PaymentState;
    type Event = PaymentEvent;
    type Command = PaymentCommand;
    type Rejection = PaymentRejection;

    fn decide(
        state: &PaymentState,
        command: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, PaymentRejection> {
        match command {
            PaymentCommand::HandlePlaced { placed, decision } => {
                handle_placed(state, &placed, decision)
            }
            PaymentCommand::HandleFailed { order_id, cancel } => {
                handle_failed(state, order_id, cancel)
            }
            PaymentCommand::RequestApproval { placed } => Ok(request_approval(state, &placed)),
        }
    }

    fn evolve(state: &mut PaymentState, event: &PaymentEvent) {
        match event {
            PaymentEvent::Approved {
                order_id,
                amount,
                authorization,
            } => record_answer(
                state,
                PaymentEntry {
                    order_id: *order_id,
                    amount: *amount,
                    status: PaymentStatus::Approved,
                    authorization: Some(authorization.clone()),
                    reason: None,
                    compensation_skipped: false,
                },
            ),
            PaymentEvent::Declined {
                order_id,
                amount,
                reason,
            } => record_answer(
                state,
                PaymentEntry {
                    order_id: *order_id,
                    amount: *amount,
                    status: PaymentStatus::Declined,
                    authorization: None,
                    reason: Some(reason.clone()),
                    compensation_skipped: false,
                },
            ),
            PaymentEvent::Cancelled { order_id } => {
                let entry = cancellable_mut(state, *order_id);
                entry.status = PaymentStatus::Cancelled;
                // A reason left over from a failed attempt no longer describes the payment.
                entry.reason = None;
            }
            PaymentEvent::CancelFailed { order_id, reason } => {
                let entry = cancellable_mut(state, *order_id);
                entry.status = PaymentStatus::CancelFailed;
                entry.reason = Some(reason.clone());
            }
            PaymentEvent::Tombstoned { order_id } => record_new_payment(
                state,
                PaymentEntry {
                    order_id: *order_id,
                    amount: 0,
                    status: PaymentStatus::Tombstoned,
                    authorization: None,
                    reason: None,
                    compensation_skipped: false,
                },
            ),
            PaymentEvent::CompensationSkipped { order_id, .. } => {
                let entry = payment_mut(state, *order_id);
                assert!(
                    entry.status == PaymentStatus::Declined && !entry.compensation_skipped,
                    "compensation of order {order_id} skipped while {} (skipped before: {})",
                    entry.status,
                    entry.compensation_skipped
                );
                entry.compensation_skipped = true;
            }
            PaymentEvent::PlacementIgnored { order_id, .. } => {
                let status = state.status(*order_id);
                assert!(
                    matches!(
                        status,
                        Some(PaymentStatus::Tombstoned | PaymentStatus::Cancelled)
                    ),
                    "placement of order {order_id} ignored while {status:?}"
                );
            }
            PaymentEvent::ApprovalRequested { order_id, amount } => record_new_payment(
                state,
                PaymentEntry {
                    order_id: *order_id,
                    amount: *amount,
                    status: PaymentStatus::Requested,
                    authorization: None,
                    reason: None,
                    compensation_skipped: false,
                },
            ),
        }
    }

    fn event_type(event: &PaymentEvent) -> &'static str {
        match event {
            PaymentEvent::Approved { .. } => "Approved",
            PaymentEvent::Declined { .. } => "Declined",
            PaymentEvent::Cancelled { .. } => "Cancelled",
            PaymentEvent::CancelFailed { .. } => "CancelFailed",
            PaymentEvent::Tombstoned { .. } => "Tombstoned",
            PaymentEvent::CompensationSkipped { .. } => "CompensationSkipped",
            PaymentEvent::PlacementIgnored { .. } => "PlacementIgnored",
            PaymentEvent::ApprovalRequested { .. } => "ApprovalRequested",
        }
    }

    fn stream_of(event: &PaymentEvent) -> String {
        match event {
            PaymentEvent::Approved { order_id, .. }
            | PaymentEvent::Declined { order_id, .. }
            | PaymentEvent::Cancelled { order_id }
            | PaymentEvent::CancelFailed { order_id, .. }
            | PaymentEvent::Tombstoned { order_id }
            | PaymentEvent::CompensationSkipped { order_id, .. }
            | PaymentEvent::PlacementIgnored { order_id, .. }
            | PaymentEvent::ApprovalRequested { order_id, .. } => format!("order-{order_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::OrderLine;
    use eventlog::scenario::given;

    fn order(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn placed(order_id: Uuid, amount: u64) -> OrderPlaced {
        OrderPlaced {
            order_id,
            user_id: "user-1".into(),
            items: vec![OrderLine {
                sku: "sku-1".into(),
                qty: 1,
                price: amount,
            }],
            coupon_id: None,
            points: 0,
            amount,
            placed_at_ms: 1_000,
            deadline_ms: 31_000,
        }
    }

    fn approve(order_id: Uuid, amount: u64) -> PaymentCommand {
        PaymentCommand::HandlePlaced {
            placed: placed(order_id, amount),
            decision: GatewayDecision::Approved {
                authorization: "auth-1".into(),
            },
        }
    }

    fn decline(order_id: Uuid, amount: u64) -> PaymentCommand {
        PaymentCommand::HandlePlaced {
            placed: placed(order_id, amount),
            decision: GatewayDecision::Declined {
                reason: "amount above limit".into(),
            },
        }
    }

    fn fail(order_id: Uuid, cancel: CancelResult) -> PaymentCommand {
        PaymentCommand::HandleFailed { order_id, cancel }
    }

    fn approved(order_id: Uuid, amount: u64) -> PaymentEvent {
        PaymentEvent::Approved {
            order_id,
            amount,
            authorization: "auth-1".into(),
        }
    }

    fn declined(order_id: Uuid, amount: u64) -> PaymentEvent {
        PaymentEvent::Declined {
            order_id,
            amount,
            reason: "amount above limit".into(),
        }
    }

    fn cancel_failed(order_id: Uuid) -> PaymentEvent {
        PaymentEvent::CancelFailed {
            order_id,
            reason: "gateway timeout".into(),
        }
    }

    fn requested(order_id: Uuid, amount: u64) -> PaymentEvent {
        PaymentEvent::ApprovalRequested { order_id, amount }
    }

    fn request(order_id: Uuid, amount: u64) -> PaymentCommand {
        PaymentCommand::RequestApproval {
            placed: placed(order_id, amount),
        }
    }

    fn skipped(order_id: Uuid) -> PaymentEvent {
        PaymentEvent::CompensationSkipped {
            order_id,
            reason: NOTHING_TO_UNDO.into(),
        }
    }

    #[test]
    fn an_approved_charge_records_the_authorization() {
        // Given
        let scenario = given::<Payment>([]);
        assert!(needs_gateway_approval(scenario.state(), order(1)));
        // When
        let when = scenario.when(approve(order(1), 700));
        // Then
        let state = when.then([approved(order(1), 700)]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Approved);
        assert_eq!(payment.amount, 700);
        assert_eq!(payment.authorization.as_deref(), Some("auth-1"));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert!(needs_gateway_cancel(&state, order(1)));
    }

    #[test]
    fn a_declined_charge_rejects_the_order() {
        // Given
        let scenario = given::<Payment>([]);
        // When
        let when = scenario.when(decline(order(1), 2_000_000));
        // Then
        let state = when.then([declined(order(1), 2_000_000)]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Declined);
        assert_eq!(payment.reason.as_deref(), Some("amount above limit"));
        assert!(!needs_gateway_cancel(&state, order(1)));
    }

    #[test]
    fn an_approval_without_an_authorization_is_refused() {
        // Given
        let scenario = given::<Payment>([]);
        // When
        let when = scenario.when(PaymentCommand::HandlePlaced {
            placed: placed(order(1), 700),
            decision: GatewayDecision::Approved {
                authorization: String::new(),
            },
        });
        // Then
        when.then_rejected(PaymentRejection::EmptyAuthorization { order_id: order(1) });
    }

    #[test]
    fn a_failed_order_has_its_approval_cancelled() {
        // Given
        let scenario = given::<Payment>([approved(order(1), 700)]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::Cancelled));
        // Then
        let state = when.then([PaymentEvent::Cancelled { order_id: order(1) }]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
        assert!(!needs_gateway_cancel(&state, order(1)));
    }

    #[test]
    fn a_cancellation_that_keeps_failing_is_recorded_for_an_operator() {
        // Given
        let scenario = given::<Payment>([approved(order(1), 700)]);
        // When
        let when = scenario.when(fail(
            order(1),
            CancelResult::Failed {
                reason: "gateway timeout".into(),
            },
        ));
        // Then
        let state = when.then([cancel_failed(order(1))]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::CancelFailed);
        assert_eq!(payment.reason.as_deref(), Some("gateway timeout"));
        assert!(needs_gateway_cancel(&state, order(1)));
    }

    #[test]
    fn a_failed_cancellation_can_be_retried() {
        // Given
        let scenario = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::Cancelled));
        // Then
        let state = when.then([PaymentEvent::Cancelled { order_id: order(1) }]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Cancelled);
        assert_eq!(payment.reason, None);
    }

    #[test]
    fn a_retried_cancellation_may_fail_again() {
        // Given
        let scenario = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
        // When
        let when = scenario.when(fail(
            order(1),
            CancelResult::Failed {
                reason: "gateway down".into(),
            },
        ));
        // Then
        let state = when.then([PaymentEvent::CancelFailed {
            order_id: order(1),
            reason: "gateway down".into(),
        }]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::CancelFailed);
        assert_eq!(payment.reason.as_deref(), Some("gateway down"));
    }

    #[test]
    fn an_approval_cannot_be_compensated_without_asking_the_gateway() {
        // Given
        let scenario = given::<Payment>([approved(order(1), 700)]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        when.then_rejected(PaymentRejection::GatewayCancelRequired { order_id: order(1) });
    }

    #[test]
    fn a_failure_before_the_placement_leaves_a_tombstone() {
        // Given
        let scenario = given::<Payment>([]);
        assert!(!needs_gateway_cancel(scenario.state(), order(1)));
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        let state = when.then([PaymentEvent::Tombstoned { order_id: order(1) }]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Tombstoned));
        assert!(!needs_gateway_approval(&state, order(1)));
    }

    #[test]
    fn a_late_placement_after_a_tombstone_is_ignored() {
        // Given
        let scenario = given::<Payment>([PaymentEvent::Tombstoned { order_id: order(1) }]);
        // When
        let when = scenario.when(approve(order(1), 700));
        // Then
        let ignored = PaymentEvent::PlacementIgnored {
            order_id: order(1),
            reason: "order already failed (tombstone)".into(),
        };
        assert_eq!(outcome(&ignored), None);
        let state = when.then([ignored]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Tombstoned));
    }

    #[test]
    fn compensating_a_declined_order_is_skipped() {
        // Given
        let scenario = given::<Payment>([declined(order(1), 2_000_000)]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        let state = when.then([PaymentEvent::CompensationSkipped {
            order_id: order(1),
            reason: "rejected, nothing to undo".into(),
        }]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Declined);
        assert!(payment.compensation_skipped);
    }

    #[test]
    fn a_repeated_placement_is_a_no_op() {
        let histories = [
            vec![approved(order(1), 700)],
            vec![declined(order(1), 700)],
            vec![approved(order(1), 700), cancel_failed(order(1))],
            vec![requested(order(1), 700), approved(order(1), 700)],
            vec![requested(order(1), 700), declined(order(1), 700)],
        ];
        for history in histories {
            // Given
            let scenario = given::<Payment>(history);
            // When
            let when = scenario.when(approve(order(1), 700));
            // Then
            when.then_nothing();
        }
    }

    #[test]
    fn a_repeated_failure_is_a_no_op() {
        let histories = [
            (
                vec![
                    approved(order(1), 700),
                    PaymentEvent::Cancelled { order_id: order(1) },
                ],
                PaymentStatus::Cancelled,
            ),
            (
                vec![declined(order(1), 700), skipped(order(1))],
                PaymentStatus::Declined,
            ),
            (
                vec![PaymentEvent::Tombstoned { order_id: order(1) }],
                PaymentStatus::Tombstoned,
            ),
        ];
        for (history, settled) in histories {
            // Given
            let scenario = given::<Payment>(history);
            // When
            let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
            // Then
            let state = when.then_nothing();
            assert_eq!(state.status(order(1)), Some(settled));
        }
    }

    #[test]
    fn a_charge_is_recorded_as_requested_before_the_gateway_is_asked() {
        // Given
        let scenario = given::<Payment>([]);
        assert!(needs_approval_request(scenario.state(), order(1)));
        // When
        let when = scenario.when(request(order(1), 700));
        // Then
        let state = when.then([requested(order(1), 700)]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Requested);
        assert_eq!(payment.amount, 700);
        assert_eq!(payment.authorization, None);
        assert_eq!(outcome(&requested(order(1), 700)), None);
        assert!(!needs_approval_request(&state, order(1)));
        assert!(needs_gateway_approval(&state, order(1)));
        assert!(needs_gateway_cancel(&state, order(1)));
        assert_eq!(settled_outcome(&state, order(1)), None);
    }

    #[test]
    fn a_repeated_charge_request_records_nothing_new() {
        let histories = [
            vec![requested(order(1), 700)],
            vec![requested(order(1), 700), approved(order(1), 700)],
            vec![PaymentEvent::Tombstoned { order_id: order(1) }],
            vec![
                requested(order(1), 700),
                PaymentEvent::Cancelled { order_id: order(1) },
            ],
        ];
        for history in histories {
            // Given
            let scenario = given::<Payment>(history);
            // When
            let when = scenario.when(request(order(1), 700));
            // Then
            when.then_nothing();
        }
    }

    #[test]
    fn the_gateways_approval_of_a_requested_charge_is_recorded() {
        // Given
        let scenario = given::<Payment>([requested(order(1), 700)]);
        // When
        let when = scenario.when(approve(order(1), 700));
        // Then
        let state = when.then([approved(order(1), 700)]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Approved);
        assert_eq!(payment.authorization.as_deref(), Some("auth-1"));
        assert!(!needs_gateway_approval(&state, order(1)));
    }

    #[test]
    fn the_gateways_decline_of_a_requested_charge_is_recorded() {
        // Given
        let scenario = given::<Payment>([requested(order(1), 2_000_000)]);
        // When
        let when = scenario.when(decline(order(1), 2_000_000));
        // Then
        let state = when.then([declined(order(1), 2_000_000)]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Declined));
        assert!(!needs_gateway_cancel(&state, order(1)));
    }

    #[test]
    fn a_failed_order_with_a_requested_charge_is_cancelled_at_the_gateway() {
        // Given
        let scenario = given::<Payment>([requested(order(1), 700)]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::Cancelled));
        // Then
        let state = when.then([PaymentEvent::Cancelled { order_id: order(1) }]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert!(!needs_gateway_cancel(&state, order(1)));
        let settled = settled_outcome(&state, order(1)).expect("settled");
        assert_eq!(settled.subject(), "payment.cancelled");
    }

    #[test]
    fn a_requested_charge_cannot_be_compensated_without_asking_the_gateway() {
        // Given
        let scenario = given::<Payment>([requested(order(1), 700)]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        when.then_rejected(PaymentRejection::GatewayCancelRequired { order_id: order(1) });
    }

    #[test]
    fn a_failed_cancellation_of_a_requested_charge_is_recorded_and_retryable() {
        // Given
        let scenario = given::<Payment>([requested(order(1), 700)]);
        // When
        let when = scenario.when(fail(
            order(1),
            CancelResult::Failed {
                reason: "gateway timeout".into(),
            },
        ));
        // Then
        let state = when.then([cancel_failed(order(1))]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::CancelFailed));
        assert!(needs_gateway_cancel(&state, order(1)));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert_eq!(settled_outcome(&state, order(1)), None);
        let published = outcome(&cancel_failed(order(1))).expect("publishes");
        assert_eq!(published.subject(), "payment.cancel_failed");
    }

    #[test]
    fn a_late_placement_after_a_cancelled_request_is_ignored_without_asking_the_gateway() {
        // Given
        let scenario = given::<Payment>([
            requested(order(1), 700),
            PaymentEvent::Cancelled { order_id: order(1) },
        ]);
        assert!(!needs_gateway_approval(scenario.state(), order(1)));
        // When: even an approval the gateway gave before the cancel reached it
        let when = scenario.when(approve(order(1), 700));
        // Then
        let ignored = PaymentEvent::PlacementIgnored {
            order_id: order(1),
            reason: CANCELLED_PLACEMENT.into(),
        };
        assert_eq!(outcome(&ignored), None);
        let state = when.then([ignored]);
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
    }

    #[test]
    fn a_failed_or_cancelled_order_never_asks_the_gateway_to_charge() {
        let histories = [
            vec![PaymentEvent::Tombstoned { order_id: order(1) }],
            vec![
                requested(order(1), 700),
                PaymentEvent::Cancelled { order_id: order(1) },
            ],
            vec![
                approved(order(1), 700),
                PaymentEvent::Cancelled { order_id: order(1) },
            ],
            vec![requested(order(1), 700), cancel_failed(order(1))],
            vec![declined(order(1), 700), skipped(order(1))],
        ];
        for history in histories {
            // Given
            let scenario = given::<Payment>(history);
            // Then
            assert!(!needs_gateway_approval(scenario.state(), order(1)));
        }
    }

    #[test]
    fn a_settled_order_reports_its_recorded_compensation() {
        let cases = [
            (
                vec![
                    approved(order(1), 700),
                    PaymentEvent::Cancelled { order_id: order(1) },
                ],
                Some(("payment.cancelled", None)),
            ),
            (
                vec![
                    approved(order(1), 700),
                    cancel_failed(order(1)),
                    PaymentEvent::Cancelled { order_id: order(1) },
                ],
                Some(("payment.cancelled", None)),
            ),
            (
                vec![PaymentEvent::Tombstoned { order_id: order(1) }],
                Some(("payment.cancelled", Some(TOMBSTONE_REASON))),
            ),
            (
                vec![declined(order(1), 700), skipped(order(1))],
                Some(("payment.cancelled", Some(NOTHING_TO_UNDO))),
            ),
            (vec![approved(order(1), 700)], None),
            (vec![declined(order(1), 700)], None),
            (vec![approved(order(1), 700), cancel_failed(order(1))], None),
            (vec![requested(order(1), 700)], None),
            (vec![], None),
        ];
        for (history, expected) in cases {
            // Given
            let scenario = given::<Payment>(history.clone());
            // When
            let settled = settled_outcome(scenario.state(), order(1));
            // Then
            let got = settled.as_ref().map(|e| (e.subject(), e.reason.as_deref()));
            let expected = expected.map(|(s, r)| (s.to_owned(), r));
            assert_eq!(got, expected, "{history:?}");
            if let Some(event) = settled {
                assert_eq!(event.order_id, order(1));
                assert_eq!(event.participant, Participant::Payment);
            }
        }
    }

    #[test]
    fn every_event_maps_to_its_subject() {
        // Given
        let cases = [
            (approved(order(1), 700), "payment.approved", None),
            (
                declined(order(1), 700),
                "payment.declined",
                Some("amount above limit"),
            ),
            (
                PaymentEvent::Cancelled { order_id: order(1) },
                "payment.cancelled",
                None,
            ),
            (
                cancel_failed(order(1)),
                "payment.cancel_failed",
                Some("gateway timeout"),
            ),
            (
                PaymentEvent::Tombstoned { order_id: order(1) },
                "payment.cancelled",
                Some("nothing to undo: order.failed arrived before order.placed"),
            ),
            (
                skipped(order(1)),
                "payment.cancelled",
                Some("rejected, nothing to undo"),
            ),
        ];
        for (event, subject, reason) in cases {
            // When
            let published = outcome(&event).expect("publishes");
            // Then
            assert_eq!(published.subject(), subject, "{event:?}");
            assert_eq!(published.order_id, order(1));
            assert_eq!(published.participant, Participant::Payment);
            assert_eq!(published.reason.as_deref(), reason, "{event:?}");
        }
    }

    #[test]
    fn variants_keep_their_postcard_positions_names_and_streams() {
        // Given
        let events = [
            approved(order(1), 700),
            declined(order(1), 700),
            PaymentEvent::Cancelled { order_id: order(1) },
            cancel_failed(order(1)),
            PaymentEvent::Tombstoned { order_id: order(1) },
            skipped(order(1)),
            PaymentEvent::PlacementIgnored {
                order_id: order(1),
                reason: LATE_PLACEMENT.into(),
            },
            requested(order(1), 700),
        ];
        let names = [
            "Approved",
            "Declined",
            "Cancelled",
            "CancelFailed",
            "Tombstoned",
            "CompensationSkipped",
            "PlacementIgnored",
            "ApprovalRequested",
        ];
        for (position, event) in events.iter().enumerate() {
            // When
            let bytes = postcard::to_stdvec(event).expect("encodes");
            let back: PaymentEvent = postcard::from_bytes(&bytes).expect("decodes");
            // Then
            assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
            assert_eq!(&back, event);
            assert_eq!(Payment::event_type(event), names[position]);
            assert_eq!(Payment::stream_of(event), format!("order-{}", order(1)));
        }
    }

    #[test]
    fn statuses_and_payments_render_with_their_contract_names() {
        // Given
        let statuses = [
            PaymentStatus::Approved,
            PaymentStatus::Declined,
            PaymentStatus::Cancelled,
            PaymentStatus::CancelFailed,
            PaymentStatus::Tombstoned,
            PaymentStatus::Requested,
        ];
        let state = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
        // When
        let names: Vec<String> = statuses
            .iter()
            .map(|status| serde_json::to_string(status).expect("serialises"))
            .collect();
        let payment = serde_json::to_value(state.state().payment(order(1))).expect("serialises");
        let event = serde_json::to_value(approved(order(1), 700)).expect("serialises");
        // Then
        assert_eq!(
            names,
            [
                "\"APPROVED\"",
                "\"DECLINED\"",
                "\"CANCELLED\"",
                "\"CANCEL_FAILED\"",
                "\"TOMBSTONED\"",
                "\"REQUESTED\""
            ]
        );
        for status in statuses {
            assert_eq!(
                format!("\"{status}\""),
                serde_json::to_string(&status).expect("serialises")
            );
        }
        assert_eq!(
            payment,
            serde_json::json!({
                "orderId": order(1), "amount": 700, "status": "CANCEL_FAILED",
                "authorization": "auth-1", "reason": "gateway timeout",
                "compensationSkipped": false
            })
        );
        assert_eq!(
            event,
            serde_json::json!({"approved": {
                "orderId": order(1), "amount": 700, "authorization": "auth-1"
            }})
        );
    }
}
