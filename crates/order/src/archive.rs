//! Settled orders on disk: the order service's indexes in its own log, and sagas rebuilt from
//! the log on demand.
//!
//! The live state holds only the orders that can still change (`domain::Orders`); everything
//! else is answered from the log's sled store:
//! - an order's saga: its stream (`order-<id>`) folded by [`crate::domain::saga_of`];
//! - lookups, as index entries committed with the events they describe (`eventlog::IndexEntry`):
//!   trace id -> order id, `Idempotency-Key` -> order id, order id -> placement time and buyer;
//! - listings, newest first: every order by placement time, per buyer, and per final status
//!   (COMPLETED, FAILED: a status an order never leaves, written in the commit that reaches
//!   it). Orders in the other statuses are all in the live state, so listings by those statuses
//!   never touch history.
//!
//! Listing keys end in `<placedAtMs: u64 BE><orderId: 16 bytes>`, so bytewise order is
//! `(placedAtMs, orderId)` order, the order of the listing's cursor.

use eventlog::live::decode_event;
use eventlog::{EventStore, IndexEntry};
use uuid::Uuid;

use eventlog::domain::Domain as _;

use crate::domain::{saga_of, stream_of, Order, OrderEvent, OrderSaga, OrderStatus};

/// Trace id -> order id.
pub const INDEX_TRACE: &str = "order.trace";
/// `Idempotency-Key` -> order id.
pub const INDEX_IDEMPOTENCY: &str = "order.idempotency";
/// Order id -> `<placedAtMs BE><userId>`: what a later commit of the order needs for its keys.
pub const INDEX_FACTS: &str = "order.facts";
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

/// What never changes about an order and what its later index keys are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// When it was placed.
    pub placed_at_ms: u64,
    /// The buyer.
    pub user_id: String,
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
pub fn placed_entries(
    order_id: Uuid,
    facts: &OrderFacts,
    trace_id: &str,
    idempotency_key: Option<&str>,
) -> Vec<IndexEntry> {
    let at = position(facts.placed_at_ms, order_id);
    let id = order_id.as_bytes().to_vec();
    let mut entries = vec![
        IndexEntry::new(INDEX_TRACE, trace_id.as_bytes().to_vec(), id.clone()),
        IndexEntry::new(
            INDEX_FACTS,
            id.clone(),
            concat(&[&facts.placed_at_ms.to_be_bytes(), facts.user_id.as_bytes()]),
        ),
        IndexEntry::new(INDEX_PLACED, at.to_vec(), Vec::new()),
        IndexEntry::new(
            INDEX_USER,
            concat(&[&user_part(&facts.user_id), &at]),
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

/// Index entries of a commit that may take the order to a final status: each written only if
/// the commit holds the event that reaches it (`Completed` -> COMPLETED, `Compensated` ->
/// FAILED), so they are planned before the decision and land exactly with it.
pub fn final_status_entries(order_id: Uuid, facts: &OrderFacts) -> Vec<IndexEntry> {
    let at = position(facts.placed_at_ms, order_id);
    let user = user_part(&facts.user_id);
    [
        (OrderStatus::Completed, "Completed"),
        (OrderStatus::Failed, "Compensated"),
    ]
    .into_iter()
    .filter_map(|(status, event_type)| Some((final_code(status)?, event_type)))
    .flat_map(|(code, event_type)| {
        [
            IndexEntry::new(INDEX_STATUS, concat(&[&[code], &at]), Vec::new())
                .only_with(event_type),
            IndexEntry::new(
                INDEX_USER_STATUS,
                concat(&[&[code], &user, &at]),
                Vec::new(),
            )
            .only_with(event_type),
        ]
    })
    .collect()
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

/// An order's placement time and buyer.
pub fn facts(store: &EventStore, order_id: Uuid) -> eventlog::Result<Option<OrderFacts>> {
    let Some(value) = store.index_get(INDEX_FACTS, order_id.as_bytes())? else {
        return Ok(None);
    };
    if value.len() < 8 {
        return Ok(None);
    }
    let (ms, user) = value.split_at(8);
    Ok(Some(OrderFacts {
        placed_at_ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
        user_id: String::from_utf8_lossy(user).into_owned(),
    }))
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
                first_order = Some(order.order_id);
            }
            break;
        }
    }
    match first_order {
        Some(order_id) if facts(store, order_id)?.is_none() => {}
        _ => return Ok(0),
    }
    // Final statuses met (going back in time) whose order's placement is still to come.
    let mut finals: std::collections::HashMap<Uuid, &'static str> = Default::default();
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
                    let facts = OrderFacts {
                        placed_at_ms: order.placed_at_ms,
                        user_id: order.user_id.clone(),
                    };
                    if let Some(event_type) = finals.remove(&order.order_id) {
                        entries.extend(
                            final_status_entries(order.order_id, &facts)
                                .into_iter()
                                .filter(|e| e.only_with_event.as_deref() == Some(event_type))
                                .map(|mut e| {
                                    e.only_with_event = None;
                                    e
                                }),
                        );
                    }
                    entries.extend(placed_entries(
                        order.order_id,
                        &facts,
                        &trace_id,
                        idempotency_key.as_deref(),
                    ));
                }
                event @ (OrderEvent::Completed { .. } | OrderEvent::Compensated { .. }) => {
                    finals.insert(event.order_id(), Order::event_type(&event));
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

    #[test]
    fn only_final_statuses_have_a_status_index() {
        assert!(Listing::new(Some(OrderStatus::Pending), None).is_none());
        assert!(Listing::new(Some(OrderStatus::NeedsAttention), Some("u")).is_none());
        assert!(Listing::new(Some(OrderStatus::Failed), Some("u")).is_some());
        assert!(Listing::new(None, None).is_some());
    }
}
