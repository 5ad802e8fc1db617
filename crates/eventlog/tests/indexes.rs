//! Secondary indexes (`IndexEntry`): written in the same batch as a commit's events (or not at
//! all), and scans by prefix and bound, both ways.

mod common;

use common::counter::{Counter, FIRST_INDEX};
use eventlog::live::{Executed, Execution, Live};
use eventlog::testing_hooks::{event, open_store};
use eventlog::{Commit, CommitOutcome, EventMeta, IndexEntry, StreamAppend, ANY_VERSION};

fn commit(stream: &str, event_type: &str, index: Vec<IndexEntry>) -> Commit {
    Commit {
        appends: vec![StreamAppend {
            stream: stream.to_owned(),
            expected_version: ANY_VERSION,
            events: vec![event(event_type, b"x")],
        }],
        index,
        ..Commit::default()
    }
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

#[tokio::test]
async fn entries_land_with_their_commit() {
    // Given a store
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    // When a commit carries entries of two indexes
    let entries = vec![
        IndexEntry::new("trace", b"t-1".to_vec(), b"o-1".to_vec()),
        IndexEntry::new("final", b"C-1".to_vec(), Vec::new()),
    ];
    let outcome = store
        .commit(commit("o-1", "Completed", entries))
        .await
        .expect("durable");
    assert!(matches!(outcome, CommitOutcome::Committed { .. }));
    // Then both are there, and nothing else
    assert_eq!(
        store.index_get("trace", b"t-1").expect("reads"),
        Some(b"o-1".to_vec())
    );
    assert_eq!(store.index_get("trace", b"t-2").expect("reads"), None);
    assert_eq!(
        keys(
            &store
                .index_scan("final", b"", None, false, 10)
                .expect("scans")
        ),
        vec![b"C-1".to_vec()]
    );
    // ... one index's keys are not another's
    assert_eq!(store.index_get("final", b"t-1").expect("reads"), None);
    // ... and they survive a reopen
    drop(store);
    let store = open_store(dir.path());
    assert_eq!(
        store.index_get("trace", b"t-1").expect("reads"),
        Some(b"o-1".to_vec())
    );
}

#[tokio::test]
async fn a_decision_writes_the_entries_its_domain_names_for_it_and_a_duplicate_none() {
    // Given a domain that indexes each key's first amount
    let dir = tempfile::tempdir().expect("a temp dir");
    let live = Live::<Counter>::open(open_store(dir.path())).expect("the state");
    let add = |key: &str, n: u64, dedup_key: &str| {
        let live = live.clone();
        let command = (key.to_owned(), n);
        let execution = Execution {
            meta: EventMeta::default(),
            dedup_key: Some(dedup_key.to_owned()),
        };
        async move {
            live.execute(execution, command, |_, _| Ok(Vec::new()))
                .await
                .expect("durable")
                .expect("accepted")
        }
    };
    // When a key is added twice, and the first input comes again
    add("a", 3, "in-1").await;
    add("a", 4, "in-2").await;
    let again = add("b", 9, "in-1").await;
    // Then the entry holds the first amount (named against the state before the event), and
    // the repeated input wrote nothing
    assert!(matches!(again, Executed::Duplicate(_)));
    let first = |key: &[u8]| live.store().index_get(FIRST_INDEX, key).expect("reads");
    assert_eq!(first(b"a"), Some(3u64.to_be_bytes().to_vec()));
    assert_eq!(first(b"b"), None);
}

#[tokio::test]
async fn a_duplicate_commit_writes_no_entries() {
    // Given a commit recorded under a dedup key
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    // (the input under dedup key `k`, writing entry `key` -> `value` of index `i`)
    let input = |key: &[u8], value: &[u8]| Commit {
        dedup_key: Some("k".into()),
        ..commit(
            "o-1",
            "E",
            vec![IndexEntry::new("i", key.to_vec(), value.to_vec())],
        )
    };
    store.commit(input(b"a", b"1")).await.expect("durable");
    // When the same input comes again with other entries
    let outcome = store.commit(input(b"b", b"2")).await.expect("answered");
    // Then nothing of it is written
    assert!(matches!(outcome, CommitOutcome::Duplicate(_)));
    assert_eq!(store.index_get("i", b"b").expect("reads"), None);
}

#[tokio::test]
async fn scans_page_by_prefix_and_bound_in_both_directions() {
    // Given keys under two prefixes, and a neighbouring index
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let mut entries: Vec<IndexEntry> = (0u8..10)
        .flat_map(|i| {
            [
                IndexEntry::new("by", vec![b'a', i], Vec::new()),
                IndexEntry::new("by", vec![b'b', i], Vec::new()),
            ]
        })
        .collect();
    entries.push(IndexEntry::new("by2", vec![b'a', 0], Vec::new()));
    entries.push(IndexEntry::new("by", vec![0xff, 0xff], Vec::new()));
    store
        .commit(commit("s", "E", entries))
        .await
        .expect("durable");
    let a = |i: u8| vec![b'a', i];
    // When / Then: newest first, paged by the last key, strictly below it
    let page = store.index_scan("by", b"a", None, true, 3).expect("scans");
    assert_eq!(keys(&page), vec![a(9), a(8), a(7)]);
    let page = store
        .index_scan("by", b"a", Some(&a(7)), true, 3)
        .expect("scans");
    assert_eq!(keys(&page), vec![a(6), a(5), a(4)]);
    let all: Vec<_> = store
        .index_scan("by", b"a", None, true, 100)
        .expect("scans");
    assert_eq!(all.len(), 10, "only the prefix, not b.. nor the index by2");
    // ... forward from a key, inclusive
    let page = store
        .index_scan("by", b"a", Some(&a(8)), false, 5)
        .expect("scans");
    assert_eq!(keys(&page), vec![a(8), a(9)]);
    // ... a bound outside the prefix clamps to it
    let page = store
        .index_scan("by", b"a", Some(b"z"), true, 1)
        .expect("scans");
    assert_eq!(keys(&page), vec![a(9)]);
    assert!(store
        .index_scan("by", b"b", Some(b"a"), true, 5)
        .expect("scans")
        .is_empty());
    // ... a prefix of 0xff bytes has no end key and still scans
    let page = store
        .index_scan("by", &[0xff], None, true, 5)
        .expect("scans");
    assert_eq!(keys(&page), vec![vec![0xff, 0xff]]);
    // ... and a bad index name is refused
    assert!(store.index_get("", b"a").is_err());
    assert!(store.index_get("a\0b", b"a").is_err());
}
