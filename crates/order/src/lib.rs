//! The order service.
//!
//! - [`archive`]: settled orders on disk: the indexes in the order log and sagas rebuilt from
//!   it on demand (the live state keeps only orders that can still change).
//! - [`domain`]: the pure saga core (`decide`/`evolve`): statuses, outcomes, deadline, re-drive,
//!   escalation, data platform delivery (parked/resumed).
//! - [`handler`]: participant outcomes in; the supervisor (deadline, re-drive, escalation: pure
//!   `next_action`); the data platform forwarder (pure `forward_step`, at-least-once).
//! - [`api`]: HTTP: place orders, search and page them, timelines by orderId and traceId, and the
//!   operator console (`console/`: HTML, CSS and JS served from the binary).
//! - [`admin`]: operator routes: the dead-letter queue (list, inspect, re-drive, discard), the
//!   ops alerts feed and the system's health.
//! - [`cli`]: the `order dlq ...` client of the admin routes.
//! - [`config`]: command line and settings.
//! - [`observe`]: the saga metrics (orders by status, saga duration, re-drives).
//! - [`app`]: wiring everything into a running service, and [`app::OrderService`]: `serve` and
//!   the offline commands through the shared `servicekit::cli` path.
//! - [`dataplatform_file`]: the data platform file sink (grouped appends, one fsync per group).
//! - [`waiters`]: wakes `POST /orders?wait=` requests when their order changes.

#[cfg(feature = "service")]
pub mod admin;
#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod app;
pub mod archive;
#[cfg(feature = "service")]
pub mod cli;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod dataplatform_file;
pub mod domain;
#[cfg(feature = "service")]
pub mod handler;
#[cfg(feature = "service")]
pub mod observe;
#[cfg(feature = "service")]
pub mod waiters;
