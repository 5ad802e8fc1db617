//! AUDIT: an offline check that the five services' event logs tell one consistent story.
//!
//! Works on stopped services only (sled locks a data dir while a service runs).
//!
//! - [`logs`]: opening each domain's log, verifying it and folding it into state.
//! - [`checks`]: the cross-domain checks over the folded states (pure, no I/O).
//! - [`dataplatform`]: reading what the data platform file sink received.
//! - [`report`]: the report's types and its human-readable rendering.
//! - this module: [`audit`], which runs all of them, and [`AuditError`].

pub mod checks;
pub mod dataplatform;
pub mod logs;
pub mod report;

use std::path::{Path, PathBuf};

pub use report::{AuditReport, LogCheck, OrderCounts, Unsettled, Violation};

/// Result alias of the audit crate.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// What the audit runs against.
#[derive(Debug, Clone)]
pub struct AuditInput {
    /// Holds the `order/ payment/ stock/ coupon/ point/` data dirs (as `scripts/run.sh` lays them out).
    pub data_root: PathBuf,
}

/// Why the audit could not run at all (findings about the data are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The data root does not exist.
    #[error("no data root at {0}")]
    MissingRoot(PathBuf),
    /// A domain's data directory does not exist.
    #[error("no {domain} data directory at {path}")]
    MissingDir {
        /// The domain.
        domain: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// A domain's log could not be opened or read for a reason other than corruption.
    #[error("{domain} log at {path} (is the service still running? stop it first): {source}")]
    Store {
        /// The domain.
        domain: &'static str,
        /// Its data directory.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: eventlog::Error,
    },
    /// The data platform file exists but cannot be read.
    #[error("reading {path}: {source}")]
    DataPlatform {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Audits the data dirs under `input.data_root`; `now_ms` dates the ages of unsettled orders.
pub fn audit(input: &AuditInput, now_ms: u64) -> Result<AuditReport> {
    let root = input.data_root.as_path();
    if !root.is_dir() {
        return Err(AuditError::MissingRoot(root.to_path_buf()));
    }
    // The whole history at once: the service's own state keeps only unsettled orders.
    let order = logs::load::<order::domain::OrderHistory>(root, logs::ORDER, logs::no_tally)?;
    let payment = logs::load::<payment::domain::Payment>(root, logs::PAYMENT, logs::no_tally)?;
    let stock = logs::load::<stock::domain::Stock>(root, logs::STOCK, logs::restocked)?;
    let coupon = logs::load::<coupon::domain::Coupon>(root, logs::COUPON, logs::no_tally)?;
    let point = logs::load::<point::domain::Point>(root, logs::POINT, logs::credited)?;
    let received = dataplatform::read(&dataplatform_path(root))?;

    let mut report = AuditReport {
        logs: vec![
            order.check,
            payment.check,
            stock.check,
            coupon.check,
            point.check,
        ],
        ..AuditReport::default()
    };
    let Some(orders) = order.state else {
        // Without the order log nothing else can be judged; the log check says why.
        return Ok(report);
    };
    report.orders = checks::count(&orders);
    report.unsettled = checks::unsettled(&orders, now_ms);
    let out = &mut report.violations;
    if let Some(state) = &stock.state {
        checks::stock(&orders, state, &stock.totals, out);
    }
    if let Some(state) = &point.state {
        checks::points(&orders, state, &point.totals, out);
    }
    if let Some(state) = &coupon.state {
        checks::coupons(&orders, state, out);
    }
    if let Some(state) = &payment.state {
        checks::payments(&orders, state, out);
    }
    checks::dataplatform(&orders, &received, out);
    Ok(report)
}

/// Where the order service's file sink writes completed orders.
pub fn dataplatform_path(data_root: &Path) -> PathBuf {
    data_root
        .join(logs::ORDER)
        .join(dataplatform::DATAPLATFORM_FILE)
}
