//! Opening one domain's log, verifying it, folding it into state and summing raw events.
//!
//! A corrupt log is a finding (its [`LogCheck`] is not ok and it yields no state), not an error:
//! only a log that cannot be opened for another reason (a running service holds its lock, I/O)
//! stops the audit.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use eventlog::domain::Domain;
use eventlog::live::NOTE_EVENT_TYPE;
use eventlog::{live, EventStore, ReplayBound, StoreConfig};

use crate::report::LogCheck;
use crate::{AuditError, Result};

/// Data dir (and report name) of the order service.
pub const ORDER: &str = "order";
/// Data dir (and report name) of the payment service.
pub const PAYMENT: &str = "payment";
/// Data dir (and report name) of the stock service.
pub const STOCK: &str = "stock";
/// Data dir (and report name) of the coupon service.
pub const COUPON: &str = "coupon";
/// Data dir (and report name) of the point service.
pub const POINT: &str = "point";

/// Picks the `(key, amount)` an event adds to a raw total, if any.
pub type Tally<E> = fn(&E) -> Option<(&str, u64)>;

/// Amounts per key: units per SKU, points per user.
pub type Amounts = BTreeMap<String, u64>;

/// One domain's log as the audit sees it.
#[derive(Debug)]
pub struct Loaded<S> {
    /// Whether the log verified and folded.
    pub check: LogCheck,
    /// The folded state; `None` when the log cannot be trusted.
    pub state: Option<S>,
    /// Raw sums of the tallied events per key (e.g. units restocked per SKU).
    pub totals: Amounts,
}

/// Sums nothing.
pub fn no_tally<E>(_: &E) -> Option<(&str, u64)> {
    None
}

/// Units restocked per SKU.
pub fn restocked(event: &stock::domain::StockEvent) -> Option<(&str, u64)> {
    match event {
        stock::domain::StockEvent::Restocked { sku, qty } => Some((sku.as_str(), *qty)),
        _ => None,
    }
}

/// Points credited per user.
pub fn credited(event: &point::domain::PointEvent) -> Option<(&str, u64)> {
    match event {
        point::domain::PointEvent::Credited { user_id, points } => {
            Some((user_id.as_str(), *points))
        }
        _ => None,
    }
}

/// Opens `<root>/<domain>`, verifies the log, folds it, and sums the events `tally` picks.
pub fn load<D: Domain>(
    root: &Path,
    domain: &'static str,
    tally: Tally<D::Event>,
) -> Result<Loaded<D::State>> {
    let dir = root.join(domain);
    if !dir.is_dir() {
        return Err(AuditError::MissingDir { domain, path: dir });
    }
    let store = match EventStore::open(StoreConfig::new(&dir)) {
        Ok(store) => store,
        Err(err @ eventlog::Error::Corrupt { .. }) => {
            return Ok(invalid(domain, 0, format!("does not open: {err}")))
        }
        Err(source) => {
            return Err(AuditError::Store {
                domain,
                path: dir,
                source,
            })
        }
    };
    let verified = match store.verify() {
        Ok(verified) => verified,
        Err(err) => {
            return Ok(invalid(
                domain,
                store.head(),
                format!("verify failed: {err}"),
            ))
        }
    };
    let state = match fold::<D>(&store) {
        Ok(state) => state,
        Err(reason) => return Ok(invalid(domain, verified.records, reason)),
    };
    let totals = match sum::<D>(&store, tally) {
        Ok(totals) => totals,
        Err(err) => return Ok(invalid(domain, verified.records, err.to_string())),
    };
    let detail = format!(
        "hash chain intact, {} records in {} streams fold into state; {} outbox entries pending",
        verified.records, verified.streams, verified.outbox_pending
    );
    Ok(Loaded {
        check: LogCheck {
            domain,
            records: verified.records,
            ok: true,
            detail,
        },
        state: Some(state),
        totals,
    })
}

/// A log that cannot be trusted: reported, and left out of the cross-checks.
fn invalid<S>(domain: &'static str, records: u64, detail: String) -> Loaded<S> {
    Loaded {
        check: LogCheck {
            domain,
            records,
            ok: false,
            detail,
        },
        state: None,
        totals: BTreeMap::new(),
    }
}

/// Folds the whole log. `evolve` asserts on impossible events, so a panic is a finding too.
fn fold<D: Domain>(store: &EventStore) -> std::result::Result<D::State, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        // From seq 1, never from a snapshot: the audit checks the log itself.
        let mut state = live::rebuild_from_scratch::<D>(store, ReplayBound::default())?.state;
        // The audit judges every order, also those the services keep only in their logs.
        live::hydrate_all::<D>(store, &mut state)?;
        Ok::<_, eventlog::Error>(state)
    })) {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(err)) => Err(format!("does not fold: {err}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(format!("does not fold: impossible event: {message}"))
        }
    }
}

/// Sums the events `tally` picks, per key, straight from the records.
fn sum<D: Domain>(store: &EventStore, tally: Tally<D::Event>) -> eventlog::Result<Amounts> {
    let mut totals = Amounts::new();
    for record in store.read_all(1, ReplayBound::default()) {
        let record = record?;
        if record.event_type == NOTE_EVENT_TYPE {
            continue;
        }
        let event = live::decode_event::<D>(&record)?;
        if let Some((key, amount)) = tally(&event) {
            let total = totals.entry(key.to_owned()).or_insert(0);
            *total = total.saturating_add(amount);
        }
    }
    Ok(totals)
}
