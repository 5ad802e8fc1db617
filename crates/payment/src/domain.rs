//! Payment's pure core: recording the gateway's approvals and declines, and cancelling approvals.
//!
//! No I/O, clock or randomness: the I/O shell asks the payment gateway and hands its answer in
//! with the command ([`GatewayDecision`], [`CancelResult`]).

use contract::ledger::{self, LedgerEvent, Step};
pub use contract::ledger::{
    IgnoredPlacement, SkippedCompensation, Tombstone, LATE_PLACEMENT, NOTHING_TO_UNDO,
    TOMBSTONE_REASON,
};
use contract::{OrderPlaced, Participant, ParticipantEvent};
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

/// The folded state: the payments still open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    /// Open payments by order id (requested, approved, declined, cancel failed: an
    /// `order.failed` may still need them), the most recent [`ledger::OPEN_WINDOW`]. Settled
    /// ones (cancelled, skipped, tombstones) and older ones are in the log and come back from it
    /// for the command or read that needs them ([`eventlog::live::Live::read_key`]).
    pub payments: ledger::Orders<PaymentEntry>,
}

impl PaymentState {
    /// An order's payment; `None` for an order never seen, or not in memory.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
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
    /// The order failed before it was placed here.
    Tombstoned(Tombstone),
    /// A declined order failed: nothing was charged, so nothing is undone.
    CompensationSkipped(SkippedCompensation),
    /// A placement after the order's tombstone, or after its requested charge was cancelled.
    PlacementIgnored(IgnoredPlacement),
    /// The charge is about to be requested at the gateway: recorded before the call, so a
    /// failing order is cancelled at the PG even if payment never learns the PG's answer.
    ApprovalRequested {
        /// The order.
        order_id: Uuid,
        /// The amount requested, in minor units.
        amount: u64,
    },
}

contract::ledger_facts!(PaymentEvent);

impl LedgerEvent for PaymentEvent {
    fn step(&self) -> Step<'_> {
        match self {
            PaymentEvent::ApprovalRequested { order_id, .. } => Step::Recorded(*order_id),
            PaymentEvent::Approved { order_id, .. } => Step::Succeeded(*order_id),
            PaymentEvent::Declined {
                order_id, reason, ..
            } => Step::Rejected(*order_id, reason),
            PaymentEvent::Cancelled { order_id } => Step::Undone(*order_id),
            PaymentEvent::CancelFailed { order_id, reason } => Step::UndoFailed(*order_id, reason),
            PaymentEvent::Tombstoned(fact) => fact.into(),
            PaymentEvent::CompensationSkipped(fact) => fact.into(),
            PaymentEvent::PlacementIgnored(fact) => fact.into(),
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRejection {
    /// An approval without an authorization code could never be cancelled.
    #[error("approval of order {order_id} has an empty authorization")]
    EmptyAuthorization {
        /// The order.
        order_id: Uuid,
    },
    /// The payment is approved (or its cancellation failed) but the gateway was not asked to cancel.
    #[error("payment of order {order_id} must be cancelled at the gateway first")]
    GatewayCancelRequired {
        /// The order.
        order_id: Uuid,
    },
}

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
        PaymentStatus::Tombstoned => ledger::tombstoned(order_id),
        PaymentStatus::Declined if payment.compensation_skipped => {
            ledger::compensation_skipped(order_id)
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
    ledger::outcome(Participant::Payment, event)
}

fn handle_placed(
    state: &PaymentState,
    placed: &OrderPlaced,
    decision: GatewayDecision,
) -> Result<Vec<PaymentEvent>, PaymentRejection> {
    let order_id = placed.order_id;
    match state.status(order_id) {
        Some(PaymentStatus::Tombstoned) => {
            return Ok(vec![ledger::placement_ignored(order_id, LATE_PLACEMENT)])
        }
        // The order failed while its charge was requested and was cancelled at the gateway:
        // whatever the gateway answered to the charge, the placement is over.
        Some(PaymentStatus::Cancelled) => {
            return Ok(vec![ledger::placement_ignored(
                order_id,
                CANCELLED_PLACEMENT,
            )])
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
        return Ok(vec![ledger::tombstoned(order_id)]);
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
        PaymentStatus::Declined => Ok(vec![ledger::compensation_skipped(order_id)]),
        PaymentStatus::Cancelled | PaymentStatus::Tombstoned => Ok(vec![]),
    }
}

/// A payment's entry moved on by one of its events, as the whole history would leave it: what
/// [`Domain::hydrate`] folds the order's own events with.
fn replay_entry(
    entry: Option<PaymentEntry>,
    order_id: Uuid,
    event: &PaymentEvent,
) -> Option<PaymentEntry> {
    if event.step().order_id() != Some(order_id) {
        return entry;
    }
    let fresh = |amount, status| PaymentEntry {
        order_id,
        amount,
        status,
        authorization: None,
        reason: None,
        compensation_skipped: false,
    };
    let mut entry = match event {
        PaymentEvent::ApprovalRequested { amount, .. } => {
            return Some(fresh(*amount, PaymentStatus::Requested))
        }
        PaymentEvent::Approved {
            amount,
            authorization,
            ..
        } => {
            return Some(PaymentEntry {
                authorization: Some(authorization.clone()),
                ..fresh(*amount, PaymentStatus::Approved)
            })
        }
        PaymentEvent::Declined { amount, reason, .. } => {
            return Some(PaymentEntry {
                reason: Some(reason.clone()),
                ..fresh(*amount, PaymentStatus::Declined)
            })
        }
        PaymentEvent::Tombstoned { .. } => return Some(fresh(0, PaymentStatus::Tombstoned)),
        PaymentEvent::PlacementIgnored { .. } => return entry,
        PaymentEvent::Cancelled { .. }
        | PaymentEvent::CancelFailed { .. }
        | PaymentEvent::CompensationSkipped { .. } => entry?,
    };
    match event {
        PaymentEvent::Cancelled { .. } => {
            entry.status = PaymentStatus::Cancelled;
            entry.reason = None;
        }
        PaymentEvent::CancelFailed { reason, .. } => {
            entry.status = PaymentStatus::CancelFailed;
            entry.reason = Some(reason.clone());
        }
        _ => entry.compensation_skipped = true,
    }
    Some(entry)
}

fn record_new_payment(state: &mut PaymentState, entry: PaymentEntry) {
    let order_id = entry.order_id;
    let previous = state.payments.open(order_id, entry, ledger::OPEN_WINDOW);
    assert!(
        previous.is_none(),
        "payment of order {order_id} decided twice: decide must turn a repeat into a no-op"
    );
}

/// Records the gateway's answer to a charge: for a new order, or one whose charge was requested
/// (in memory, or gone from it: the answer then opens the payment afresh either way, so the
/// fold and a decision on an entry brought back from the log agree).
fn record_answer(state: &mut PaymentState, entry: PaymentEntry) {
    let order_id = entry.order_id;
    let previous = state.payments.open(order_id, entry, ledger::OPEN_WINDOW);
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

/// The payment a cancellation is recorded for, if still in memory (one that left has nothing
/// to check or change: the log holds it).
fn cancellable_mut(state: &mut PaymentState, order_id: Uuid) -> Option<&mut PaymentEntry> {
    let entry = state.payments.get_mut(&order_id)?;
    assert!(
        matches!(
            entry.status,
            PaymentStatus::Approved | PaymentStatus::CancelFailed | PaymentStatus::Requested
        ),
        "cancellation of order {order_id} recorded while {}",
        entry.status
    );
    Some(entry)
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
                // Settled: the payment leaves memory (the log answers for it from now on).
                if cancellable_mut(state, *order_id).is_some() {
                    state.payments.settle(order_id);
                }
            }
            PaymentEvent::CancelFailed { order_id, reason } => {
                if let Some(entry) = cancellable_mut(state, *order_id) {
                    entry.status = PaymentStatus::CancelFailed;
                    entry.reason = Some(reason.clone());
                }
            }
            PaymentEvent::Tombstoned(Tombstone { order_id }) => {
                // Settled at once: a late `order.placed` brings it back from the log.
                assert!(
                    !state.payments.contains_key(order_id),
                    "payment of order {order_id} tombstoned after a decision about it"
                );
            }
            PaymentEvent::CompensationSkipped(SkippedCompensation { order_id, .. }) => {
                if let Some(entry) = state.payments.get(order_id) {
                    assert!(
                        entry.status == PaymentStatus::Declined && !entry.compensation_skipped,
                        "compensation of order {order_id} skipped while {} (skipped before: {})",
                        entry.status,
                        entry.compensation_skipped
                    );
                    state.payments.settle(order_id);
                }
            }
            PaymentEvent::PlacementIgnored(IgnoredPlacement { order_id, .. }) => {
                if let Some(status) = state.status(*order_id) {
                    assert!(
                        matches!(status, PaymentStatus::Tombstoned | PaymentStatus::Cancelled),
                        "placement of order {order_id} ignored while {status:?}"
                    );
                }
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

    fn cold_key(command: &PaymentCommand) -> Option<String> {
        let order_id = match command {
            PaymentCommand::RequestApproval { placed }
            | PaymentCommand::HandlePlaced { placed, .. } => placed.order_id,
            PaymentCommand::HandleFailed { order_id, .. } => *order_id,
        };
        ledger::cold_key(order_id)
    }

    // 2: open payments only, in a window (`ledger::Orders`), instead of every order ever seen.
    const SNAPSHOT_VERSION: u32 = 2;

    contract::ledger_hooks!(orders: payments, replay: replay_entry);
}

#[cfg(test)]
mod tests;
