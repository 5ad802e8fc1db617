//! The saga's public wire contract: streams, subjects, consumers, headers and message bodies.
//!
//! Names here are the ones in DESIGN.md; clients, operators and tests rely on them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Header carrying the deterministic dedup id.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header carrying the saga's trace id (32 hex chars).
pub const HEADER_TRACE_ID: &str = "Trace-Id";
/// W3C trace context header.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Header naming the event (same as the subject).
pub const HEADER_EVENT_TYPE: &str = "Event-Type";
/// Header naming the envelope version.
pub const HEADER_EVENT_VERSION: &str = "Event-Version";
/// Header naming the payload encoding.
pub const HEADER_CONTENT_TYPE: &str = "Content-Type";
/// Header carrying the order id.
pub const HEADER_ORDER_ID: &str = "Order-Id";
/// Content type of every event payload.
pub const CONTENT_TYPE_POSTCARD: &str = "application/postcard";

/// A domain that takes part in the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Participant {
    /// Payment approval at the PG.
    Payment,
    /// Stock reservation.
    Stock,
    /// Coupon use.
    Coupon,
    /// Point deduction.
    Point,
}

/// What a participant reports about one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeKind {
    /// It did its part (`payment.approved`, `stock.reserved`, ...).
    Succeeded,
    /// It refused (`payment.declined`, `stock.insufficient`, ...).
    Rejected,
    /// It undid its part, or had nothing to undo (`payment.cancelled`, `stock.restored`, ...).
    Compensated,
    /// Its undo kept failing (`payment.cancel_failed`, ...).
    CompensationFailed,
}

impl OutcomeKind {
    /// All kinds, in saga order.
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::Succeeded,
        OutcomeKind::Rejected,
        OutcomeKind::Compensated,
        OutcomeKind::CompensationFailed,
    ];
}

impl Participant {
    /// All participants.
    pub const ALL: [Participant; 4] = [
        Participant::Payment,
        Participant::Stock,
        Participant::Coupon,
        Participant::Point,
    ];

    /// Where the participant's service listens unless told otherwise.
    pub const fn default_http_addr(self) -> &'static str {
        match self {
            Participant::Payment => "127.0.0.1:8081",
            Participant::Stock => "127.0.0.1:8082",
            Participant::Coupon => "127.0.0.1:8083",
            Participant::Point => "127.0.0.1:8084",
        }
    }

    /// The domain name, also the stream's subject prefix and the consumer name on ORDER.
    pub const fn name(self) -> &'static str {
        match self {
            Participant::Payment => "payment",
            Participant::Stock => "stock",
            Participant::Coupon => "coupon",
            Participant::Point => "point",
        }
    }

    /// The JetStream stream holding this participant's events.
    pub fn stream(self) -> &'static str {
        match self {
            Participant::Payment => "PAYMENT",
            Participant::Stock => "STOCK",
            Participant::Coupon => "COUPON",
            Participant::Point => "POINT",
        }
    }

    /// This participant's durable consumer of `order.failed` on ORDER (the one named
    /// [`Participant::name`] consumes `order.placed`).
    pub fn failed_consumer(self) -> &'static str {
        match self {
            Participant::Payment => "payment-failed",
            Participant::Stock => "stock-failed",
            Participant::Coupon => "coupon-failed",
            Participant::Point => "point-failed",
        }
    }

    /// The order service's durable consumer on this participant's stream.
    pub fn order_consumer(self) -> &'static str {
        match self {
            Participant::Payment => "order-payment",
            Participant::Stock => "order-stock",
            Participant::Coupon => "order-coupon",
            Participant::Point => "order-point",
        }
    }

    /// The event name for an outcome, e.g. `declined` for a rejected payment.
    pub fn event_name(self, kind: OutcomeKind) -> &'static str {
        use OutcomeKind::*;
        use Participant::*;
        match (self, kind) {
            (Payment, Succeeded) => "approved",
            (Payment, Rejected) => "declined",
            (Payment, Compensated) => "cancelled",
            (Payment, CompensationFailed) => "cancel_failed",
            (Stock, Succeeded) => "reserved",
            (Stock, Rejected) => "insufficient",
            (Stock, Compensated) => "restored",
            (Stock, CompensationFailed) => "restore_failed",
            (Coupon, Succeeded) => "used",
            (Coupon, Rejected) => "rejected",
            (Coupon, Compensated) => "restored",
            (Coupon, CompensationFailed) => "restore_failed",
            (Point, Succeeded) => "deducted",
            (Point, Rejected) => "rejected",
            (Point, Compensated) => "refunded",
            (Point, CompensationFailed) => "refund_failed",
        }
    }

    /// The subject for an outcome, e.g. `payment.declined`.
    pub fn subject(self, kind: OutcomeKind) -> String {
        format!("{}.{}", self.name(), self.event_name(kind))
    }

    /// Parses a subject such as `stock.reserved` back into participant and outcome.
    pub fn parse_subject(subject: &str) -> Option<(Participant, OutcomeKind)> {
        let (domain, event) = subject.split_once('.')?;
        let participant = Participant::ALL.into_iter().find(|p| p.name() == domain)?;
        let kind = OutcomeKind::ALL
            .into_iter()
            .find(|k| participant.event_name(*k) == event)?;
        Some((participant, kind))
    }
}

impl std::fmt::Display for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Subject of a placed order.
pub const ORDER_PLACED: &str = "order.placed";
/// Subject of a failed order (compensate!).
pub const ORDER_FAILED: &str = "order.failed";
/// Subject of a completed order.
pub const ORDER_COMPLETED: &str = "order.completed";
/// Stream of the order domain.
pub const ORDER_STREAM: &str = "ORDER";
/// Dead-letter stream.
pub const DLQ_STREAM: &str = "DLQ";
/// Operator alert stream.
pub const OPS_STREAM: &str = "OPS";
/// Durable consumer of the data platform forwarder.
pub const DATAPLATFORM_CONSUMER: &str = "dataplatform";

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// Quantity, at least 1.
    pub qty: u32,
    /// Unit price in minor currency units.
    pub price: u64,
}

/// `order.placed`: the saga starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// The order.
    pub order_id: Uuid,
    /// The buyer.
    pub user_id: String,
    /// What is bought.
    pub items: Vec<OrderLine>,
    /// Coupon to use, if any.
    pub coupon_id: Option<String>,
    /// Points to deduct (0 = point service not involved).
    pub points: u64,
    /// Amount to charge, in minor units.
    pub amount: u64,
    /// When the order was placed (ms since the Unix epoch).
    pub placed_at_ms: u64,
    /// When the saga gives up (ms since the Unix epoch).
    pub deadline_ms: u64,
}

impl OrderPlaced {
    /// The participants this order needs: coupon only with a couponId, point only with points > 0.
    pub fn required_participants(&self) -> Vec<Participant> {
        let mut needed = vec![Participant::Payment, Participant::Stock];
        if self.coupon_id.is_some() {
            needed.push(Participant::Coupon);
        }
        if self.points > 0 {
            needed.push(Participant::Point);
        }
        needed
    }
}

/// `order.failed`: every participant undoes its work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFailed {
    /// The order.
    pub order_id: Uuid,
    /// Why it failed (first rejection or deadline).
    pub reason: String,
    /// The participants the order involved: only they compensate.
    pub required: Vec<Participant>,
}

/// `order.completed`: every required participant succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    /// The order.
    pub order_id: Uuid,
    /// The buyer.
    pub user_id: String,
    /// What was bought.
    pub items: Vec<OrderLine>,
    /// Coupon used, if any.
    pub coupon_id: Option<String>,
    /// Points deducted.
    pub points: u64,
    /// Amount charged.
    pub amount: u64,
}

/// The file the order service's embedded data platform sink appends completed orders to, one
/// JSON object per line, in its data dir.
pub const DATAPLATFORM_FILE: &str = "dataplatform.jsonl";

/// The order a line of the data platform feed (a JSON object with `orderId`) is about; `None`
/// for a line that is not such an object.
pub fn feed_line_order_id(line: &str) -> Option<Uuid> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("orderId")?
        .as_str()?
        .parse()
        .ok()
}

/// Any participant event (`payment.approved`, `stock.insufficient`, `coupon.restored`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantEvent {
    /// The order.
    pub order_id: Uuid,
    /// Who reports.
    pub participant: Participant,
    /// What it reports.
    pub kind: OutcomeKind,
    /// Why, for rejections and failed compensations.
    pub reason: Option<String>,
}

impl ParticipantEvent {
    /// The event's subject.
    pub fn subject(&self) -> String {
        self.participant.subject(self.kind)
    }
}

/// Every message that travels on the saga's subjects, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaMessage {
    /// `order.placed`
    Placed(OrderPlaced),
    /// `order.failed`
    Failed(OrderFailed),
    /// `order.completed`
    Completed(OrderCompleted),
    /// `<participant>.<event>`
    Participant(ParticipantEvent),
}

impl SagaMessage {
    /// The order the message is about.
    pub fn order_id(&self) -> Uuid {
        match self {
            SagaMessage::Placed(m) => m.order_id,
            SagaMessage::Failed(m) => m.order_id,
            SagaMessage::Completed(m) => m.order_id,
            SagaMessage::Participant(m) => m.order_id,
        }
    }

    /// The subject the message is published on.
    pub fn subject(&self) -> String {
        match self {
            SagaMessage::Placed(_) => ORDER_PLACED.to_owned(),
            SagaMessage::Failed(_) => ORDER_FAILED.to_owned(),
            SagaMessage::Completed(_) => ORDER_COMPLETED.to_owned(),
            SagaMessage::Participant(m) => m.subject(),
        }
    }
}

/// The idempotency key of a consumer's action on an order: `(orderId, domain, action)`.
pub fn dedup_key(order_id: Uuid, domain: &str, action: &str) -> String {
    format!("{order_id}/{domain}/{action}")
}

/// The deterministic message id of an event: `<orderId>.<subject>`.
pub fn message_id(order_id: Uuid, subject: &str) -> String {
    format!("{order_id}.{subject}")
}

/// A fresh trace id: 32 lowercase hex characters, as W3C trace context wants.
pub fn new_trace_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A W3C `traceparent` for a trace id, with a fresh span id.
pub fn traceparent(trace_id: &str) -> String {
    let span = Uuid::new_v4().simple().to_string();
    format!("00-{trace_id}-{}-01", &span[..16])
}
