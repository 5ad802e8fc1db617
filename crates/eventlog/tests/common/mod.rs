//! Fixtures shared by the event log's integration tests: commits shaped like a handler's.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod counter;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventlog::{Commit, OutboxMessage};
use uuid::Uuid;

/// How long a test waits for a condition it polls before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The message id of an order's first `order.placed` (the log treats ids as opaque).
pub(crate) fn placed_msg_id(order_id: Uuid) -> String {
    format!("{order_id}.order.placed")
}

/// The dedup key a handler would record for placing this order (opaque to the log).
pub(crate) fn place_key(order_id: Uuid) -> String {
    format!("{order_id}/order/place")
}

/// The outbox entry a handler would queue for `order.placed` of this order.
pub(crate) fn placed_entry(order_id: Uuid) -> OutboxMessage {
    OutboxMessage {
        subject: "order.placed".to_owned(),
        msg_id: placed_msg_id(order_id),
        headers: vec![("Order-Id".to_owned(), order_id.to_string())],
        payload: order_id.as_bytes().to_vec(),
    }
}

/// What a handler commits for placing this order.
pub(crate) fn handler_commit(order_id: Uuid) -> Commit {
    let (id, payload) = (order_id.to_string(), order_id.as_bytes());
    eventlog::testing_hooks::handler_commit(
        &id,
        payload,
        place_key(order_id),
        placed_entry(order_id),
    )
}

/// Runs the ignored test `name` of this test binary in a child process (to be SIGKILLed), with
/// `dir` in the environment variable `dir_env`; its stdout is piped for the parent to read.
pub(crate) fn spawn_child_test(name: &str, dir_env: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(dir_env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts")
}
