//! Settled orders on disk: the order service's indexes in its own log, and sagas rebuilt from
//! the log on demand.
//!
//! The live state holds only the orders that can still change (`domain::Orders`); everything
//! else is answered from the log's sled store:
//! - an order's saga: its stream (`order-<id>`) folded by [`crate::domain::saga_of`];
//! - lookups, as index entries committed with the events they describe ([`index_entries`], the
//!   order domain's `Domain::index_entries`): trace id -> order id, `Idempotency-Key` -> order id;
//! - listings, newest first: every order by placement time, per buyer, and per final status
//!   (COMPLETED, FAILED: a status an order never leaves, written in the commit that reaches
//!   it). Orders in the other statuses are all in the live state, so listings by those statuses
//!   never touch history.
//!
//! Listing keys end in `<placedAtMs: u64 BE><orderId: 16 bytes>`, so bytewise order is
//! `(placedAtMs, orderId)` order, the order of the listing's cursor.

use contract::OrderPlaced;
use eventlog::live::decode_event;
use eventlog::{EventStore, IndexEntry};
use uuid::Uuid;

use crate::domain::{saga_of, stream_of, Order, OrderEvent, OrderSaga, OrderStatus, Orders};

/// Trace id -> order id.
pub const INDEX_TRACE: &str = "order.trace";
/// `Idempotency-Key` -> order id.
pub const INDEX_IDEMPOTENCY: &str = "order.idempotency";
/// `<placedAtMs><orderId>`: every order.
pub const INDEX_PLACED: &str = "order.placed";
/// `<user><placedAtMs><orderId>`: every order of a buyer.
pub const INDEX_USER: &str = "order.user";
/// `<status><placedAtMs><orderId>`: every order in a final status.
pub const INDEX_STATUS: &str = "order.status";
/// `<status><user><placedAtMs><orderId>`: every order of a buyer in a final status.
pub const INDEX_USER_STATUS: &str = "order.user-status";

/// Records [`reindex`] reads at once (going back from the head).
const REINDEX_BATCH: usize = 4_096;

/// Dedup key of a placement with an `Idempotency-Key`: a reused key is answered from the
/// dedup record (and [`INDEX_IDEMPOTENCY`]) whether or not its order is still in memory.
pub fn placement_dedup_key(idempotency_key: &str) -> String {
    format!("idempotency-key/order/{idempotency_key}")
}

/// The index entries of an order's events, given the orders they were decided on (before they
/// apply): a placement's lookups and listing keys, and the final status's listing keys with the
/// event that reaches it (`Completed` -> COMPLETED, `Compensated` -> FAILED). Those two events
/// are only ever decided on an order in the state: a settled order never reaches a final status
/// again, and only settled orders leave the state.
pub fn index_entries(state: &Orders, events: &[OrderEvent]) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for event in events {
        let final_status = match event {
            OrderEvent::Placed {
                order,
                trace_id,
                idempotency_key,
            } => {
                entries.extend(placed_entries(order, trace_id, idempotency_key.as_deref()));
                continue;
            }
            OrderEvent::Completed { .. } => OrderStatus::Completed,
            OrderEvent::Compensated { .. } => OrderStatus::Failed,
            _ => continue,
        };
        let order_id = event.order_id();
        if let Some(saga) = state.orders.get(&order_id) {
            entries.extend(final_status_entries(&saga.order, final_status));
        }
    }
    entries
}

/// The position of an order in newest-first listings.
fn position(placed_at_ms: u64, order_id: Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&placed_at_ms.to_be_bytes());
    key[8..].copy_from_slice(order_id.as_bytes());
    key
}

/// Parses the position at the end of a listing key.
fn position_of(key: &[u8]) -> Option<(u64, Uuid)> {
    let tail = key.len().checked_sub(24).map(|at| &key[at..])?;
    let (ms, id) = tail.split_at(8);
    Some((
        u64::from_be_bytes(ms.try_into().ok()?),
        Uuid::from_slice(id).ok()?,
    ))
}

/// The buyer's part of a key: length-prefixed, so one buyer's keys never run into another's.
fn user_part(user_id: &str) -> Vec<u8> {
    let bytes = user_id.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// The one-byte code of a final status in keys; `None` for statuses an order leaves again.
fn final_code(status: OrderStatus) -> Option<u8> {
    match status {
        OrderStatus::Completed => Some(b'C'),
        OrderStatus::Failed => Some(b'F'),
        OrderStatus::Pending | OrderStatus::Compensating | OrderStatus::NeedsAttention => None,
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Index entries of a placement, committed with its `Placed` event.
fn placed_entries(
    order: &OrderPlaced,
    trace_id: &str,
    idempotency_key: Option<&str>,
) -> Vec<IndexEntry> {
    let at = position(order.placed_at_ms, order.order_id);
    let id = order.order_id.as_bytes().to_vec();
    let mut entries = vec![
        IndexEntry::new(INDEX_TRACE, trace_id.as_bytes().to_vec(), id.clone()),
        IndexEntry::new(INDEX_PLACED, at.to_vec(), Vec::new()),
        IndexEntry::new(
            INDEX_USER,
            concat(&[&user_part(&order.user_id), &at]),
            Vec::new(),
        ),
    ];
    if let Some(key) = idempotency_key {
        entries.push(IndexEntry::new(
            INDEX_IDEMPOTENCY,
            key.as_bytes().to_vec(),
            id,
        ));
    }
    entries
}

/// Listing keys of an order in a final status (none for a status an order leaves again).
fn final_status_entries(order: &OrderPlaced, status: OrderStatus) -> Vec<IndexEntry> {
    let Some(code) = final_code(status) else {
        return Vec::new();
    };
    let at = position(order.placed_at_ms, order.order_id);
    let user = user_part(&order.user_id);
    vec![
        IndexEntry::new(INDEX_STATUS, concat(&[&[code], &at]), Vec::new()),
        IndexEntry::new(
            INDEX_USER_STATUS,
            concat(&[&[code], &user, &at]),
            Vec::new(),
        ),
    ]
}

fn uuid_value(value: Option<Vec<u8>>) -> Option<Uuid> {
    value.and_then(|v| Uuid::from_slice(&v).ok())
}

/// The order placed with this trace id.
pub fn order_by_trace(store: &EventStore, trace_id: &str) -> eventlog::Result<Option<Uuid>> {
    Ok(uuid_value(
        store.index_get(INDEX_TRACE, trace_id.as_bytes())?,
    ))
}

/// The order placed with this `Idempotency-Key`.
pub fn order_by_idempotency_key(store: &EventStore, key: &str) -> eventlog::Result<Option<Uuid>> {
    Ok(uuid_value(
        store.index_get(INDEX_IDEMPOTENCY, key.as_bytes())?,
    ))
}

/// An order's saga rebuilt from its stream in the log; `None` if no such order was placed.
///
/// Reads what the writer applied: a caller that replies with it waits for durability first.
pub fn archived_saga(store: &EventStore, order_id: Uuid) -> eventlog::Result<Option<OrderSaga>> {
    let records = store.read_stream(&stream_of(order_id))?;
    let events = records
        .iter()
        .map(decode_event::<Order>)
        .collect::<eventlog::Result<Vec<_>>>()?;
    Ok(saga_of(&events))
}

/// Writes the index entries of every order already in the log, when the log was written
/// before the indexes existed: its settled orders are then found by trace, `Idempotency-Key`
/// and listings again. Returns the number of entries written (0 when the log's first order
/// is indexed already, the case of every log written since).
///
/// It goes from the newest record to the oldest, so the first order gets its entries last:
/// a run cut short by a crash leaves it unindexed and the next start runs again. Entries are a
/// pure function of the events, so writing one twice (a rerun, a placement racing the run)
/// changes nothing.
pub async fn reindex(store: &EventStore) -> eventlog::Result<u64> {
    let head = store.head();
    let mut first_order = None;
    for record in store.read_all(1, eventlog::ReplayBound::default()) {
        let record = record?;
        if record.stream.starts_with("order-") {
            if let OrderEvent::Placed { order, .. } = decode_event::<Order>(&record)? {
                first_order = Some((order.placed_at_ms, order.order_id));
            }
            break;
        }
    }
    match first_order {
        Some((placed_at_ms, order_id))
            if store
                .index_get(INDEX_PLACED, &position(placed_at_ms, order_id))?
                .is_none() => {}
        _ => return Ok(0),
    }
    // Final statuses met (going back in time) whose order's placement is still to come.
    let mut finals: std::collections::HashMap<Uuid, OrderStatus> = Default::default();
    let mut written = 0u64;
    let mut upto = head;
    while upto > 0 {
        let from = upto.saturating_sub(REINDEX_BATCH as u64 - 1).max(1);
        let bound = eventlog::ReplayBound {
            upto_seq: Some(upto),
            upto_time_ms: None,
        };
        let records = store
            .read_all(from, bound)
            .collect::<eventlog::Result<Vec<_>>>()?;
        let mut entries: Vec<IndexEntry> = Vec::new();
        for record in records.iter().rev() {
            if !record.stream.starts_with("order-") {
                continue;
            }
            match decode_event::<Order>(record)? {
                OrderEvent::Placed {
                    order,
                    trace_id,
                    idempotency_key,
                } => {
                    if let Some(status) = finals.remove(&order.order_id) {
                        entries.extend(final_status_entries(&order, status));
                    }
                    entries.extend(placed_entries(
                        &order,
                        &trace_id,
                        idempotency_key.as_deref(),
                    ));
                }
                OrderEvent::Completed { order_id, .. } => {
                    finals.insert(order_id, OrderStatus::Completed);
                }
                OrderEvent::Compensated { order_id, .. } => {
                    finals.insert(order_id, OrderStatus::Failed);
                }
                _ => {}
            }
        }
        if !entries.is_empty() {
            written += entries.len() as u64;
            store
                .commit(eventlog::Commit {
                    index: entries,
                    ..eventlog::Commit::default()
                })
                .await?;
        }
        upto = from - 1;
    }
    Ok(written)
}

/// Which index a listing reads, and the key prefix within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    index: &'static str,
    prefix: Vec<u8>,
}

impl Listing {
    /// Orders of every status, or only of `status` if it is final (COMPLETED, FAILED), of one
    /// buyer or all. `None` for a status an order can leave again: those orders are all in
    /// the live state, which lists them instead.
    pub fn new(status: Option<OrderStatus>, user_id: Option<&str>) -> Option<Self> {
        let code = match status {
            None => None,
            Some(status) => Some(final_code(status)?),
        };
        let user = user_id.map(user_part);
        let (index, prefix) = match (code, user) {
            (None, None) => (INDEX_PLACED, Vec::new()),
            (None, Some(user)) => (INDEX_USER, user),
            (Some(code), None) => (INDEX_STATUS, vec![code]),
            (Some(code), Some(user)) => (INDEX_USER_STATUS, concat(&[&[code], &user])),
        };
        Some(Self { index, prefix })
    }

    /// Up to `limit` orders, newest first: placed before `before` (exclusive, a position
    /// `(placedAtMs, orderId)`), before `to_ms`, and at or after `from_ms`. Reads only the
    /// entries it returns (plus one).
    pub fn page(
        &self,
        store: &EventStore,
        before: Option<(u64, Uuid)>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
        limit: usize,
    ) -> eventlog::Result<Vec<(u64, Uuid)>> {
        let mut upper: Option<Vec<u8>> = to_ms.map(|to| concat(&[&self.prefix, &to.to_be_bytes()]));
        if let Some((ms, id)) = before {
            let cursor = concat(&[&self.prefix, &position(ms, id)]);
            upper = Some(match upper {
                Some(to) if to < cursor => to,
                _ => cursor,
            });
        }
        let entries = store.index_scan(self.index, &self.prefix, upper.as_deref(), true, limit)?;
        Ok(entries
            .iter()
            .filter_map(|(key, _)| position_of(key))
            .take_while(|(ms, _)| from_ms.is_none_or(|from| *ms >= from))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_like_the_listing_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(position(5, b) < position(6, a));
        assert!(position(5, a) < position(5, b));
        assert_eq!(position_of(&position(7, b)), Some((7, b)));
        assert_eq!(position_of(&[1, 2, 3]), None);
    }

    #[test]
    fn one_buyers_keys_never_run_into_anothers() {
        // "ab" followed by a position must not fall under the prefix of "a".
        assert!(!user_part("ab").starts_with(&user_part("a")));
    }

    fn names(entries: &[IndexEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.index.as_str()).collect()
    }

    /// The orders after `events`, as the running service holds them.
    fn given(events: &[OrderEvent]) -> Orders {
        eventlog::domain::fold::<Order>(events)
    }

    fn placed(order_id: Uuid, idempotency_key: Option<&str>) -> OrderEvent {
        OrderEvent::Placed {
            order: contract::fixtures::placed(order_id),
            trace_id: "trace-1".into(),
            idempotency_key: idempotency_key.map(str::to_owned),
        }
    }

    #[test]
    fn a_placement_is_found_by_trace_key_time_and_buyer() {
        let id = Uuid::from_u128(7);
        // Given no orders, when an order is placed with an Idempotency-Key
        let entries = index_entries(&given(&[]), &[placed(id, Some("k-1"))]);
        // Then it is found by trace, key, time and buyer, and listed under no status yet
        assert_eq!(
            names(&entries),
            [INDEX_TRACE, INDEX_PLACED, INDEX_USER, INDEX_IDEMPOTENCY]
        );
        let at = position(contract::fixtures::PLACED_AT_MS, id);
        assert_eq!(entries[0].key, b"trace-1");
        assert_eq!(entries[0].value, id.as_bytes());
        assert_eq!(entries[1].key, at);
        assert_eq!(entries[2].key, concat(&[&user_part("user-1"), &at]));
        assert_eq!(entries[3].key, b"k-1");
        // ... and without a key, it is not found by one
        let entries = index_entries(&given(&[]), &[placed(id, None)]);
        assert!(!names(&entries).contains(&INDEX_IDEMPOTENCY));
    }

    #[test]
    fn a_final_status_is_listed_with_the_event_that_reaches_it() {
        let id = Uuid::from_u128(8);
        let state = given(&[placed(id, None)]);
        let at = position(contract::fixtures::PLACED_AT_MS, id);
        let user = user_part("user-1");
        for (event, code) in [
            (
                OrderEvent::Completed {
                    order_id: id,
                    at_ms: 2,
                },
                b'C',
            ),
            (
                OrderEvent::Compensated {
                    order_id: id,
                    at_ms: 2,
                },
                b'F',
            ),
        ] {
            // When the order reaches COMPLETED or FAILED
            let entries = index_entries(&state, &[event]);
            // Then it is listed under that status, for everyone and for its buyer
            assert_eq!(names(&entries), [INDEX_STATUS, INDEX_USER_STATUS]);
            assert_eq!(entries[0].key, concat(&[&[code], &at]));
            assert_eq!(entries[1].key, concat(&[&[code], &user, &at]));
        }
        // ... and a status it leaves again lists it nowhere
        let failed = OrderEvent::Failed {
            order_id: id,
            reason: "r".into(),
            at_ms: 2,
        };
        assert!(index_entries(&state, &[failed]).is_empty());
    }

    #[test]
    fn only_final_statuses_have_a_status_index() {
        assert!(Listing::new(Some(OrderStatus::Pending), None).is_none());
        assert!(Listing::new(Some(OrderStatus::NeedsAttention), Some("u")).is_none());
        assert!(Listing::new(Some(OrderStatus::Failed), Some("u")).is_some());
        assert!(Listing::new(None, None).is_some());
    }
}
