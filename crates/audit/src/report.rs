//! The audit's findings and their human-readable rendering.

use std::fmt::Write as _;

use order::domain::OrderStatus;
use uuid::Uuid;

/// Everything the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Orders by status.
    pub orders: OrderCounts,
    /// Orders whose saga is not over (or whose delivery to the data platform is not recorded).
    pub unsettled: Vec<Unsettled>,
    /// Cross-domain inconsistencies.
    pub violations: Vec<Violation>,
    /// One entry per domain log, in the order order, payment, stock, coupon, point.
    pub logs: Vec<LogCheck>,
}

/// Orders by status, from the order log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderCounts {
    /// Every order placed.
    pub total: usize,
    /// `COMPLETED`.
    pub completed: usize,
    /// `FAILED`.
    pub failed: usize,
    /// `NEEDS_ATTENTION`.
    pub needs_attention: usize,
    /// `PENDING`.
    pub pending: usize,
    /// `COMPENSATING`.
    pub compensating: usize,
}

/// An order that is not settled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    /// The order.
    pub order_id: Uuid,
    /// Its saga status.
    pub status: OrderStatus,
    /// Time since it was placed, at the audit's `now_ms`.
    pub age_ms: u64,
    /// The domains whose answer is missing (`dataplatform` for an unrecorded delivery).
    pub waiting_for: Vec<String>,
    /// Why an operator is needed, or why the order failed, if known.
    pub reason: Option<String>,
}

/// One inconsistency between the domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which check found it (one of the `checks::CHECK_*` names).
    pub check: &'static str,
    /// What does not hold, naming the order, SKU, user or coupon.
    pub detail: String,
}

/// Whether one domain's log is intact and folds into a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// The domain.
    pub domain: &'static str,
    /// Records in the log (verified ones, or the head when verification failed).
    pub records: u64,
    /// Hash chain, sequences and indexes verified and the fold succeeded.
    pub ok: bool,
    /// What was checked, or what failed.
    pub detail: String,
}

impl AuditReport {
    /// No violations, every log ok, nothing unsettled.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.unsettled.is_empty() && self.logs.iter().all(|l| l.ok)
    }

    /// The logs that failed their check.
    pub fn bad_logs(&self) -> impl Iterator<Item = &LogCheck> {
        self.logs.iter().filter(|l| !l.ok)
    }

    /// A human-readable multi-line report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_orders(&mut out);
        self.render_logs(&mut out);
        self.render_unsettled(&mut out);
        self.render_violations(&mut out);
        self.render_verdict(&mut out);
        out
    }

    fn render_orders(&self, out: &mut String) {
        let c = &self.orders;
        let _ = writeln!(
            out,
            "orders: {} total: {} completed, {} failed, {} needs attention, {} pending, {} compensating",
            c.total, c.completed, c.failed, c.needs_attention, c.pending, c.compensating
        );
    }

    fn render_logs(&self, out: &mut String) {
        let _ = writeln!(out, "logs:");
        for log in &self.logs {
            let verdict = if log.ok { "ok" } else { "INVALID" };
            let _ = writeln!(
                out,
                "  {:<8} {:<7} {:>7} records  {}",
                log.domain, verdict, log.records, log.detail
            );
        }
    }

    fn render_unsettled(&self, out: &mut String) {
        let _ = writeln!(out, "unsettled: {}", self.unsettled.len());
        for order in &self.unsettled {
            let _ = write!(
                out,
                "  {} {} for {}, waiting for {}",
                order.order_id,
                order.status,
                age(order.age_ms),
                list_or_none(&order.waiting_for)
            );
            if let Some(reason) = &order.reason {
                let _ = write!(out, " ({reason})");
            }
            let _ = writeln!(out);
        }
    }

    fn render_violations(&self, out: &mut String) {
        let _ = writeln!(out, "violations: {}", self.violations.len());
        for violation in &self.violations {
            let _ = writeln!(out, "  [{}] {}", violation.check, violation.detail);
        }
    }

    fn render_verdict(&self, out: &mut String) {
        if self.is_clean() {
            let _ = writeln!(out, "verdict: CLEAN");
        } else {
            let _ = writeln!(
                out,
                "verdict: NOT CLEAN ({} violations, {} unsettled, {} logs invalid)",
                self.violations.len(),
                self.unsettled.len(),
                self.bad_logs().count()
            );
        }
    }
}

fn age(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1_000, ms % 1_000)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nobody".to_owned()
    } else {
        items.join(", ")
    }
}
