//! Wakes `POST /orders?wait=` requests when their order changes, instead of polling the state.
//!
//! A request registers a [`Waiter`] for its orderId before it first reads the order; the outcome
//! handler calls [`OrderWaiters::notify`] after each of that order's commits is durable, and the
//! request reads again. A wake-up that arrives between the read and the wait is kept (a `Notify`
//! permit), so none is lost. Entries live only while a request waits: the map holds at most one
//! entry per open request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

/// How often a waiting request reads its order anyway: changes made outside the outcome
/// handler (the supervisor's NEEDS_ATTENTION, an operator's retry) do not notify.
pub const WAIT_RECHECK_MS: u64 = 500;

/// [`WAIT_RECHECK_MS`] as a duration.
pub const WAIT_RECHECK: Duration = Duration::from_millis(WAIT_RECHECK_MS);

/// Cheap cloneable registry of the requests waiting on orders.
#[derive(Debug, Clone, Default)]
pub struct OrderWaiters {
    waiting: Arc<Mutex<HashMap<Uuid, Vec<Arc<Notify>>>>>,
}

/// One request's registration; dropping it unregisters.
#[derive(Debug)]
pub struct Waiter {
    order_id: Uuid,
    notify: Arc<Notify>,
    waiters: OrderWaiters,
}

impl OrderWaiters {
    /// Registers interest in an order's next change.
    pub fn watch(&self, order_id: Uuid) -> Waiter {
        let notify = Arc::new(Notify::new());
        self.lock()
            .entry(order_id)
            .or_default()
            .push(notify.clone());
        Waiter {
            order_id,
            notify,
            waiters: self.clone(),
        }
    }

    /// Wakes every request waiting on the order (call once its change is durable).
    pub fn notify(&self, order_id: Uuid) {
        if let Some(waiting) = self.lock().get(&order_id) {
            for notify in waiting {
                notify.notify_one();
            }
        }
    }

    /// Orders with at least one waiting request.
    pub fn orders_waited_on(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Arc<Notify>>>> {
        // A panic while holding this lock leaves the map consistent (every change is one call).
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Waiter {
    /// Resolves at the order's next notification (or at once if one came since the last call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = self.waiters.lock();
        if let Some(list) = waiting.get_mut(&self.order_id) {
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                waiting.remove(&self.order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// A registry with two requests waiting on order `a` and one on another order.
    fn two_on_a_one_on_b() -> (OrderWaiters, Uuid, [Waiter; 3]) {
        let waiters = OrderWaiters::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let requests = [waiters.watch(a), waiters.watch(a), waiters.watch(b)];
        (waiters, a, requests)
    }

    #[test]
    fn a_notification_sent_before_the_wait_is_not_lost() {
        // Given a request registered on an order
        let waiters = OrderWaiters::default();
        let order = Uuid::now_v7();
        let waiter = waiters.watch(order);
        // When the order changes before the request starts waiting
        waiters.notify(order);
        // Then the wait resolves at once
        assert!(waiter.changed().now_or_never().is_some());
    }

    #[test]
    fn only_the_requests_of_the_changed_order_wake() {
        // Given two requests on order a and one on order b
        let (waiters, a, [on_a, also_on_a, on_b]) = two_on_a_one_on_b();
        // When order a changes
        waiters.notify(a);
        // Then both requests on a wake and the one on b does not
        assert!(on_a.changed().now_or_never().is_some());
        assert!(also_on_a.changed().now_or_never().is_some());
        assert!(on_b.changed().now_or_never().is_none());
    }

    #[test]
    fn a_finished_request_leaves_nothing_behind() {
        // Given requests waiting on two orders
        let (waiters, a, [first, second, third]) = two_on_a_one_on_b();
        assert_eq!(waiters.orders_waited_on(), 2);
        // When they finish
        drop(first);
        assert_eq!(waiters.orders_waited_on(), 2);
        drop((second, third));
        // Then the registry is empty, and notifying a finished order is harmless
        assert_eq!(waiters.orders_waited_on(), 0);
        waiters.notify(a);
    }

    #[tokio::test]
    async fn a_waiting_request_wakes_when_its_order_is_notified_from_another_task() {
        // Given a request waiting on an order
        let waiters = OrderWaiters::default();
        let order = Uuid::now_v7();
        let waiter = waiters.watch(order);
        // When another task records the order's change
        let notifier = waiters.clone();
        tokio::spawn(async move { notifier.notify(order) });
        // Then the wait resolves
        waiter.changed().await;
    }
}
