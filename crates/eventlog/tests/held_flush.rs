//! Nothing the store says about a commit runs ahead of its flush: while the writer holds a
//! group between applying and flushing it, its dedup key reads as unseen, its ticket is not
//! durable, and its caller is not answered. One test per binary: the hold is process-wide.

mod common;

use common::handler_commit;
use eventlog::testing_hooks::{eventually, open_store};
use eventlog::testing_hooks::{held_groups, set_hold_flush};
use uuid::Uuid;

#[tokio::test]
async fn an_applied_but_unflushed_commit_is_invisible_until_its_flush() {
    // Given a store whose writer holds its flush
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let order_id = Uuid::from_u128(42);
    let key = common::place_key(order_id);
    set_hold_flush(true);
    let held_before = held_groups();

    // When a commit with a dedup key is applied but not flushed
    let committing = {
        let store = store.clone();
        tokio::spawn(async move { store.commit(handler_commit(order_id)).await })
    };
    eventually(
        std::time::Duration::from_secs(30),
        "the writer holds the group",
        || async { (held_groups() > held_before).then_some(()) },
    )
    .await;
    let ticket = store.last_ticket();

    // Then its dedup key reads as unseen, its ticket is not durable, and its caller waits
    assert!(store.dedup(&key).expect("a dedup lookup").is_none());
    assert!(store.durable().borrow().ticket < ticket);
    assert!(!committing.is_finished());

    // And once the flush lands, all three move together
    set_hold_flush(false);
    committing
        .await
        .expect("the commit task")
        .expect("the commit is durable");
    store
        .wait_durable(ticket)
        .await
        .expect("the ticket is durable");
    assert!(store.dedup(&key).expect("a dedup lookup").is_some());
}
