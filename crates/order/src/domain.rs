//! The order saga's pure core: which events a command produces and how they fold into state.
//!
//! No I/O, clock or randomness: the time travels inside commands as `now_ms`.

use std::collections::{BTreeMap, HashMap};

use contract::{OrderPlaced, OutcomeKind, Participant, ParticipantEvent};
use eventlog::domain::Domain;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order domain: tracks every order's saga from placement to its terminal status.
pub struct Order;

/// Where an order's saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Waiting for the required participants to succeed or reject.
    Pending,
    /// Every required participant succeeded.
    Completed,
    /// The order failed; waiting for the participants to undo their work.
    Compensating,
    /// The order failed and every participant undid its work.
    Failed,
    /// A compensation failed for good; an operator has to retry it.
    NeedsAttention,
}

impl OrderStatus {
    /// Every status, in saga order.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Completed,
        OrderStatus::Compensating,
        OrderStatus::Failed,
        OrderStatus::NeedsAttention,
    ];

    /// The contract name, e.g. `NEEDS_ATTENTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Compensating => "COMPENSATING",
            OrderStatus::Failed => "FAILED",
            OrderStatus::NeedsAttention => "NEEDS_ATTENTION",
        }
    }

    /// Parses a contract name, ignoring ASCII case (query strings are typed by hand).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the saga is over (`COMPLETED` or `FAILED`).
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Failed)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The folded state: every order's saga plus lookup indexes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orders {
    /// Sagas by order id.
    pub orders: HashMap<Uuid, OrderSaga>,
    /// Order id by trace id.
    pub by_trace: HashMap<String, Uuid>,
    /// Order id by the client's `Idempotency-Key`.
    pub by_idempotency_key: HashMap<String, Uuid>,
    /// Orders the supervisor still watches: not FAILED, and not COMPLETED-and-delivered.
    /// Kept so its periodic scan costs the open orders, not the whole history.
    pub open: std::collections::BTreeSet<Uuid>,
}

/// One order's saga as projected from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSaga {
    /// The order as placed.
    pub order: OrderPlaced,
    /// The saga's trace id.
    pub trace_id: String,
    /// Where the saga stands.
    pub status: OrderStatus,
    /// The participants this order needs.
    pub required: Vec<Participant>,
    /// The latest recorded outcome per participant.
    pub outcomes: BTreeMap<Participant, ParticipantProgress>,
    /// Why the order failed (first rejection or deadline).
    pub failure_reason: Option<String>,
    /// Why an operator is needed, while `NEEDS_ATTENTION`.
    pub attention_reason: Option<String>,
    /// How many times `order.failed` was re-published (redrives and operator retries).
    pub redrives: u32,
    /// Whether the data platform received the completed order.
    pub data_platform_delivered: bool,
    /// When the saga last changed (ms since the Unix epoch).
    pub updated_at_ms: u64,
    /// Re-drives since the order failed or an operator last retried (the supervisor's budget).
    pub round_redrives: u32,
    /// Whether this round's re-drives ran out (`RedrivesExhausted`): the supervisor stops.
    pub redrives_exhausted: bool,
    /// How many times re-drives ran out over the order's life (numbers its alerts).
    pub escalations: u32,
    /// The data platform delivery parked in the DLQ, while it is.
    pub delivery_parked: Option<ParkedDelivery>,
    /// How many times the delivery was parked (numbers its alerts).
    pub delivery_parks: u32,
}

/// A data platform delivery waiting in the DLQ for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedDelivery {
    /// The last failure.
    pub reason: String,
    /// The message that went to the DLQ.
    pub msg_id: String,
}

/// The latest outcome a participant reported for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParticipantProgress {
    /// It did its part.
    Succeeded,
    /// It refused.
    Rejected,
    /// It undid its part (or had nothing to undo).
    Compensated,
    /// Its undo failed for good.
    CompensationFailed,
}

impl From<OutcomeKind> for ParticipantProgress {
    fn from(kind: OutcomeKind) -> Self {
        match kind {
            OutcomeKind::Succeeded => ParticipantProgress::Succeeded,
            OutcomeKind::Rejected => ParticipantProgress::Rejected,
            OutcomeKind::Compensated => ParticipantProgress::Compensated,
            OutcomeKind::CompensationFailed => ParticipantProgress::CompensationFailed,
        }
    }
}

impl ParticipantProgress {
    /// Whether this answers the forward phase (`order.placed`).
    fn is_forward(self) -> bool {
        matches!(
            self,
            ParticipantProgress::Succeeded | ParticipantProgress::Rejected
        )
    }
}

impl OrderSaga {
    /// Required participants whose answer to the current phase is still missing.
    ///
    /// While `PENDING`: those without a success or rejection. While `COMPENSATING` or
    /// `NEEDS_ATTENTION`: those without a compensation or compensation failure. Terminal: none.
    pub fn waiting_for(&self) -> Vec<Participant> {
        let answered: fn(Option<&ParticipantProgress>) -> bool = match self.status {
            OrderStatus::Pending => |p| p.is_some_and(|p| p.is_forward()),
            OrderStatus::Compensating | OrderStatus::NeedsAttention => {
                |p| p.is_some_and(|p| !p.is_forward())
            }
            OrderStatus::Completed | OrderStatus::Failed => return Vec::new(),
        };
        self.required
            .iter()
            .copied()
            .filter(|p| !answered(self.outcomes.get(p)))
            .collect()
    }

    fn progress(&self, participant: Participant) -> Option<ParticipantProgress> {
        self.outcomes.get(&participant).copied()
    }
}

/// An intention to change an order's saga.
#[derive(Debug)]
pub enum OrderCommand {
    /// Accept a new order.
    Place {
        /// The order, with its id, placement time and deadline already set.
        order: OrderPlaced,
        /// The saga's trace id.
        trace_id: String,
        /// The client's `Idempotency-Key`, if it sent one.
        idempotency_key: Option<String>,
    },
    /// Record a participant's event.
    RecordOutcome {
        /// The participant's event.
        event: ParticipantEvent,
        /// When it was received.
        now_ms: u64,
    },
    /// Check the saga deadline.
    Expire {
        /// The order.
        order_id: Uuid,
        /// The current time.
        now_ms: u64,
    },
    /// Re-publish `order.failed` for a compensating order.
    Redrive {
        /// The order.
        order_id: Uuid,
        /// The current time.
        now_ms: u64,
    },
    /// Operator: retry the failed compensations of a `NEEDS_ATTENTION` order.
    RetryCompensation {
        /// The order.
        order_id: Uuid,
        /// The current time.
        now_ms: u64,
    },
    /// The data platform received the completed order.
    MarkDelivered {
        /// The order.
        order_id: Uuid,
        /// The current time.
        now_ms: u64,
    },
    /// Supervisor: stop re-driving a compensating order nobody answers; an operator takes over.
    Escalate {
        /// The order.
        order_id: Uuid,
        /// Re-drives made this round, for the reason.
        redrives: u32,
        /// The current time.
        now_ms: u64,
    },
    /// Forwarder: the data platform kept failing; the delivery waits in the DLQ for an operator.
    ParkDelivery {
        /// The order.
        order_id: Uuid,
        /// The last failure.
        reason: String,
        /// The message going to the DLQ.
        msg_id: String,
        /// The current time.
        now_ms: u64,
    },
    /// Operator: the parked delivery was re-driven from the DLQ.
    ResumeDelivery {
        /// The order.
        order_id: Uuid,
        /// The current time.
        now_ms: u64,
    },
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRejection {
    /// An order with this id exists already.
    DuplicateOrder(Uuid),
    /// No order with this id.
    UnknownOrder(Uuid),
    /// The idempotency key already placed another order.
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The order it placed.
        order_id: Uuid,
    },
    /// The order is not compensating (or has nobody left to wait for).
    NotCompensating(Uuid),
    /// The order does not need an operator.
    NotNeedingAttention(Uuid),
    /// The order is not completed.
    NotCompleted(Uuid),
    /// The order's data platform delivery is not parked.
    NotParked(Uuid),
}

impl std::fmt::Display for OrderRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderRejection::DuplicateOrder(id) => write!(f, "order {id} already exists"),
            OrderRejection::UnknownOrder(id) => write!(f, "order {id} not found"),
            OrderRejection::IdempotencyKeyReused { key, order_id } => {
                write!(f, "idempotency key {key:?} already placed order {order_id}")
            }
            OrderRejection::NotCompensating(id) => {
                write!(f, "order {id} is not waiting for compensations")
            }
            OrderRejection::NotNeedingAttention(id) => {
                write!(f, "order {id} does not need attention")
            }
            OrderRejection::NotCompleted(id) => write!(f, "order {id} is not completed"),
            OrderRejection::NotParked(id) => {
                write!(f, "order {id} has no data platform delivery parked")
            }
        }
    }
}

impl std::error::Error for OrderRejection {}

/// A fact about an order's saga.
///
/// Postcard encodes variants by position: the order below is final, only append new variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum OrderEvent {
    /// The order was accepted; `order.placed` goes out.
    Placed {
        /// The order.
        order: OrderPlaced,
        /// The saga's trace id.
        trace_id: String,
        /// The client's `Idempotency-Key`, if any.
        idempotency_key: Option<String>,
    },
    /// A participant reported an outcome.
    OutcomeRecorded {
        /// The order.
        order_id: Uuid,
        /// Who reported.
        participant: Participant,
        /// What it reported.
        kind: OutcomeKind,
        /// Why, for rejections and failed compensations.
        reason: Option<String>,
        /// When it was recorded.
        at_ms: u64,
    },
    /// Every required participant succeeded; `order.completed` goes out.
    Completed {
        /// The order.
        order_id: Uuid,
        /// When.
        at_ms: u64,
    },
    /// The order failed; `order.failed` goes out and compensation starts.
    Failed {
        /// The order.
        order_id: Uuid,
        /// The first rejection, or the deadline.
        reason: String,
        /// When.
        at_ms: u64,
    },
    /// Every required participant compensated: the order is `FAILED`.
    Compensated {
        /// The order.
        order_id: Uuid,
        /// When.
        at_ms: u64,
    },
    /// A compensation failed for good: the order needs an operator.
    AttentionNeeded {
        /// The order.
        order_id: Uuid,
        /// Whose compensation failed.
        participant: Participant,
        /// Why.
        reason: String,
        /// When.
        at_ms: u64,
    },
    /// `order.failed` was re-published for participants that have not compensated.
    FailureRedriven {
        /// The order.
        order_id: Uuid,
        /// The redrive count after this one.
        attempt: u32,
        /// When.
        at_ms: u64,
    },
    /// An operator retried the failed compensations; `order.failed` goes out again.
    CompensationRetried {
        /// The order.
        order_id: Uuid,
        /// The redrive count after this one.
        attempt: u32,
        /// When.
        at_ms: u64,
    },
    /// The data platform received the completed order.
    DataPlatformDelivered {
        /// The order.
        order_id: Uuid,
        /// When.
        at_ms: u64,
    },
    /// A redelivered or stale participant event, kept for the timeline; changes nothing.
    DuplicateIgnored {
        /// The order.
        order_id: Uuid,
        /// Who reported.
        participant: Participant,
        /// What it reported.
        kind: OutcomeKind,
        /// When it arrived.
        at_ms: u64,
    },
    /// Re-drives ran out with compensations still missing: the order needs an operator, and
    /// `ops.alert.saga_stuck` goes out with this event.
    RedrivesExhausted {
        /// The order.
        order_id: Uuid,
        /// Participants that never answered `order.failed`.
        waiting_for: Vec<Participant>,
        /// Why an operator is needed.
        reason: String,
        /// When.
        at_ms: u64,
    },
    /// The data platform kept failing: the delivery is parked in the DLQ (re-sends pause), and
    /// `ops.alert.dataplatform_failed` goes out with this event.
    DeliveryParked {
        /// The order.
        order_id: Uuid,
        /// The last failure.
        reason: String,
        /// The message that went to the DLQ.
        msg_id: String,
        /// When.
        at_ms: u64,
    },
    /// An operator re-drove the parked delivery: re-sends resume until the data platform has it.
    DeliveryResumed {
        /// The order.
        order_id: Uuid,
        /// When.
        at_ms: u64,
    },
}

impl OrderEvent {
    /// The order the event belongs to.
    pub fn order_id(&self) -> Uuid {
        match self {
            OrderEvent::Placed { order, .. } => order.order_id,
            OrderEvent::OutcomeRecorded { order_id, .. }
            | OrderEvent::Completed { order_id, .. }
            | OrderEvent::Failed { order_id, .. }
            | OrderEvent::Compensated { order_id, .. }
            | OrderEvent::AttentionNeeded { order_id, .. }
            | OrderEvent::FailureRedriven { order_id, .. }
            | OrderEvent::CompensationRetried { order_id, .. }
            | OrderEvent::DataPlatformDelivered { order_id, .. }
            | OrderEvent::DuplicateIgnored { order_id, .. }
            | OrderEvent::RedrivesExhausted { order_id, .. }
            | OrderEvent::DeliveryParked { order_id, .. }
            | OrderEvent::DeliveryResumed { order_id, .. } => *order_id,
        }
    }
}

/// `payment declined: amount above limit`: who said what, and why.
fn describe(participant: Participant, kind: OutcomeKind, reason: Option<&str>) -> String {
    format!(
        "{participant} {}: {}",
        participant.event_name(kind),
        reason.unwrap_or_default()
    )
}

/// Whether an incoming outcome is already reflected by the participant's progress.
///
/// A participant answers `order.placed` once, so any second forward answer is a redelivery (the
/// first one wins). A compensation answer after a success is news; a failure after a successful
/// compensation is stale, while a success after a failure is the participant's own retry working.
fn is_stale(current: Option<ParticipantProgress>, kind: OutcomeKind) -> bool {
    use OutcomeKind as K;
    use ParticipantProgress as P;
    match (current, kind) {
        (None, _) => false,
        (Some(_), K::Succeeded | K::Rejected) => true,
        (Some(P::Compensated), K::Compensated | K::CompensationFailed) => true,
        (Some(P::CompensationFailed), K::CompensationFailed) => true,
        (Some(P::Succeeded | P::Rejected | P::CompensationFailed), K::Compensated) => false,
        (Some(P::Succeeded | P::Rejected), K::CompensationFailed) => false,
    }
}

fn saga(state: &Orders, order_id: Uuid) -> Result<&OrderSaga, OrderRejection> {
    state
        .orders
        .get(&order_id)
        .ok_or(OrderRejection::UnknownOrder(order_id))
}

fn record_outcome(saga: &OrderSaga, event: ParticipantEvent, now_ms: u64) -> Vec<OrderEvent> {
    let ParticipantEvent {
        order_id,
        participant,
        kind,
        reason,
    } = event;
    if !saga.required.contains(&participant) || is_stale(saga.progress(participant), kind) {
        return vec![OrderEvent::DuplicateIgnored {
            order_id,
            participant,
            kind,
            at_ms: now_ms,
        }];
    }

    // Status rules look at the outcomes as they will be once this one is recorded.
    let mut after = saga.outcomes.clone();
    after.insert(participant, kind.into());
    let all_are = |wanted: ParticipantProgress| {
        saga.required
            .iter()
            .all(|p| after.get(p).copied() == Some(wanted))
    };

    let description = describe(participant, kind, reason.as_deref());
    let mut events = vec![OrderEvent::OutcomeRecorded {
        order_id,
        participant,
        kind,
        reason,
        at_ms: now_ms,
    }];
    let follow_up = match (saga.status, kind) {
        (OrderStatus::Pending, OutcomeKind::Succeeded)
            if all_are(ParticipantProgress::Succeeded) =>
        {
            Some(OrderEvent::Completed {
                order_id,
                at_ms: now_ms,
            })
        }
        (OrderStatus::Pending, OutcomeKind::Rejected) => Some(OrderEvent::Failed {
            order_id,
            reason: description,
            at_ms: now_ms,
        }),
        (
            OrderStatus::Compensating | OrderStatus::NeedsAttention,
            OutcomeKind::CompensationFailed,
        ) => Some(OrderEvent::AttentionNeeded {
            order_id,
            participant,
            reason: description,
            at_ms: now_ms,
        }),
        // A single failed compensation keeps the order out of FAILED until it is fixed.
        (OrderStatus::Compensating | OrderStatus::NeedsAttention, OutcomeKind::Compensated)
            if all_are(ParticipantProgress::Compensated) =>
        {
            Some(OrderEvent::Compensated {
                order_id,
                at_ms: now_ms,
            })
        }
        // Late forward answers after a failure change nothing: order.failed makes the participant
        // undo whatever it did. Compensations while PENDING or COMPLETED cannot follow an
        // order.failed we published, so they are kept for the record only.
        _ => None,
    };
    events.extend(follow_up);
    events
}

impl Domain for Order {
    type State = Orders;
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Rejection = OrderRejection;

    fn decide(state: &Orders, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderRejection> {
        match command {
            OrderCommand::Place {
                order,
                trace_id,
                idempotency_key,
            } => {
                if state.orders.contains_key(&order.order_id) {
                    return Err(OrderRejection::DuplicateOrder(order.order_id));
                }
                if let Some(key) = &idempotency_key {
                    if let Some(existing) = state.by_idempotency_key.get(key) {
                        return Err(OrderRejection::IdempotencyKeyReused {
                            key: key.clone(),
                            order_id: *existing,
                        });
                    }
                }
                Ok(vec![OrderEvent::Placed {
                    order,
                    trace_id,
                    idempotency_key,
                }])
            }
            OrderCommand::RecordOutcome { event, now_ms } => {
                let saga = saga(state, event.order_id)?;
                Ok(record_outcome(saga, event, now_ms))
            }
            OrderCommand::Expire { order_id, now_ms } => {
                let saga = saga(state, order_id)?;
                if saga.status != OrderStatus::Pending || now_ms < saga.order.deadline_ms {
                    return Ok(vec![]);
                }
                let waiting: Vec<&str> = saga.waiting_for().into_iter().map(|p| p.name()).collect();
                Ok(vec![OrderEvent::Failed {
                    order_id,
                    reason: format!("deadline passed, waiting for {}", waiting.join(", ")),
                    at_ms: now_ms,
                }])
            }
            OrderCommand::Redrive { order_id, now_ms } => {
                let saga = saga(state, order_id)?;
                let compensating = matches!(
                    saga.status,
                    OrderStatus::Compensating | OrderStatus::NeedsAttention
                );
                if !compensating || saga.waiting_for().is_empty() {
                    return Err(OrderRejection::NotCompensating(order_id));
                }
                Ok(vec![OrderEvent::FailureRedriven {
                    order_id,
                    attempt: saga.redrives + 1,
                    at_ms: now_ms,
                }])
            }
            OrderCommand::RetryCompensation { order_id, now_ms } => {
                let saga = saga(state, order_id)?;
                if saga.status != OrderStatus::NeedsAttention {
                    return Err(OrderRejection::NotNeedingAttention(order_id));
                }
                Ok(vec![OrderEvent::CompensationRetried {
                    order_id,
                    attempt: saga.redrives + 1,
                    at_ms: now_ms,
                }])
            }
            OrderCommand::MarkDelivered { order_id, now_ms } => {
                let saga = saga(state, order_id)?;
                if saga.status != OrderStatus::Completed {
                    return Err(OrderRejection::NotCompleted(order_id));
                }
                if saga.data_platform_delivered {
                    return Ok(vec![]);
                }
                Ok(vec![OrderEvent::DataPlatformDelivered {
                    order_id,
                    at_ms: now_ms,
                }])
            }
            OrderCommand::Escalate {
                order_id,
                redrives,
                now_ms,
            } => {
                let saga = saga(state, order_id)?;
                let waiting_for = saga.waiting_for();
                let compensating = matches!(
                    saga.status,
                    OrderStatus::Compensating | OrderStatus::NeedsAttention
                );
                if !compensating || waiting_for.is_empty() {
                    return Err(OrderRejection::NotCompensating(order_id));
                }
                if saga.redrives_exhausted {
                    return Ok(vec![]);
                }
                let names: Vec<&str> = waiting_for.iter().map(|p| p.name()).collect();
                Ok(vec![OrderEvent::RedrivesExhausted {
                    order_id,
                    reason: format!(
                        "no compensation from {} after {redrives} re-drives of order.failed",
                        names.join(", ")
                    ),
                    waiting_for,
                    at_ms: now_ms,
                }])
            }
            OrderCommand::ParkDelivery {
                order_id,
                reason,
                msg_id,
                now_ms,
            } => {
                let saga = saga(state, order_id)?;
                if saga.status != OrderStatus::Completed {
                    return Err(OrderRejection::NotCompleted(order_id));
                }
                if saga.data_platform_delivered || saga.delivery_parked.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![OrderEvent::DeliveryParked {
                    order_id,
                    reason,
                    msg_id,
                    at_ms: now_ms,
                }])
            }
            OrderCommand::ResumeDelivery { order_id, now_ms } => {
                let saga = saga(state, order_id)?;
                if saga.delivery_parked.is_none() {
                    return Err(OrderRejection::NotParked(order_id));
                }
                Ok(vec![OrderEvent::DeliveryResumed {
                    order_id,
                    at_ms: now_ms,
                }])
            }
        }
    }

    fn evolve(state: &mut Orders, event: &OrderEvent) {
        if let OrderEvent::Placed {
            order,
            trace_id,
            idempotency_key,
        } = event
        {
            let saga = OrderSaga {
                order: order.clone(),
                trace_id: trace_id.clone(),
                status: OrderStatus::Pending,
                required: order.required_participants(),
                outcomes: BTreeMap::new(),
                failure_reason: None,
                attention_reason: None,
                redrives: 0,
                data_platform_delivered: false,
                updated_at_ms: order.placed_at_ms,
                round_redrives: 0,
                redrives_exhausted: false,
                escalations: 0,
                delivery_parked: None,
                delivery_parks: 0,
            };
            let previous = state.orders.insert(order.order_id, saga);
            assert!(
                previous.is_none(),
                "order {} placed twice in the log",
                order.order_id
            );
            state.by_trace.insert(trace_id.clone(), order.order_id);
            state.open.insert(order.order_id);
            if let Some(key) = idempotency_key {
                state.by_idempotency_key.insert(key.clone(), order.order_id);
            }
            return;
        }

        let order_id = event.order_id();
        let saga = state
            .orders
            .get_mut(&order_id)
            .unwrap_or_else(|| panic!("event for order {order_id} before it was placed"));
        match event {
            OrderEvent::Placed { .. } => unreachable!("handled above"),
            OrderEvent::OutcomeRecorded {
                participant,
                kind,
                at_ms,
                ..
            } => {
                saga.outcomes.insert(*participant, (*kind).into());
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::Completed { at_ms, .. } => {
                saga.status = OrderStatus::Completed;
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::Failed { reason, at_ms, .. } => {
                saga.status = OrderStatus::Compensating;
                saga.failure_reason = Some(reason.clone());
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::Compensated { at_ms, .. } => {
                saga.status = OrderStatus::Failed;
                saga.attention_reason = None;
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::AttentionNeeded { reason, at_ms, .. } => {
                saga.status = OrderStatus::NeedsAttention;
                saga.attention_reason = Some(reason.clone());
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::FailureRedriven { attempt, at_ms, .. } => {
                saga.redrives = *attempt;
                saga.round_redrives += 1;
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::CompensationRetried { attempt, at_ms, .. } => {
                saga.status = OrderStatus::Compensating;
                saga.attention_reason = None;
                saga.redrives = *attempt;
                // A fresh round: the supervisor re-drives again before escalating again.
                saga.round_redrives = 0;
                saga.redrives_exhausted = false;
                // Back to "not compensated yet", so waiting_for and redrives cover them again.
                for progress in saga.outcomes.values_mut() {
                    if *progress == ParticipantProgress::CompensationFailed {
                        *progress = ParticipantProgress::Succeeded;
                    }
                }
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::DataPlatformDelivered { at_ms, .. } => {
                saga.data_platform_delivered = true;
                saga.delivery_parked = None;
                saga.updated_at_ms = *at_ms;
            }
            // A no-op on purpose: a redelivery must not look like activity.
            OrderEvent::DuplicateIgnored { .. } => {}
            OrderEvent::RedrivesExhausted { reason, at_ms, .. } => {
                saga.status = OrderStatus::NeedsAttention;
                // Keep a failed compensation's reason: both need the operator.
                saga.attention_reason = Some(match saga.attention_reason.take() {
                    Some(earlier) => format!("{earlier}; {reason}"),
                    None => reason.clone(),
                });
                saga.redrives_exhausted = true;
                saga.escalations += 1;
                saga.updated_at_ms = *at_ms;
            }
            OrderEvent::DeliveryParked { reason, msg_id, .. } => {
                // Not activity: the supervisor's clocks keep running from the last real change.
                saga.delivery_parked = Some(ParkedDelivery {
                    reason: reason.clone(),
                    msg_id: msg_id.clone(),
                });
                saga.delivery_parks += 1;
            }
            OrderEvent::DeliveryResumed { .. } => {
                saga.delivery_parked = None;
            }
        }
        let settled = saga.status == OrderStatus::Failed
            || (saga.status == OrderStatus::Completed && saga.data_platform_delivered);
        if settled {
            state.open.remove(&order_id);
        }
    }

    fn event_type(event: &OrderEvent) -> &'static str {
        match event {
            OrderEvent::Placed { .. } => "Placed",
            OrderEvent::OutcomeRecorded { .. } => "OutcomeRecorded",
            OrderEvent::Completed { .. } => "Completed",
            OrderEvent::Failed { .. } => "Failed",
            OrderEvent::Compensated { .. } => "Compensated",
            OrderEvent::AttentionNeeded { .. } => "AttentionNeeded",
            OrderEvent::FailureRedriven { .. } => "FailureRedriven",
            OrderEvent::CompensationRetried { .. } => "CompensationRetried",
            OrderEvent::DataPlatformDelivered { .. } => "DataPlatformDelivered",
            OrderEvent::DuplicateIgnored { .. } => "DuplicateIgnored",
            OrderEvent::RedrivesExhausted { .. } => "RedrivesExhausted",
            OrderEvent::DeliveryParked { .. } => "DeliveryParked",
            OrderEvent::DeliveryResumed { .. } => "DeliveryResumed",
        }
    }

    fn stream_of(event: &OrderEvent) -> String {
        format!("order-{}", event.order_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::OrderLine;
    use eventlog::scenario::given;

    const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    const PLACED_AT: u64 = 1_000;
    const DEADLINE: u64 = 31_000;

    fn order_with(coupon_id: Option<&str>, points: u64) -> OrderPlaced {
        OrderPlaced {
            order_id: ORDER,
            user_id: "user-1".into(),
            items: vec![OrderLine {
                sku: "sku-1".into(),
                qty: 2,
                price: 5_000,
            }],
            coupon_id: coupon_id.map(Into::into),
            points,
            amount: 10_000,
            placed_at_ms: PLACED_AT,
            deadline_ms: DEADLINE,
        }
    }

    /// An order that needs all four participants.
    fn full_order() -> OrderPlaced {
        order_with(Some("WELCOME10"), 500)
    }

    fn placed(order: OrderPlaced) -> OrderEvent {
        OrderEvent::Placed {
            order,
            trace_id: "trace-1".into(),
            idempotency_key: Some("key-1".into()),
        }
    }

    fn outcome(
        participant: Participant,
        kind: OutcomeKind,
        reason: Option<&str>,
    ) -> ParticipantEvent {
        ParticipantEvent {
            order_id: ORDER,
            participant,
            kind,
            reason: reason.map(Into::into),
        }
    }

    fn record(
        participant: Participant,
        kind: OutcomeKind,
        reason: Option<&str>,
        now_ms: u64,
    ) -> OrderCommand {
        OrderCommand::RecordOutcome {
            event: outcome(participant, kind, reason),
            now_ms,
        }
    }

    fn recorded(
        participant: Participant,
        kind: OutcomeKind,
        reason: Option<&str>,
        at_ms: u64,
    ) -> OrderEvent {
        OrderEvent::OutcomeRecorded {
            order_id: ORDER,
            participant,
            kind,
            reason: reason.map(Into::into),
            at_ms,
        }
    }

    fn succeeded(participant: Participant, at_ms: u64) -> OrderEvent {
        recorded(participant, OutcomeKind::Succeeded, None, at_ms)
    }

    fn compensated(participant: Participant, at_ms: u64) -> OrderEvent {
        recorded(participant, OutcomeKind::Compensated, None, at_ms)
    }

    const DECLINE_REASON: &str = "payment declined: amount above limit";

    /// A full order whose payment was declined after stock, coupon and point succeeded.
    fn failed_history() -> Vec<OrderEvent> {
        vec![
            placed(full_order()),
            succeeded(Participant::Stock, 2_000),
            succeeded(Participant::Coupon, 2_000),
            succeeded(Participant::Point, 2_000),
            recorded(
                Participant::Payment,
                OutcomeKind::Rejected,
                Some("amount above limit"),
                3_000,
            ),
            OrderEvent::Failed {
                order_id: ORDER,
                reason: DECLINE_REASON.into(),
                at_ms: 3_000,
            },
        ]
    }

    /// The failed order, with every compensation in except the point refund, which failed.
    fn needs_attention_history() -> Vec<OrderEvent> {
        let mut events = failed_history();
        events.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
            compensated(Participant::Coupon, 4_000),
        ]);
        events.extend(point_refund_failed(5_000));
        events
    }

    /// The point refund failing for good, as recorded.
    fn point_refund_failed(at_ms: u64) -> [OrderEvent; 2] {
        [
            recorded(
                Participant::Point,
                OutcomeKind::CompensationFailed,
                Some("ledger down"),
                at_ms,
            ),
            OrderEvent::AttentionNeeded {
                order_id: ORDER,
                participant: Participant::Point,
                reason: "point refund_failed: ledger down".into(),
                at_ms,
            },
        ]
    }

    fn completed_history() -> Vec<OrderEvent> {
        vec![
            placed(order_with(None, 0)),
            succeeded(Participant::Payment, 2_000),
            succeeded(Participant::Stock, 2_000),
            OrderEvent::Completed {
                order_id: ORDER,
                at_ms: 2_000,
            },
        ]
    }

    #[test]
    fn placing_an_order_makes_it_pending_and_findable_by_trace_and_key() {
        // Given
        let scenario = given::<Order>([]);
        // When
        let state = scenario
            .when(OrderCommand::Place {
                order: full_order(),
                trace_id: "trace-1".into(),
                idempotency_key: Some("key-1".into()),
            })
            // Then
            .then([placed(full_order())]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Pending);
        assert_eq!(saga.required, Participant::ALL.to_vec());
        assert_eq!(saga.waiting_for(), Participant::ALL.to_vec());
        assert_eq!(saga.updated_at_ms, PLACED_AT);
        assert_eq!(state.by_trace["trace-1"], ORDER);
        assert_eq!(state.by_idempotency_key["key-1"], ORDER);
    }

    #[test]
    fn placing_an_order_id_twice_is_rejected() {
        // Given
        let scenario = given::<Order>([placed(full_order())]);
        // When
        scenario
            .when(OrderCommand::Place {
                order: full_order(),
                trace_id: "trace-2".into(),
                idempotency_key: None,
            })
            // Then
            .then_rejected(OrderRejection::DuplicateOrder(ORDER));
    }

    #[test]
    fn reusing_an_idempotency_key_names_the_order_it_placed() {
        // Given
        let scenario = given::<Order>([placed(full_order())]);
        let mut other = full_order();
        other.order_id = Uuid::from_u128(2);
        // When
        scenario
            .when(OrderCommand::Place {
                order: other,
                trace_id: "trace-2".into(),
                idempotency_key: Some("key-1".into()),
            })
            // Then
            .then_rejected(OrderRejection::IdempotencyKeyReused {
                key: "key-1".into(),
                order_id: ORDER,
            });
    }

    #[test]
    fn an_outcome_for_an_unknown_order_is_rejected() {
        // Given
        let scenario = given::<Order>([]);
        // When
        scenario
            .when(record(
                Participant::Payment,
                OutcomeKind::Succeeded,
                None,
                2_000,
            ))
            // Then
            .then_rejected(OrderRejection::UnknownOrder(ORDER));
    }

    #[test]
    fn the_last_of_four_successes_completes_the_order() {
        // Given
        let scenario = given::<Order>([
            placed(full_order()),
            succeeded(Participant::Payment, 2_000),
            succeeded(Participant::Stock, 2_100),
            succeeded(Participant::Coupon, 2_200),
        ]);
        // When
        let state = scenario
            .when(record(
                Participant::Point,
                OutcomeKind::Succeeded,
                None,
                2_300,
            ))
            // Then
            .then([
                succeeded(Participant::Point, 2_300),
                OrderEvent::Completed {
                    order_id: ORDER,
                    at_ms: 2_300,
                },
            ]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Completed);
        assert!(saga.status.is_terminal());
        assert!(saga.waiting_for().is_empty());
        assert_eq!(saga.updated_at_ms, 2_300);
    }

    #[test]
    fn without_coupon_and_points_payment_and_stock_are_enough() {
        // Given
        let scenario = given::<Order>([
            placed(order_with(None, 0)),
            succeeded(Participant::Payment, 2_000),
        ]);
        assert_eq!(
            scenario.state().orders[&ORDER].required,
            vec![Participant::Payment, Participant::Stock]
        );
        // When
        scenario
            .when(record(
                Participant::Stock,
                OutcomeKind::Succeeded,
                None,
                2_100,
            ))
            // Then
            .then([
                succeeded(Participant::Stock, 2_100),
                OrderEvent::Completed {
                    order_id: ORDER,
                    at_ms: 2_100,
                },
            ]);
    }

    #[test]
    fn completion_waits_for_every_required_participant() {
        // Given
        let scenario = given::<Order>([
            placed(full_order()),
            succeeded(Participant::Payment, 2_000),
            succeeded(Participant::Stock, 2_100),
        ]);
        // When
        let state = scenario
            .when(record(
                Participant::Coupon,
                OutcomeKind::Succeeded,
                None,
                2_200,
            ))
            // Then
            .then([succeeded(Participant::Coupon, 2_200)]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Pending);
        assert_eq!(saga.waiting_for(), vec![Participant::Point]);
    }

    #[test]
    fn a_participant_outside_the_order_is_ignored() {
        // Given
        let scenario = given::<Order>([placed(order_with(None, 0))]);
        // When
        scenario
            .when(record(
                Participant::Coupon,
                OutcomeKind::Succeeded,
                None,
                2_000,
            ))
            // Then
            .then([OrderEvent::DuplicateIgnored {
                order_id: ORDER,
                participant: Participant::Coupon,
                kind: OutcomeKind::Succeeded,
                at_ms: 2_000,
            }]);
    }

    #[test]
    fn the_first_rejection_fails_the_order_with_its_reason() {
        // Given
        let scenario = given::<Order>([
            placed(full_order()),
            succeeded(Participant::Stock, 2_000),
            succeeded(Participant::Coupon, 2_000),
            succeeded(Participant::Point, 2_000),
        ]);
        // When
        let state = scenario
            .when(record(
                Participant::Payment,
                OutcomeKind::Rejected,
                Some("amount above limit"),
                3_000,
            ))
            // Then
            .then(failed_history().split_off(4));
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Compensating);
        assert_eq!(saga.failure_reason.as_deref(), Some(DECLINE_REASON));
        assert_eq!(saga.waiting_for(), Participant::ALL.to_vec());
    }

    #[test]
    fn a_second_rejection_after_the_failure_is_recorded_without_failing_again() {
        // Given
        let scenario = given::<Order>([
            placed(full_order()),
            recorded(
                Participant::Payment,
                OutcomeKind::Rejected,
                Some("declined"),
                2_000,
            ),
            OrderEvent::Failed {
                order_id: ORDER,
                reason: "payment declined: declined".into(),
                at_ms: 2_000,
            },
        ]);
        // When
        let state = scenario
            .when(record(
                Participant::Stock,
                OutcomeKind::Rejected,
                Some("sold out"),
                2_500,
            ))
            // Then
            .then([recorded(
                Participant::Stock,
                OutcomeKind::Rejected,
                Some("sold out"),
                2_500,
            )]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Compensating);
        assert_eq!(
            saga.failure_reason.as_deref(),
            Some("payment declined: declined")
        );
    }

    #[test]
    fn the_last_compensation_marks_the_order_failed() {
        // Given
        let mut history = failed_history();
        history.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_100),
            compensated(Participant::Coupon, 4_200),
        ]);
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(record(
                Participant::Point,
                OutcomeKind::Compensated,
                None,
                4_300,
            ))
            // Then
            .then([
                compensated(Participant::Point, 4_300),
                OrderEvent::Compensated {
                    order_id: ORDER,
                    at_ms: 4_300,
                },
            ]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Failed);
        assert!(saga.status.is_terminal());
        assert_eq!(saga.failure_reason.as_deref(), Some(DECLINE_REASON));
    }

    #[test]
    fn a_failed_compensation_needs_attention_instead_of_failing_the_order() {
        // Given
        let mut history = failed_history();
        history.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
        ]);
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(record(
                Participant::Point,
                OutcomeKind::CompensationFailed,
                Some("ledger down"),
                5_000,
            ))
            // Then
            .then(point_refund_failed(5_000));
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::NeedsAttention);
        assert_eq!(
            saga.attention_reason.as_deref(),
            Some("point refund_failed: ledger down")
        );
        assert_eq!(saga.waiting_for(), vec![Participant::Coupon]);
    }

    #[test]
    fn the_last_compensation_after_a_failed_one_leaves_the_order_needing_attention() {
        // Given
        let mut history = failed_history();
        history.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
        ]);
        history.extend(point_refund_failed(5_000));
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(record(
                Participant::Coupon,
                OutcomeKind::Compensated,
                None,
                6_000,
            ))
            // Then
            .then([compensated(Participant::Coupon, 6_000)]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::NeedsAttention);
        assert!(saga.waiting_for().is_empty());
    }

    #[test]
    fn an_operator_retry_followed_by_the_compensation_fails_the_order() {
        // Given
        let retried = given::<Order>(needs_attention_history())
            // When
            .when(OrderCommand::RetryCompensation {
                order_id: ORDER,
                now_ms: 7_000,
            })
            // Then
            .then([OrderEvent::CompensationRetried {
                order_id: ORDER,
                attempt: 1,
                at_ms: 7_000,
            }]);
        let saga = &retried.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Compensating);
        assert_eq!(saga.redrives, 1);
        assert_eq!(saga.attention_reason, None);
        assert_eq!(saga.waiting_for(), vec![Participant::Point]);

        // Given the retry is in the log
        let mut history = needs_attention_history();
        history.push(OrderEvent::CompensationRetried {
            order_id: ORDER,
            attempt: 1,
            at_ms: 7_000,
        });
        // When
        let state = given::<Order>(history)
            .when(record(
                Participant::Point,
                OutcomeKind::Compensated,
                None,
                8_000,
            ))
            // Then
            .then([
                compensated(Participant::Point, 8_000),
                OrderEvent::Compensated {
                    order_id: ORDER,
                    at_ms: 8_000,
                },
            ]);
        assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
    }

    #[test]
    fn a_participant_fixing_its_own_compensation_resolves_the_attention() {
        // Given
        let scenario = given::<Order>(needs_attention_history());
        // When
        scenario
            .when(record(
                Participant::Point,
                OutcomeKind::Compensated,
                None,
                9_000,
            ))
            // Then
            .then([
                compensated(Participant::Point, 9_000),
                OrderEvent::Compensated {
                    order_id: ORDER,
                    at_ms: 9_000,
                },
            ]);
    }

    #[test]
    fn retrying_compensation_of_an_order_not_needing_attention_is_rejected() {
        // Given
        let scenario = given::<Order>(failed_history());
        // When
        scenario
            .when(OrderCommand::RetryCompensation {
                order_id: ORDER,
                now_ms: 7_000,
            })
            // Then
            .then_rejected(OrderRejection::NotNeedingAttention(ORDER));
    }

    /// The failed order with every compensation in except point's, which never answered.
    fn point_silent_history() -> Vec<OrderEvent> {
        let mut events = failed_history();
        events.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
            compensated(Participant::Coupon, 4_000),
            OrderEvent::FailureRedriven {
                order_id: ORDER,
                attempt: 1,
                at_ms: 6_000,
            },
        ]);
        events
    }

    fn redrives_exhausted(at_ms: u64) -> OrderEvent {
        OrderEvent::RedrivesExhausted {
            order_id: ORDER,
            waiting_for: vec![Participant::Point],
            reason: "no compensation from point after 1 re-drives of order.failed".into(),
            at_ms,
        }
    }

    #[test]
    fn exhausted_redrives_leave_the_order_needing_attention_with_a_reason() {
        // Given
        let scenario = given::<Order>(point_silent_history());
        // When
        let state = scenario
            .when(OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 1,
                now_ms: 10_000,
            })
            // Then
            .then([redrives_exhausted(10_000)]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::NeedsAttention);
        assert_eq!(
            saga.attention_reason.as_deref(),
            Some("no compensation from point after 1 re-drives of order.failed")
        );
        assert!(saga.redrives_exhausted);
        assert_eq!(saga.escalations, 1);
        assert_eq!(saga.waiting_for(), vec![Participant::Point]);
        assert!(state.open.contains(&ORDER), "still an operator's to close");
    }

    #[test]
    fn escalating_again_in_the_same_round_records_nothing() {
        // Given
        let mut history = point_silent_history();
        history.push(redrives_exhausted(10_000));
        // When
        given::<Order>(history)
            .when(OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 1,
                now_ms: 20_000,
            })
            // Then
            .then_nothing();
    }

    #[test]
    fn escalating_an_order_nobody_is_missing_from_is_rejected() {
        // Given
        let scenario = given::<Order>(completed_history());
        // When
        scenario
            .when(OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 20,
                now_ms: 20_000,
            })
            // Then
            .then_rejected(OrderRejection::NotCompensating(ORDER));
    }

    #[test]
    fn exhausted_redrives_after_a_failed_compensation_keep_both_reasons() {
        // Given point's refund failed and coupon never answered
        let mut history = failed_history();
        history.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
        ]);
        history.extend(point_refund_failed(5_000));
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 20,
                now_ms: 9_000,
            })
            // Then
            .then([OrderEvent::RedrivesExhausted {
                order_id: ORDER,
                waiting_for: vec![Participant::Coupon],
                reason: "no compensation from coupon after 20 re-drives of order.failed".into(),
                at_ms: 9_000,
            }]);
        assert_eq!(
            state.orders[&ORDER].attention_reason.as_deref(),
            Some(
                "point refund_failed: ledger down; \
                 no compensation from coupon after 20 re-drives of order.failed"
            )
        );
    }

    #[test]
    fn an_operator_retry_after_exhausted_redrives_fails_the_order_once_the_participant_answers() {
        // Given
        let mut history = point_silent_history();
        history.push(redrives_exhausted(10_000));
        // When
        let retried = given::<Order>(history.clone())
            .when(OrderCommand::RetryCompensation {
                order_id: ORDER,
                now_ms: 11_000,
            })
            // Then
            .then([OrderEvent::CompensationRetried {
                order_id: ORDER,
                attempt: 2,
                at_ms: 11_000,
            }]);
        let saga = &retried.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Compensating);
        assert_eq!(saga.attention_reason, None);
        assert_eq!(saga.round_redrives, 0, "a fresh round of re-drives");
        assert!(!saga.redrives_exhausted);

        // Given the retry is in the log
        history.push(OrderEvent::CompensationRetried {
            order_id: ORDER,
            attempt: 2,
            at_ms: 11_000,
        });
        // When point finally answers
        let state = given::<Order>(history)
            .when(record(
                Participant::Point,
                OutcomeKind::Compensated,
                None,
                12_000,
            ))
            // Then
            .then([
                compensated(Participant::Point, 12_000),
                OrderEvent::Compensated {
                    order_id: ORDER,
                    at_ms: 12_000,
                },
            ]);
        assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
        assert!(!state.open.contains(&ORDER));
    }

    fn parked(at_ms: u64) -> OrderEvent {
        OrderEvent::DeliveryParked {
            order_id: ORDER,
            reason: "HTTP 503".into(),
            msg_id: "m-1".into(),
            at_ms,
        }
    }

    #[test]
    fn a_delivery_is_parked_once_and_a_resume_takes_it_up_again() {
        // Given
        let scenario = given::<Order>(completed_history());
        // When
        let state = scenario
            .when(OrderCommand::ParkDelivery {
                order_id: ORDER,
                reason: "HTTP 503".into(),
                msg_id: "m-1".into(),
                now_ms: 5_000,
            })
            // Then
            .then([parked(5_000)]);
        let saga = &state.orders[&ORDER];
        assert_eq!(
            saga.delivery_parked,
            Some(ParkedDelivery {
                reason: "HTTP 503".into(),
                msg_id: "m-1".into()
            })
        );
        assert_eq!(saga.delivery_parks, 1);
        assert_eq!(saga.updated_at_ms, 2_000, "parking is not saga progress");

        // Given it is parked
        let mut history = completed_history();
        history.push(parked(5_000));
        // When another copy fails for good
        given::<Order>(history.clone())
            .when(OrderCommand::ParkDelivery {
                order_id: ORDER,
                reason: "HTTP 503".into(),
                msg_id: "m-2".into(),
                now_ms: 6_000,
            })
            // Then
            .then_nothing();
        // When an operator re-drives it
        let state = given::<Order>(history)
            .when(OrderCommand::ResumeDelivery {
                order_id: ORDER,
                now_ms: 7_000,
            })
            // Then
            .then([OrderEvent::DeliveryResumed {
                order_id: ORDER,
                at_ms: 7_000,
            }]);
        assert_eq!(state.orders[&ORDER].delivery_parked, None);
    }

    #[test]
    fn delivering_a_parked_order_unparks_it() {
        // Given
        let mut history = completed_history();
        history.push(parked(5_000));
        // When
        let state = given::<Order>(history)
            .when(OrderCommand::MarkDelivered {
                order_id: ORDER,
                now_ms: 8_000,
            })
            // Then
            .then([OrderEvent::DataPlatformDelivered {
                order_id: ORDER,
                at_ms: 8_000,
            }]);
        assert_eq!(state.orders[&ORDER].delivery_parked, None);
        assert!(!state.open.contains(&ORDER));
    }

    #[test]
    fn resuming_a_delivery_that_is_not_parked_is_rejected() {
        // Given
        let scenario = given::<Order>(completed_history());
        // When
        scenario
            .when(OrderCommand::ResumeDelivery {
                order_id: ORDER,
                now_ms: 7_000,
            })
            // Then
            .then_rejected(OrderRejection::NotParked(ORDER));
    }

    #[test]
    fn parking_an_order_that_is_not_completed_is_rejected() {
        // Given
        let scenario = given::<Order>(failed_history());
        // When
        scenario
            .when(OrderCommand::ParkDelivery {
                order_id: ORDER,
                reason: "HTTP 503".into(),
                msg_id: "m-1".into(),
                now_ms: 7_000,
            })
            // Then
            .then_rejected(OrderRejection::NotCompleted(ORDER));
    }

    #[test]
    fn before_the_deadline_expiry_does_nothing() {
        // Given
        let scenario = given::<Order>([placed(full_order())]);
        // When
        scenario
            .when(OrderCommand::Expire {
                order_id: ORDER,
                now_ms: DEADLINE - 1,
            })
            // Then
            .then_nothing();
    }

    #[test]
    fn at_the_deadline_the_order_fails_naming_whom_it_waited_for() {
        // Given
        let scenario = given::<Order>([
            placed(full_order()),
            succeeded(Participant::Payment, 2_000),
            succeeded(Participant::Coupon, 2_000),
        ]);
        // When
        let state = scenario
            .when(OrderCommand::Expire {
                order_id: ORDER,
                now_ms: DEADLINE,
            })
            // Then
            .then([OrderEvent::Failed {
                order_id: ORDER,
                reason: "deadline passed, waiting for stock, point".into(),
                at_ms: DEADLINE,
            }]);
        assert_eq!(state.orders[&ORDER].status, OrderStatus::Compensating);
    }

    #[test]
    fn expiring_a_completed_order_does_nothing() {
        // Given
        let scenario = given::<Order>(completed_history());
        // When
        scenario
            .when(OrderCommand::Expire {
                order_id: ORDER,
                now_ms: DEADLINE + 1,
            })
            // Then
            .then_nothing();
    }

    #[test]
    fn each_redrive_counts_one_more_attempt() {
        // Given
        let mut history = failed_history();
        history.push(OrderEvent::FailureRedriven {
            order_id: ORDER,
            attempt: 1,
            at_ms: 10_000,
        });
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: 20_000,
            })
            // Then
            .then([OrderEvent::FailureRedriven {
                order_id: ORDER,
                attempt: 2,
                at_ms: 20_000,
            }]);
        assert_eq!(state.orders[&ORDER].redrives, 2);
        assert_eq!(state.orders[&ORDER].updated_at_ms, 20_000);
    }

    #[test]
    fn redriving_a_pending_order_is_rejected() {
        // Given
        let scenario = given::<Order>([placed(full_order())]);
        // When
        scenario
            .when(OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: 2_000,
            })
            // Then
            .then_rejected(OrderRejection::NotCompensating(ORDER));
    }

    #[test]
    fn redriving_an_order_needing_attention_only_helps_while_someone_is_missing() {
        // Given
        let scenario = given::<Order>(needs_attention_history());
        // When
        scenario
            .when(OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: 6_000,
            })
            // Then
            .then_rejected(OrderRejection::NotCompensating(ORDER));
    }

    #[test]
    fn redriving_an_order_needing_attention_reaches_those_still_missing() {
        // Given
        let mut history = failed_history();
        history.extend([
            compensated(Participant::Payment, 4_000),
            compensated(Participant::Stock, 4_000),
        ]);
        history.extend(point_refund_failed(5_000));
        let scenario = given::<Order>(history);
        // When
        let state = scenario
            .when(OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: 6_000,
            })
            // Then
            .then([OrderEvent::FailureRedriven {
                order_id: ORDER,
                attempt: 1,
                at_ms: 6_000,
            }]);
        assert_eq!(state.orders[&ORDER].status, OrderStatus::NeedsAttention);
    }

    #[test]
    fn a_redelivered_outcome_is_ignored_without_touching_the_saga() {
        // Given
        let scenario =
            given::<Order>([placed(full_order()), succeeded(Participant::Payment, 2_000)]);
        // When
        let state = scenario
            .when(record(
                Participant::Payment,
                OutcomeKind::Succeeded,
                None,
                2_500,
            ))
            // Then
            .then([OrderEvent::DuplicateIgnored {
                order_id: ORDER,
                participant: Participant::Payment,
                kind: OutcomeKind::Succeeded,
                at_ms: 2_500,
            }]);
        assert_eq!(state.orders[&ORDER].updated_at_ms, 2_000);
    }

    #[test]
    fn a_success_arriving_after_its_compensation_is_ignored() {
        // Given
        let mut history = failed_history();
        history.push(compensated(Participant::Stock, 4_000));
        let scenario = given::<Order>(history);
        // When
        scenario
            .when(record(
                Participant::Stock,
                OutcomeKind::Succeeded,
                None,
                4_500,
            ))
            // Then
            .then([OrderEvent::DuplicateIgnored {
                order_id: ORDER,
                participant: Participant::Stock,
                kind: OutcomeKind::Succeeded,
                at_ms: 4_500,
            }]);
    }

    #[test]
    fn a_completed_order_is_delivered_to_the_data_platform_once() {
        // Given
        let scenario = given::<Order>(completed_history());
        // When
        let state = scenario
            .when(OrderCommand::MarkDelivered {
                order_id: ORDER,
                now_ms: 3_000,
            })
            // Then
            .then([OrderEvent::DataPlatformDelivered {
                order_id: ORDER,
                at_ms: 3_000,
            }]);
        assert!(state.orders[&ORDER].data_platform_delivered);

        // Given the delivery is in the log
        let mut history = completed_history();
        history.push(OrderEvent::DataPlatformDelivered {
            order_id: ORDER,
            at_ms: 3_000,
        });
        // When
        given::<Order>(history)
            .when(OrderCommand::MarkDelivered {
                order_id: ORDER,
                now_ms: 4_000,
            })
            // Then
            .then_nothing();
    }

    #[test]
    fn delivering_an_order_that_is_not_completed_is_rejected() {
        // Given
        let scenario = given::<Order>([placed(full_order())]);
        // When
        scenario
            .when(OrderCommand::MarkDelivered {
                order_id: ORDER,
                now_ms: 3_000,
            })
            // Then
            .then_rejected(OrderRejection::NotCompleted(ORDER));
    }

    #[test]
    fn statuses_use_their_contract_names_in_json_and_text() {
        // Given
        let statuses = OrderStatus::ALL;
        // When
        let json: Vec<String> = statuses
            .iter()
            .map(|s| serde_json::to_string(s).expect("status serialises"))
            .collect();
        // Then
        assert_eq!(
            json,
            [
                "\"PENDING\"",
                "\"COMPLETED\"",
                "\"COMPENSATING\"",
                "\"FAILED\"",
                "\"NEEDS_ATTENTION\""
            ]
        );
        for status in statuses {
            assert_eq!(
                serde_json::to_string(&status).expect("serialises"),
                format!("\"{}\"", status.as_str())
            );
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(
            OrderStatus::parse("needs_attention"),
            Some(OrderStatus::NeedsAttention)
        );
        assert_eq!(OrderStatus::parse("DONE"), None);
    }

    #[test]
    fn event_variants_keep_their_postcard_positions_and_names() {
        // Given one event of every variant, in declaration order
        let mut events = vec![placed(full_order())];
        let id = ORDER;
        let p = Participant::Payment;
        let k = OutcomeKind::Succeeded;
        events.extend([
            recorded(p, k, None, 1),
            OrderEvent::Completed {
                order_id: id,
                at_ms: 1,
            },
            OrderEvent::Failed {
                order_id: id,
                reason: "r".into(),
                at_ms: 1,
            },
            OrderEvent::Compensated {
                order_id: id,
                at_ms: 1,
            },
            OrderEvent::AttentionNeeded {
                order_id: id,
                participant: p,
                reason: "r".into(),
                at_ms: 1,
            },
            OrderEvent::FailureRedriven {
                order_id: id,
                attempt: 1,
                at_ms: 1,
            },
            OrderEvent::CompensationRetried {
                order_id: id,
                attempt: 1,
                at_ms: 1,
            },
            OrderEvent::DataPlatformDelivered {
                order_id: id,
                at_ms: 1,
            },
            OrderEvent::DuplicateIgnored {
                order_id: id,
                participant: p,
                kind: k,
                at_ms: 1,
            },
            OrderEvent::RedrivesExhausted {
                order_id: id,
                waiting_for: vec![p],
                reason: "r".into(),
                at_ms: 1,
            },
            OrderEvent::DeliveryParked {
                order_id: id,
                reason: "r".into(),
                msg_id: "m".into(),
                at_ms: 1,
            },
            OrderEvent::DeliveryResumed {
                order_id: id,
                at_ms: 1,
            },
        ]);
        let names = [
            "Placed",
            "OutcomeRecorded",
            "Completed",
            "Failed",
            "Compensated",
            "AttentionNeeded",
            "FailureRedriven",
            "CompensationRetried",
            "DataPlatformDelivered",
            "DuplicateIgnored",
            "RedrivesExhausted",
            "DeliveryParked",
            "DeliveryResumed",
        ];
        for (position, event) in events.iter().enumerate() {
            // When
            let bytes = postcard::to_stdvec(event).expect("encodes");
            let back: OrderEvent = postcard::from_bytes(&bytes).expect("decodes");
            // Then
            assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
            assert_eq!(&back, event);
            assert_eq!(Order::event_type(event), names[position]);
            assert_eq!(Order::stream_of(event), format!("order-{ORDER}"));
        }
    }

    #[test]
    fn events_render_as_camel_case_json() {
        // Given
        let event = OrderEvent::FailureRedriven {
            order_id: ORDER,
            attempt: 1,
            at_ms: 5,
        };
        // When
        let json = serde_json::to_value(&event).expect("serialises");
        // Then
        assert_eq!(
            json,
            serde_json::json!({"failureRedriven": {"orderId": ORDER, "attempt": 1, "atMs": 5}})
        );
    }
}
