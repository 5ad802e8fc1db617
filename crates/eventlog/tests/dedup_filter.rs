//! The dedup filter saved at a clean close: the next open loads it instead of scanning every
//! dedup key, and answers exactly as a scanned one would, on a real sled directory.

mod common;

use common::spawn_child_test;
use eventlog::{Commit, CommitOutcome, EventMeta, EventStore, NewEvent, StoreConfig, StreamAppend};

fn open(dir: &std::path::Path) -> EventStore {
    EventStore::open(StoreConfig::new(dir)).expect("the store opens")
}

/// A commit of one event under a dedup key.
fn handled(key: &str) -> Commit {
    Commit {
        meta: EventMeta {
            correlation_id: key.to_owned(),
            ..EventMeta::default()
        },
        appends: vec![StreamAppend {
            stream: format!("stream-{key}"),
            expected_version: eventlog::ANY_VERSION,
            events: vec![NewEvent {
                event_type: "Handled".into(),
                schema_version: 1,
                payload: key.as_bytes().to_vec(),
            }],
        }],
        dedup_key: Some(key.to_owned()),
        ..Commit::default()
    }
}

async fn is_duplicate(store: &EventStore, key: &str) -> bool {
    matches!(
        store.commit(handled(key)).await.expect("commits"),
        CommitOutcome::Duplicate(_)
    )
}

#[tokio::test]
async fn a_reopen_after_a_clean_close_loads_the_filter_and_answers_every_key_as_before() {
    // Given a store that handled 200 inputs and closed cleanly
    let dir = tempfile::tempdir().expect("a temp dir");
    {
        let store = open(dir.path());
        assert!(
            !store.dedup_filter_loaded(),
            "a new store has nothing saved"
        );
        for i in 0..200 {
            assert!(!is_duplicate(&store, &format!("in-{i}")).await);
        }
    }

    // When it opens again
    let store = open(dir.path());

    // Then the saved filter was loaded, every handled input is a duplicate, a new one is not
    assert!(store.dedup_filter_loaded());
    for i in 0..200 {
        assert!(is_duplicate(&store, &format!("in-{i}")).await, "in-{i}");
    }
    assert!(!is_duplicate(&store, "in-new").await);
    drop(store);

    // And the next clean close saves the filter again, now with the new key
    let store = open(dir.path());
    assert!(store.dedup_filter_loaded());
    assert!(is_duplicate(&store, "in-new").await);
    assert_eq!(store.verify().expect("verifies").dedup_records, 201);
}

#[tokio::test]
async fn keys_that_outgrow_the_saved_filter_make_the_next_open_scan_and_build_a_larger_one() {
    // Given a store whose filter is sized for 1,024 keys (the smallest) that handled 3,000
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = StoreConfig {
        dedup_filter_keys: 0,
        ..StoreConfig::new(dir.path())
    };
    {
        let store = EventStore::open(config.clone()).expect("opens");
        for i in 0..3_000 {
            store
                .commit(handled(&format!("k-{i}")))
                .await
                .expect("commits");
        }
    }

    // When it opens again / Then the full filter is not trusted: the keys are scanned
    let store = EventStore::open(config.clone()).expect("opens");
    assert!(!store.dedup_filter_loaded());
    for i in (0..3_000).step_by(97) {
        assert!(is_duplicate(&store, &format!("k-{i}")).await, "k-{i}");
    }
    drop(store);

    // And the filter built then (twice the keys) is loaded on the next open
    let store = EventStore::open(config).expect("opens");
    assert!(store.dedup_filter_loaded());
}

/// Env var naming the directory the child test writes to.
const CHILD_DIR_ENV: &str = "DEDUP_FILTER_CHILD_DIR";
/// Line the child prints once its commits are durable.
const CHILD_DONE: &str = "CHILD-COMMITTED";

/// Child half of the SIGKILL test: opens the store (loading the saved filter), handles new
/// inputs, says so, and hangs until killed: no clean close.
#[tokio::test]
#[ignore = "run as a child process by a_sigkill_after_the_filter_was_loaded_leaves_no_stale_filter"]
async fn child_handles_inputs_then_hangs() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    assert!(store.dedup_filter_loaded());
    for i in 0..50 {
        assert!(!is_duplicate(&store, &format!("after-{i}")).await);
    }
    println!("\n{CHILD_DONE}");
    std::future::pending::<()>().await;
}

#[test]
fn a_sigkill_after_the_filter_was_loaded_leaves_no_stale_filter() {
    use std::io::{BufRead, BufReader};

    // Given a store closed cleanly after 100 inputs (its filter saved)
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let store = open(dir.path());
        for i in 0..100 {
            store
                .commit(handled(&format!("before-{i}")))
                .await
                .expect("commits");
        }
    });

    // When a process loads that filter, handles 50 more inputs and is SIGKILLed
    let mut child = spawn_child_test("child_handles_inputs_then_hangs", CHILD_DIR_ENV, dir.path());
    let stdout = child.stdout.take().expect("piped stdout");
    let committed = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(CHILD_DONE));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(committed, "the child committed its inputs");

    // Then the next open scans (nothing saved survives the crash) and knows all 150 inputs
    runtime.block_on(async {
        let store = open(dir.path());
        assert!(!store.dedup_filter_loaded());
        for key in (0..100)
            .map(|i| format!("before-{i}"))
            .chain((0..50).map(|i| format!("after-{i}")))
        {
            assert!(is_duplicate(&store, &key).await, "{key}");
        }
    });
}
