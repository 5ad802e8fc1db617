//! The cross-domain checks: pure functions over the folded states, pushing [`Violation`]s.
//!
//! The order log says how each saga ended; every participant's state must agree with it. Orders
//! still in flight (`PENDING`, `COMPENSATING`, `NEEDS_ATTENTION`) are reported as unsettled
//! instead: what participants hold for them is counted as held, not judged.

use contract::ledger::{OrderEntry, ParticipantOrderStatus};
use coupon::domain::CouponState;
use order::domain::{OrderSaga, OrderStatus, Orders};
use payment::domain::PaymentState;
use point::domain::PointState;
use stock::domain::StockState;
use uuid::Uuid;

use crate::dataplatform::{Received, DATAPLATFORM_FILE};
use crate::logs::Amounts;
use crate::report::{OrderCounts, Unsettled, Violation};

/// Check name: stock per SKU and per order.
pub const CHECK_STOCK: &str = "stock";
/// Check name: point balances per user and deductions per order.
pub const CHECK_POINTS: &str = "points";
/// Check name: coupon use.
pub const CHECK_COUPONS: &str = "coupons";
/// Check name: payments.
pub const CHECK_PAYMENTS: &str = "payments";
/// Check name: deliveries to the data platform.
pub const CHECK_DATAPLATFORM: &str = "dataplatform";
/// Name in `waiting_for` of a completed order whose delivery is not recorded yet.
pub const WAITING_FOR_DATAPLATFORM: &str = "dataplatform";

/// Orders by status.
pub fn count(orders: &Orders) -> OrderCounts {
    let mut counts = OrderCounts {
        total: orders.orders.len(),
        ..OrderCounts::default()
    };
    for saga in orders.orders.values() {
        let slot = match saga.status {
            OrderStatus::Completed => &mut counts.completed,
            OrderStatus::Failed => &mut counts.failed,
            OrderStatus::NeedsAttention => &mut counts.needs_attention,
            OrderStatus::Pending => &mut counts.pending,
            OrderStatus::Compensating => &mut counts.compensating,
        };
        *slot += 1;
    }
    counts
}

/// Orders not terminal, and completed orders whose delivery is not recorded; oldest first.
pub fn unsettled(orders: &Orders, now_ms: u64) -> Vec<Unsettled> {
    sorted(orders)
        .into_iter()
        .filter_map(|(id, saga)| {
            let waiting_for: Vec<String> = match saga.status {
                OrderStatus::Completed if !saga.data_platform_delivered => {
                    vec![WAITING_FOR_DATAPLATFORM.to_owned()]
                }
                status if status.is_terminal() => return None,
                _ => saga
                    .waiting_for()
                    .into_iter()
                    .map(|p| p.name().to_owned())
                    .collect(),
            };
            Some(Unsettled {
                order_id: id,
                status: saga.status,
                age_ms: now_ms.saturating_sub(saga.order.placed_at_ms),
                waiting_for,
                reason: saga
                    .attention_reason
                    .clone()
                    .or_else(|| saga.failure_reason.clone()),
            })
        })
        .collect()
}

/// Stock: per order against the order log, and per SKU against the restocks.
pub fn stock(orders: &Orders, state: &StockState, restocked: &Amounts, out: &mut Vec<Violation>) {
    use stock::domain::ParticipantOrderStatus as S;
    let mut ledger = Ledger::default();
    for (id, saga) in sorted(orders) {
        let entry = state.orders.get(&id);
        match (saga.status, entry) {
            (OrderStatus::Completed, None) => push(
                out,
                CHECK_STOCK,
                format!("order {id} is COMPLETED but stock never reserved it"),
            ),
            (OrderStatus::Completed, Some(entry)) => {
                let bought = lines_of(saga);
                if entry.status != S::Succeeded || entry.lines != bought {
                    push(out, CHECK_STOCK, format!(
                        "order {id} is COMPLETED and bought {bought:?}, but stock's reservation is {:?} {:?}",
                        entry.status, entry.lines
                    ));
                }
                ledger.take_all(&entry.lines);
            }
            (OrderStatus::Failed, None) => push(
                out,
                CHECK_STOCK,
                format!("order {id} is FAILED but stock never answered it"),
            ),
            (OrderStatus::Failed, Some(entry)) if holds(entry.status) => {
                push(
                    out,
                    CHECK_STOCK,
                    format!(
                        "order {id} is FAILED but stock still holds its reservation {:?} ({:?})",
                        entry.lines, entry.status
                    ),
                );
                ledger.hold_all(&entry.lines);
            }
            (_, Some(entry)) if holds(entry.status) => ledger.hold_all(&entry.lines),
            _ => {}
        }
    }
    for (id, entry) in held_for_unknown_orders(orders, &state.orders) {
        let detail = format!(
            "stock holds {:?} for order {id}, which the order log does not know",
            entry.lines
        );
        push(out, CHECK_STOCK, detail);
        ledger.hold_all(&entry.lines);
    }
    ledger.compare(&STOCK_LABELS, restocked, &state.available, out);
}

/// Points: per order against the order log, and per user against the credits.
pub fn points(orders: &Orders, state: &PointState, credited: &Amounts, out: &mut Vec<Violation>) {
    use point::domain::ParticipantOrderStatus as S;
    let mut ledger = Ledger::default();
    for (id, saga) in sorted(orders) {
        let entry = state.orders.get(&id);
        let required = saga.order.points > 0;
        match (saga.status, entry) {
            (OrderStatus::Completed, None) if required => push(
                out,
                CHECK_POINTS,
                format!(
                    "order {id} is COMPLETED but point never deducted its {} points",
                    saga.order.points
                ),
            ),
            (OrderStatus::Completed, Some(entry)) => {
                let (user, wanted) = (&saga.order.user_id, saga.order.points);
                if entry.status != S::Succeeded || entry.user_id != *user || entry.points != wanted
                {
                    push(out, CHECK_POINTS, format!(
                        "order {id} is COMPLETED with {wanted} points of {user}, but point recorded {:?} {} points of {:?}",
                        entry.status, entry.points, entry.user_id
                    ));
                }
                ledger.take(&entry.user_id, entry.points);
            }
            (OrderStatus::Failed, None) if required => push(
                out,
                CHECK_POINTS,
                format!("order {id} is FAILED but point never answered it"),
            ),
            (OrderStatus::Failed, Some(entry)) if holds(entry.status) => {
                push(
                    out,
                    CHECK_POINTS,
                    format!(
                        "order {id} is FAILED but its {} points of {} were not refunded ({:?})",
                        entry.points, entry.user_id, entry.status
                    ),
                );
                ledger.hold(&entry.user_id, entry.points);
            }
            (_, Some(entry)) if holds(entry.status) => ledger.hold(&entry.user_id, entry.points),
            _ => {}
        }
    }
    for (id, entry) in held_for_unknown_orders(orders, &state.orders) {
        let (points, user) = (entry.points, &entry.user_id);
        let detail = format!(
            "point deducted {points} points of {user} for order {id}, which the order log does not know"
        );
        push(out, CHECK_POINTS, detail);
        ledger.hold(user, points);
    }
    ledger.compare(&POINT_LABELS, credited, &state.balances, out);
}

/// Coupons: a coupon is used exactly by the completed order that asked for it.
pub fn coupons(orders: &Orders, state: &CouponState, out: &mut Vec<Violation>) {
    for (code, coupon) in &state.coupons {
        let Some(user) = coupon.used_by else { continue };
        let problem = match orders.orders.get(&user) {
            None => Some("which the order log does not know".to_owned()),
            Some(saga) if saga.status == OrderStatus::Failed => Some("which FAILED".to_owned()),
            Some(saga) if saga.order.coupon_id.as_deref() != Some(code.as_str()) => {
                Some(format!("which asked for coupon {:?}", saga.order.coupon_id))
            }
            // Completed (fine) or in flight (listed as unsettled).
            Some(_) => None,
        };
        if let Some(problem) = problem {
            push(
                out,
                CHECK_COUPONS,
                format!("coupon {code} is USED by order {user}, {problem}"),
            );
        }
    }
    for (id, saga) in sorted(orders) {
        let Some(code) = &saga.order.coupon_id else {
            continue;
        };
        match saga.status {
            OrderStatus::Completed => {
                let used_by = state.coupon(code).map(|c| c.used_by);
                let problem = match used_by {
                    None => "which was never issued".to_owned(),
                    Some(Some(user)) if user == id => continue,
                    Some(Some(user)) => format!("which is USED by order {user}"),
                    Some(None) => "which is AVAILABLE".to_owned(),
                };
                push(
                    out,
                    CHECK_COUPONS,
                    format!("order {id} is COMPLETED with coupon {code}, {problem}"),
                );
            }
            OrderStatus::Failed if !state.orders.contains_key(&id) => push(
                out,
                CHECK_COUPONS,
                format!("order {id} is FAILED but coupon never answered it"),
            ),
            _ => {}
        }
    }
}

/// Payments: approved for the order's amount iff the order completed; settled iff it failed.
pub fn payments(orders: &Orders, state: &PaymentState, out: &mut Vec<Violation>) {
    use payment::domain::PaymentStatus as P;
    for (id, saga) in sorted(orders) {
        let payment = state.payment(id);
        let amount = saga.order.amount;
        let problem = match (saga.status, payment) {
            (OrderStatus::Completed, Some(p)) if p.status == P::Approved && p.amount == amount => {
                None
            }
            (OrderStatus::Completed, Some(p)) if p.status == P::Approved => Some(format!(
                "COMPLETED for {amount} but its payment approved {}",
                p.amount
            )),
            (OrderStatus::Completed, Some(p)) => {
                Some(format!("COMPLETED but its payment is {}", p.status))
            }
            (OrderStatus::Completed, None) => Some("COMPLETED without a payment".to_owned()),
            (OrderStatus::Failed, Some(p))
                if matches!(p.status, P::Cancelled | P::Declined | P::Tombstoned) =>
            {
                None
            }
            (OrderStatus::Failed, Some(p)) => Some(format!(
                "FAILED but its payment of {} is {}",
                p.amount, p.status
            )),
            (OrderStatus::Failed, None) => Some("FAILED but payment never answered it".to_owned()),
            _ => None,
        };
        if let Some(problem) = problem {
            push(out, CHECK_PAYMENTS, format!("order {id} is {problem}"));
        }
    }
    for (id, p) in by_id(state.payments.iter()) {
        let charged = matches!(p.status, P::Approved | P::CancelFailed | P::Requested);
        if charged && !orders.orders.contains_key(&id) {
            push(
                out,
                CHECK_PAYMENTS,
                format!(
                    "payment of {} for order {id} is {}, but the order log does not know the order",
                    p.amount, p.status
                ),
            );
        }
    }
}

/// The data platform received each completed order exactly once, and nothing else.
pub fn dataplatform(orders: &Orders, received: &Received, out: &mut Vec<Violation>) {
    for line in &received.unreadable {
        push(
            out,
            CHECK_DATAPLATFORM,
            format!("line {line} of {DATAPLATFORM_FILE} has no readable orderId"),
        );
    }
    for (id, saga) in sorted(orders) {
        if saga.status != OrderStatus::Completed {
            continue;
        }
        match received.lines.get(&id).copied().unwrap_or(0) {
            1 => {}
            // Not delivered yet: listed as unsettled, waiting for the data platform.
            0 if !saga.data_platform_delivered => {}
            0 => push(
                out,
                CHECK_DATAPLATFORM,
                format!(
                "order {id} is recorded as delivered, but {DATAPLATFORM_FILE} has no line for it"
            ),
            ),
            n => push(
                out,
                CHECK_DATAPLATFORM,
                format!("order {id} reached the data platform {n} times"),
            ),
        }
    }
    for (id, lines) in &received.lines {
        let problem = match orders.orders.get(id).map(|saga| saga.status) {
            Some(OrderStatus::Completed) => continue,
            Some(status) => format!("which is {status}"),
            None => "which the order log does not know".to_owned(),
        };
        push(
            out,
            CHECK_DATAPLATFORM,
            format!("the data platform received order {id} ({lines} lines), {problem}"),
        );
    }
}

/// What a ledger comparison calls things in its messages.
struct Labels {
    check: &'static str,
    key: &'static str,
    actual: &'static str,
    credited: &'static str,
}

const STOCK_LABELS: Labels = Labels {
    check: CHECK_STOCK,
    key: "sku",
    actual: "available",
    credited: "restocked",
};

const POINT_LABELS: Labels = Labels {
    check: CHECK_POINTS,
    key: "user",
    actual: "balance",
    credited: "credited",
};

/// What left each key's shelf or balance: for completed orders, and held by orders in flight.
#[derive(Debug, Default)]
struct Ledger {
    taken: Amounts,
    held: Amounts,
}

impl Ledger {
    fn take(&mut self, key: &str, amount: u64) {
        add(&mut self.taken, key, amount);
    }

    fn hold(&mut self, key: &str, amount: u64) {
        add(&mut self.held, key, amount);
    }

    fn take_all(&mut self, lines: &[(String, u64)]) {
        for (key, amount) in lines {
            self.take(key, *amount);
        }
    }

    fn hold_all(&mut self, lines: &[(String, u64)]) {
        for (key, amount) in lines {
            self.hold(key, *amount);
        }
    }

    /// Every key: actual == credited - taken - held.
    fn compare(
        &self,
        labels: &Labels,
        credited: &Amounts,
        actual: &Amounts,
        out: &mut Vec<Violation>,
    ) {
        let mut keys: Vec<&String> = credited
            .keys()
            .chain(actual.keys())
            .chain(self.taken.keys())
            .chain(self.held.keys())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let get = |map: &Amounts| i128::from(map.get(key).copied().unwrap_or(0));
            let (credited, taken, held) = (get(credited), get(&self.taken), get(&self.held));
            let (actual, expected) = (get(actual), credited - taken - held);
            if actual != expected {
                push(out, labels.check, format!(
                    "{} {key}: {} {actual}, expected {expected} ({} {credited} - {taken} by completed orders - {held} held by unsettled orders)",
                    labels.key, labels.actual, labels.credited
                ));
            }
        }
    }
}

fn add(map: &mut Amounts, key: &str, amount: u64) {
    let total = map.entry(key.to_owned()).or_insert(0);
    *total = total.saturating_add(amount);
}

/// The order's items as stock records a reservation: per SKU, summed, sorted by SKU.
fn lines_of(saga: &OrderSaga) -> Vec<(String, u64)> {
    let mut lines = Amounts::new();
    for item in &saga.order.items {
        add(&mut lines, &item.sku, u64::from(item.qty));
    }
    lines.into_iter().collect()
}

/// Orders oldest first, so reports are stable.
fn sorted(orders: &Orders) -> Vec<(Uuid, &OrderSaga)> {
    let mut all: Vec<(Uuid, &OrderSaga)> = orders.orders.iter().map(|(id, s)| (*id, s)).collect();
    all.sort_by_key(|(id, saga)| (saga.order.placed_at_ms, *id));
    all
}

/// A participant's per-order map in id order, so reports are stable.
fn by_id<'a, T: 'a>(entries: impl Iterator<Item = (&'a Uuid, &'a T)>) -> Vec<(Uuid, &'a T)> {
    let mut all: Vec<(Uuid, &T)> = entries.map(|(id, v)| (*id, v)).collect();
    all.sort_by_key(|(id, _)| *id);
    all
}

/// Whether a participant still holds what an order took: its part is done, or undoing it failed.
fn holds(status: ParticipantOrderStatus) -> bool {
    matches!(
        status,
        ParticipantOrderStatus::Succeeded | ParticipantOrderStatus::CompensationFailed
    )
}

/// A participant's entries that still hold something for an order the order log does not know,
/// in id order.
fn held_for_unknown_orders<'a, E: OrderEntry>(
    orders: &Orders,
    entries: &'a contract::ledger::Orders<E>,
) -> Vec<(Uuid, &'a E)> {
    by_id(entries.iter())
        .into_iter()
        .filter(|(id, entry)| !orders.orders.contains_key(id) && holds(entry.status()))
        .collect()
}

fn push(out: &mut Vec<Violation>, check: &'static str, detail: String) {
    out.push(Violation { check, detail });
}
