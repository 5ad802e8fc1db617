//! The order saga's pure core: which events a command produces and how they fold into state.
//!
//! No I/O, clock or randomness: the time travels inside commands as `now_ms`.

use std::collections::{BTreeMap, HashMap};

use contract::{OrderPlaced, OutcomeKind, Participant, ParticipantEvent};
use eventlog::domain::Domain;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order domain: tracks every order's saga from placement to its terminal status.
///
/// Its state holds only the orders that can still change ([`OrderSaga::is_settled`] is false):
/// the event that settles an order removes it, so the state is bounded by the orders in flight,
/// not by history. A settled order lives on in the log: [`saga_of`] rebuilds it from its own
/// events, and commands about it travel as [`OrderCommand::OnArchived`].
pub struct Order;

/// The same saga with every order kept in the state, settled or not: for offline readers that
/// need the whole history at once (the audit), never for a running service.
pub struct OrderHistory;

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

/// The folded state: the sagas of the orders that can still change, their lookups, and the
/// count of every order ever placed per status.
///
/// Settled orders (FAILED, or COMPLETED and delivered to the data platform) leave `orders`,
/// `by_trace`, `by_idempotency_key` and `open` with the event that settles them, so a fold from
/// scratch, a snapshot and the live state agree. Their lookups live in the log's indexes
/// (`crate::archive`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orders {
    /// Sagas of the orders not yet settled, by order id.
    pub orders: HashMap<Uuid, OrderSaga>,
    /// Order id by trace id, for the orders in `orders`.
    pub by_trace: HashMap<String, Uuid>,
    /// Order id by the client's `Idempotency-Key`, for the orders in `orders`.
    pub by_idempotency_key: HashMap<String, Uuid>,
    /// The ids of `orders`, ordered: the supervisor scans them at every tick.
    pub open: std::collections::BTreeSet<Uuid>,
    /// How many orders are in each status, kept as events apply (metrics and `/stats` read it).
    pub status_counts: StatusCounts,
}

/// Orders per status, indexed like [`OrderStatus::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts([u64; 5]);

impl StatusCounts {
    fn slot(status: OrderStatus) -> usize {
        OrderStatus::ALL
            .iter()
            .position(|s| *s == status)
            .expect("ALL lists every status")
    }

    /// Orders in `status`.
    pub fn get(&self, status: OrderStatus) -> u64 {
        self.0[Self::slot(status)]
    }

    fn moved(&mut self, from: Option<OrderStatus>, to: OrderStatus) {
        if let Some(from) = from {
            let slot = &mut self.0[Self::slot(from)];
            assert!(*slot > 0, "an order left {from} that had none");
            *slot -= 1;
        }
        self.0[Self::slot(to)] += 1;
    }
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
    /// The client's `Idempotency-Key`, if it sent one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
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

    /// Whether nothing about the order can change any more: FAILED (every compensation
    /// confirmed), or COMPLETED and received by the data platform. A settled order leaves the
    /// state; the events that can still reach it (late or repeated outcomes) change no status.
    pub fn is_settled(&self) -> bool {
        self.status == OrderStatus::Failed
            || (self.status == OrderStatus::Completed && self.data_platform_delivered)
    }

    /// Whether the order waits for compensations that have not come yet.
    fn compensations_missing(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::Compensating | OrderStatus::NeedsAttention
        ) && !self.waiting_for().is_empty()
    }

    /// The saga as its `Placed` event starts it.
    fn placed(order: &OrderPlaced, trace_id: &str, idempotency_key: Option<&str>) -> Self {
        OrderSaga {
            order: order.clone(),
            trace_id: trace_id.to_owned(),
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
            idempotency_key: idempotency_key.map(str::to_owned),
        }
    }

    /// Applies one of the order's own events after `Placed`.
    fn apply(&mut self, event: &OrderEvent) {
        let saga = self;
        match event {
            // A second placement of the same id never reaches the log (`DuplicateOrder`).
            OrderEvent::Placed { .. } => {}
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
    }
}

/// Rebuilds one order's saga from its own events (its stream, in order), as the state held it
/// before it settled and as it would hold it now: the archive's read path.
///
/// `None` when the events do not start with the order's `Placed`. Events of other orders are
/// skipped.
pub fn saga_of<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> Option<OrderSaga> {
    let mut events = events.into_iter();
    let (order_id, mut saga) = match events.next()? {
        OrderEvent::Placed {
            order,
            trace_id,
            idempotency_key,
        } => (
            order.order_id,
            OrderSaga::placed(order, trace_id, idempotency_key.as_deref()),
        ),
        _ => return None,
    };
    for event in events.filter(|e| e.order_id() == order_id) {
        saga.apply(event);
    }
    Some(saga)
}

/// An intention to change an order's saga.
#[derive(Debug, Clone)]
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
    /// `command` about an order that may have settled and left the state: decided against the
    /// live saga if the order is still in the state, else against `saga`, its archived saga as
    /// [`saga_of`] rebuilt it from the log. The shell looks the archive up, so the decision stays
    /// pure and the same as it was before the order left memory.
    OnArchived {
        /// The order's saga as rebuilt from its events.
        saga: Box<OrderSaga>,
        /// What to decide about it.
        command: Box<OrderCommand>,
    },
}

impl OrderCommand {
    /// The order the command is about; `None` for a placement (the order does not exist yet).
    pub fn order_id(&self) -> Option<Uuid> {
        match self {
            OrderCommand::Place { .. } => None,
            OrderCommand::RecordOutcome { event, .. } => Some(event.order_id),
            OrderCommand::Expire { order_id, .. }
            | OrderCommand::Redrive { order_id, .. }
            | OrderCommand::RetryCompensation { order_id, .. }
            | OrderCommand::MarkDelivered { order_id, .. }
            | OrderCommand::Escalate { order_id, .. }
            | OrderCommand::ParkDelivery { order_id, .. }
            | OrderCommand::ResumeDelivery { order_id, .. } => Some(*order_id),
            OrderCommand::OnArchived { saga, .. } => Some(saga.order.order_id),
        }
    }
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRejection {
    /// An order with this id exists already.
    #[error("order {0} already exists")]
    DuplicateOrder(Uuid),
    /// No order with this id.
    #[error("order {0} not found")]
    UnknownOrder(Uuid),
    /// The idempotency key already placed another order.
    #[error("idempotency key {key:?} already placed order {order_id}")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The order it placed.
        order_id: Uuid,
    },
    /// The order is not compensating (or has nobody left to wait for).
    #[error("order {0} is not waiting for compensations")]
    NotCompensating(Uuid),
    /// The order does not need an operator.
    #[error("order {0} does not need attention")]
    NotNeedingAttention(Uuid),
    /// The order is not completed.
    #[error("order {0} is not completed")]
    NotCompleted(Uuid),
    /// The order's data platform delivery is not parked.
    #[error("order {0} has no data platform delivery parked")]
    NotParked(Uuid),
}

/// A fact about an order's saga.
///
/// Postcard encodes variants by position: the order below is final, only append new variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
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
                if !saga.compensations_missing() {
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
                if !saga.compensations_missing() {
                    return Err(OrderRejection::NotCompensating(order_id));
                }
                let waiting_for = saga.waiting_for();
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
            OrderCommand::OnArchived { saga, command } => {
                let order_id = saga.order.order_id;
                if command.order_id() != Some(order_id) {
                    return Err(OrderRejection::UnknownOrder(order_id));
                }
                if state.orders.contains_key(&order_id) {
                    return Order::decide(state, *command);
                }
                // The same rules, against the one saga the log holds for the order.
                let archived = Orders {
                    orders: HashMap::from([(order_id, *saga)]),
                    ..Orders::default()
                };
                Order::decide(&archived, *command)
            }
        }
    }

    fn evolve(state: &mut Orders, event: &OrderEvent) {
        evolve(state, event, Retention::DropSettled);
    }

    fn index_entries(state: &Orders, events: &[OrderEvent]) -> Vec<eventlog::IndexEntry> {
        crate::archive::index_entries(state, events)
    }

    fn event_type(event: &OrderEvent) -> &'static str {
        event.into()
    }

    fn stream_of(event: &OrderEvent) -> String {
        stream_of(event.order_id())
    }

    // 2: settled orders leave the state.
    const SNAPSHOT_VERSION: u32 = 2;
}

/// The stream holding an order's events.
pub fn stream_of(order_id: Uuid) -> String {
    eventlog::event_store::correlation_stream(&order_id.to_string())
}

impl Domain for OrderHistory {
    type State = Orders;
    type Event = OrderEvent;
    type Command = OrderCommand;
    type Rejection = OrderRejection;

    fn decide(state: &Orders, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderRejection> {
        Order::decide(state, command)
    }

    fn evolve(state: &mut Orders, event: &OrderEvent) {
        evolve(state, event, Retention::KeepAll);
    }

    fn event_type(event: &OrderEvent) -> &'static str {
        Order::event_type(event)
    }

    fn stream_of(event: &OrderEvent) -> String {
        Order::stream_of(event)
    }
}

/// Whether settled orders stay in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retention {
    /// The running service: a settled order leaves the state.
    DropSettled,
    /// Offline readers of the whole history.
    KeepAll,
}

fn evolve(state: &mut Orders, event: &OrderEvent, retention: Retention) {
    if let OrderEvent::Placed {
        order,
        trace_id,
        idempotency_key,
    } = event
    {
        let previous = state.orders.insert(
            order.order_id,
            OrderSaga::placed(order, trace_id, idempotency_key.as_deref()),
        );
        assert!(
            previous.is_none(),
            "order {} placed twice in the log",
            order.order_id
        );
        state.by_trace.insert(trace_id.clone(), order.order_id);
        state.open.insert(order.order_id);
        state.status_counts.moved(None, OrderStatus::Pending);
        if let Some(key) = idempotency_key {
            state.by_idempotency_key.insert(key.clone(), order.order_id);
        }
        return;
    }

    let order_id = event.order_id();
    // Not in the state: the order settled and left it. What still reaches a settled order (a
    // late or repeated outcome, kept for the record) changes no status, so the counts hold; the
    // archive rebuilds the saga from the log with these events included.
    let Some(saga) = state.orders.get_mut(&order_id) else {
        return;
    };
    let status_before = saga.status;
    saga.apply(event);
    if saga.status != status_before {
        state.status_counts.moved(Some(status_before), saga.status);
    }
    if !saga.is_settled() {
        return;
    }
    state.open.remove(&order_id);
    if retention == Retention::DropSettled {
        if let Some(saga) = state.orders.remove(&order_id) {
            state.by_trace.remove(&saga.trace_id);
            if let Some(key) = &saga.idempotency_key {
                state.by_idempotency_key.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;
