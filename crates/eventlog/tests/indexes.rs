//! Secondary indexes (`IndexEntry`): written in the same batch as a commit's events (or not at
//! all), conditional entries only with their event, and scans by prefix and bound, both ways.

mod common;

use eventlog::testing_hooks::{event, open_store};
use eventlog::{Commit, CommitOutcome, IndexEntry, StreamAppend, ANY_VERSION};

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
async fn entries_land_with_their_commit_and_conditional_ones_only_with_their_event() {
    // Given a store
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    // When a commit carries a plain entry and two conditional ones, one matching its event
    let entries = vec![
        IndexEntry::new("trace", b"t-1".to_vec(), b"o-1".to_vec()),
        IndexEntry::new("final", b"C-1".to_vec(), Vec::new()).only_with("Completed"),
        IndexEntry::new("final", b"F-1".to_vec(), Vec::new()).only_with("Failed"),
    ];
    let outcome = store
        .commit(commit("o-1", "Completed", entries))
        .await
        .expect("durable");
    assert!(matches!(outcome, CommitOutcome::Committed { .. }));
    // Then the plain and the matching entries are there, the other is not
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
